"""Vigil: video-verified alarm monitoring whose security commitments are proven by tests."""

__version__ = "0.1.0"
