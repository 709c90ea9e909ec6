"""Authenticate: the Authorization header to a frozen `Principal`, or 401 and nothing else runs.

A request without credentials passes through anonymous; whether its route allows that is the
authorization step's decision. A bad credential never falls back to anonymous.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from vigil.auth.principal import Principal
from vigil.core.errors import AuthenticationFailed, RateLimited, VigilError
from vigil.edge.asgi import ASGIApp, Receive, Scope, Send, state
from vigil.edge.credentials import bearer_token, query_credentials
from vigil.edge.problem import send_error
from vigil.edge.rate_limit import TokenBuckets

Verifier = Callable[[str, str | None], Principal]


def _refuse_credentials_in_url(scope: Scope) -> None:
    """Credentials in URLs end up in logs, proxies and browser history."""
    if query_credentials(scope):
        raise AuthenticationFailed(
            "Send credentials in the Authorization header, never in the URL.",
            error="invalid_request",
        )


class AuthenticationMiddleware:
    """`failures` limits failed attempts per client address: guessing keys costs a database
    lookup and an audit commit each, so repeated failures are refused before either (429)."""

    def __init__(self, app: ASGIApp, verify: Verifier, failures: TokenBuckets) -> None:
        self.app = app
        self.verify = verify
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        st = state(scope)
        ip_key = f"ip:{st.get('client_ip')}"
        token = bearer_token(scope)
        try:
            _refuse_credentials_in_url(scope)
            if token is not None:
                self._throttle(ip_key)
                st["principal"] = self.verify(token, st.get("client_ip"))
        except AuthenticationFailed as error:
            self.failures.take(ip_key)
            await self._refuse(st, send, error)
            return
        except VigilError as error:
            # A genuine key refused for its address is attributed to its owner in the audit
            # record; nothing downstream runs.
            owner = getattr(error, "principal", None)
            if owner is not None:
                st["principal"] = owner
            await self._refuse(st, send, error)
            return
        await self.app(scope, receive, send)

    def _throttle(self, ip_key: str) -> None:
        wait = self.failures.wait(ip_key)
        if wait > 0:
            raise RateLimited(max(1, math.ceil(wait)))

    @staticmethod
    async def _refuse(st: dict[str, object], send: Send, error: VigilError) -> None:
        st["error"] = error
        request_id = st.get("request_id")
        await send_error(send, error, request_id if isinstance(request_id, str) else None)
