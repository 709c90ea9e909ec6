"""OAuth error responses (RFC 6749 sections 4.1.2.1 and 5.2): one class per error code.

OAuth endpoints answer errors as `{"error", "error_description"}` JSON, not problem+json:
clients we did not write (Authlib, requests-oauthlib, every mobile SDK) parse exactly that shape,
so the OAuth endpoints are the one documented exception to RFC 9457 (docs/oauth.md).
Descriptions never carry a secret.
"""

from __future__ import annotations

from typing import Any


class OAuthError(Exception):
    error = "invalid_request"
    status = 400

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def as_json(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    """Client authentication failed (section 5.2: 401)."""

    error = "invalid_client"
    status = 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class AccessDenied(OAuthError):
    error = "access_denied"


class UnsupportedTokenType(OAuthError):
    error = "unsupported_token_type"
