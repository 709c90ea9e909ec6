"""Credentials and the one permission system they all resolve to."""
