"""Dealers (tenants) and their apps."""
