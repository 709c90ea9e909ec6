"""Authenticate: the Authorization header to a frozen `Principal`, or 401 and nothing else runs.

A request without credentials passes on anonymous; whether its route allows that is the
authorization step's decision. A bad credential never falls back to anonymous.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from vigil.auth.principal import Principal
from vigil.core.errors import AuthenticationFailed, RateLimited, VigilError
from vigil.edge.asgi import Scope
from vigil.edge.credentials import CLIENT_AUTH_PATHS, credential_in, is_basic, query_credentials
from vigil.edge.rate_limit import TokenBuckets

Verifier = Callable[[str, str | None], Principal]


BASIC_REFUSED = (
    "HTTP Basic is only for OAuth client authentication at /oauth/token, /oauth/revoke and "
    "/oauth/introspect; call the API with 'Authorization: Bearer <key or access token>'."
)


def _refuse_credentials_in_url(scope: Scope) -> None:
    """Credentials in URLs end up in logs, proxies and browser history."""
    if scope.get("query_string") and query_credentials(scope):
        raise AuthenticationFailed(
            "Send credentials in the Authorization header, never in the URL.",
            error="invalid_request",
        )


def _client_credentials(scope: Scope, token: str) -> bool:
    """True for OAuth client credentials (HTTP Basic on the OAuth endpoints), which the OAuth
    server checks itself (constant time, by the client's registered method): no principal
    comes of them here. Basic anywhere else is refused."""
    if not is_basic(token):
        return False
    if scope.get("path") in CLIENT_AUTH_PATHS:
        return True
    raise AuthenticationFailed(BASIC_REFUSED, error="invalid_request")


class Authenticator:
    """`failures` limits failed attempts per client address: guessing keys costs a database
    lookup and an audit commit each, so repeated failures are refused before either (429)."""

    def __init__(self, verify: Verifier, failures: TokenBuckets) -> None:
        self.verify = verify
        self.failures = failures

    def authenticate(
        self, scope: Scope, st: dict[str, Any], authorization: str | None
    ) -> VigilError | None:
        """Put the caller's principal in `st`, or return the refusal to send instead.

        `authorization` is the raw `Authorization` header value (None when absent)."""
        client_ip = st.get("client_ip")
        ip_key = f"ip:{client_ip}"
        token = credential_in(authorization)
        try:
            _refuse_credentials_in_url(scope)
            if token is not None and _client_credentials(scope, token):
                return None
            if token is not None:
                wait = self.failures.wait(ip_key)
                if wait > 0:
                    raise RateLimited(max(1, math.ceil(wait)))
                st["principal"] = self.verify(token, client_ip)
        except AuthenticationFailed as error:
            self.failures.take(ip_key)
            return error
        except VigilError as error:
            # A genuine key refused for its address is attributed to its owner in the audit
            # record; nothing downstream runs.
            owner = getattr(error, "principal", None)
            if owner is not None:
                st["principal"] = owner
            return error
        return None
