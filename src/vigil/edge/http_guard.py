"""The plain-HTTP listener (S2): it serves nothing.

- A browser's credential-free GET/HEAD is redirected (308) to the same host and path on HTTPS.
- Anything carrying a credential is refused with 403, and the credential is treated as stolen:
  an API key is revoked at once and flagged exposed so its owner is told to rotate it; an OAuth
  token is revoked with its family; an OAuth client secret (Basic header, or the form body of a
  POST to the token, revocation or introspection endpoint, read up to 16 KiB) stops
  authenticating until the client is re-registered. A redirect would be worse than useless: the
  secret has already crossed the network in the clear.
- Any other request is refused with 403.
Every outcome is audited like any API call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from vigil.core.errors import CleartextRefused, PermissionDenied
from vigil.edge.asgi import Receive, Scope, Send, header, state
from vigil.edge.credentials import (
    CLIENT_AUTH_PATHS,
    FORM_BODY_LIMIT,
    FormCredentials,
    form_credentials,
    has_session_cookie,
    is_form,
    presented_credentials,
)
from vigil.edge.problem import send_error

ExposeCredential = Callable[[str, Scope], Awaitable[None]]
# (client id, client secret, scope): a client secret that crossed the network in the clear.
ExposeClientSecret = Callable[[str, str, Scope], Awaitable[None]]


def https_location(scope: Scope, https_port: int, fallback_host: str) -> str:
    host = header(scope, b"host") or fallback_host
    if host.startswith("["):
        hostname = host[: host.index("]") + 1] if "]" in host else fallback_host
    else:
        hostname = host.rsplit(":", 1)[0] if ":" in host else host
    if not hostname or any(c in hostname for c in "/\\@?# "):
        hostname = fallback_host
    port = "" if https_port == 443 else f":{https_port}"
    path = scope.get("raw_path") or scope.get("path", "/").encode()
    if not path.startswith(b"/"):
        # Only an origin-form target ("/path") is kept. uvicorn's h11 parser passes others
        # through ("@evil.example/x", "http://evil.example/x", "*"), and appended after the
        # port they would change the Location's authority: an open redirect.
        path = b"/"
    location = f"https://{hostname}{port}{path.decode('latin-1')}"
    if scope.get("query_string"):
        location += "?" + scope["query_string"].decode("latin-1")
    return location


class PlainHttpGuard:
    def __init__(
        self,
        https_port: int,
        fallback_host: str,
        expose: ExposeCredential,
        expose_client_secret: ExposeClientSecret,
    ) -> None:
        self.https_port = https_port
        self.fallback_host = fallback_host
        self.expose = expose
        self.expose_client_secret = expose_client_secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        st = state(scope)
        credentials = presented_credentials(scope)
        in_form = await _oauth_form(scope, receive)
        credentials += in_form.tokens
        if credentials or in_form.client_secret or has_session_cookie(scope):
            for credential in credentials:
                await self.expose(credential, scope)
            if in_form.client_id and in_form.client_secret:
                await self.expose_client_secret(in_form.client_id, in_form.client_secret, scope)
            error: PermissionDenied = CleartextRefused(
                "Plain HTTP is never served. The credential sent with this request must be "
                "treated as exposed: an API key, OAuth token or client secret sent this way "
                "has been revoked; issue a new one and call the API over HTTPS."
            )
            st["error"] = error
            await send_error(send, error, st.get("request_id"))
            return
        if scope.get("method") in ("GET", "HEAD"):
            location = https_location(scope, self.https_port, self.fallback_host)
            await send(
                {
                    "type": "http.response.start",
                    "status": 308,
                    "headers": [
                        (b"location", location.encode("latin-1")),
                        (b"content-length", b"0"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        error = CleartextRefused("Plain HTTP is never served; use HTTPS.")
        st["error"] = error
        await send_error(send, error, st.get("request_id"))


_NO_FORM = FormCredentials([], None, None)


async def _oauth_form(scope: Scope, receive: Receive) -> FormCredentials:
    """The credentials in the form body of a POST to an OAuth endpoint (where clients put
    refresh tokens and client_secret_post secrets); nothing for any other request. The first
    16 KiB are enough for any real token request; the rest is never read."""
    if scope.get("method") != "POST" or scope.get("path") not in CLIENT_AUTH_PATHS:
        return _NO_FORM
    if not is_form(scope):
        return _NO_FORM
    body = b""
    while len(body) <= FORM_BODY_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return form_credentials(body[:FORM_BODY_LIMIT])


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
