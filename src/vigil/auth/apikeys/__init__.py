"""API keys (S9): format, issuance, rotation with grace, revocation, exposure."""
