"""PKCE (RFC 7636), S256 only and required for every client, confidential ones too (RFC 9700
section 2.1.1): it binds the code to the client instance that asked for it, so a stolen or
injected code is useless."""

from __future__ import annotations

import hmac
import re

from authlib.oauth2.rfc7636 import create_s256_code_challenge

S256 = "S256"
# RFC 7636 section 4.1 (verifier) and 4.2 (an S256 challenge is 43 base64url characters).
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def valid_challenge(challenge: str | None, method: str | None) -> str | None:
    """Why the challenge is unacceptable, or None."""
    if not challenge:
        return "code_challenge is required (PKCE, RFC 7636)."
    if method != S256:
        return "code_challenge_method must be S256."
    if not _CHALLENGE.match(challenge):
        return "code_challenge must be 43 base64url characters."
    return None


def verifier_matches(verifier: str | None, challenge: str) -> bool:
    if not verifier or not _VERIFIER.match(verifier):
        return False
    computed: str = create_s256_code_challenge(verifier)
    return hmac.compare_digest(computed.encode(), challenge.encode())
