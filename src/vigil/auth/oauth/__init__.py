"""OAuth 2.0 authorization server (S10, S11): one module per RFC concept."""
