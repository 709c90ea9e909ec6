"""Encryption at rest (S6-S8): envelope and streaming AEAD, the per-tenant keyring, and the KMS
port with its providers. See docs/encryption.md for the formats and the key hierarchy."""
