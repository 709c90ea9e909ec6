"""Authenticate: the Authorization header to a frozen `Principal`, or 401 and nothing else runs.

A request without credentials passes through anonymous; whether its route allows that is the
authorization step's decision. A bad credential never falls back to anonymous.
"""

from __future__ import annotations

from collections.abc import Callable

from vigil.auth.principal import Principal
from vigil.core.errors import AuthenticationFailed, VigilError
from vigil.edge.asgi import ASGIApp, Receive, Scope, Send, state
from vigil.edge.credentials import bearer_token, query_credentials
from vigil.edge.problem import send_error

Verifier = Callable[[str, str | None], Principal]


class AuthenticationMiddleware:
    def __init__(self, app: ASGIApp, verify: Verifier) -> None:
        self.app = app
        self.verify = verify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        st = state(scope)
        try:
            if query_credentials(scope):
                # Credentials in URLs end up in logs, proxies and browser history.
                raise AuthenticationFailed(
                    "Send credentials in the Authorization header, never in the URL.",
                    error="invalid_request",
                )
            token = bearer_token(scope)
            if token is not None:
                st["principal"] = self.verify(token, st.get("client_ip"))
        except VigilError as error:
            st["error"] = error
            await send_error(send, error, st.get("request_id"))
            return
        await self.app(scope, receive, send)
