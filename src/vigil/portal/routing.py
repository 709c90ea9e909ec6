"""The portal's route class: errors become pages, and every response gets the portal headers.

Services raise the same typed errors for every front; here they become an HTML page with the
same status (another dealer's id is a 404 page, a missing scope a 403 page), a missing session
a redirect to sign-in. Nothing else reaches the API's problem+json handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match
from starlette.types import Scope

from vigil.core.errors import VigilError
from vigil.portal.access import SignInRequired
from vigil.portal.pages import render, secure

SIGN_IN = "/portal/sign-in"


def _next(request: Request) -> str:
    """Only a portal path, never a full URL, so `next` cannot be an open redirect."""
    path = request.url.path
    return quote(path, safe="/") if path.startswith("/portal/") else "/portal/"


def request_host(scope: Scope) -> str | None:
    """The Host header's name, lowercased and without its port (IPv6 literals keep brackets)."""
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host: str = bytes(value).decode("latin-1").strip().lower()
            if host.startswith("["):
                return host.split("]", 1)[0] + "]"
            return host.rsplit(":", 1)[0] if ":" in host else host
    return None


class PortalRoute(APIRoute):
    # VIGIL_PORTAL_HOST: the one host name this route answers for (None: any). Set on a copy of
    # the route per application (`vigil.portal.install`), never on the shared module route.
    host: str | None = None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if self.host is not None and scope["type"] == "http" and request_host(scope) != self.host:
            return Match.NONE, {}
        return super().matches(scope)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await inner(request)
            except SignInRequired:
                target = SIGN_IN if request.method != "GET" else f"{SIGN_IN}?next={_next(request)}"
                response = RedirectResponse(target, status_code=303)
                if request.headers.get("hx-request") == "true":
                    # An htmx refresh would follow the redirect and swap the sign-in form into
                    # the page; HX-Redirect makes htmx load the sign-in page itself.
                    response = Response(status_code=401, headers={"hx-redirect": SIGN_IN})
            except VigilError as error:
                request.state.error = error
                response = render(
                    request, "error.html", status=error.status, title=error.title, error=error
                )
            return secure(response)

        return handler
