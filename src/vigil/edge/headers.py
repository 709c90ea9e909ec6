"""Strict-Transport-Security on every HTTPS response (S3)."""

from __future__ import annotations

from vigil.edge.asgi import ASGIApp, Message, Receive, Scope, Send

HSTS_VALUE = b"max-age=63072000; includeSubDomains; preload"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"strict-transport-security", HSTS_VALUE),
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
