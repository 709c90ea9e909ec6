"""Every request gets a fresh id, returned as `X-Request-Id` and stamped on its audit record.

The id is generated here, never taken from the client, so a caller cannot forge or collide
with another request's audit trail.
"""

from __future__ import annotations

import time

from vigil.core.ids import random_id_bytes
from vigil.edge.asgi import ASGIApp, Message, Receive, Scope, Send, state


def new_request_id() -> str:
    """`req_` and 24 hex digits: 48 bits of milliseconds, then 48 random bits. Time first, so
    the audit log's request-id index grows at its end instead of at a random page per record
    (see `vigil.core.ids`); 48 random bits per millisecond leave collisions out of reach."""
    return (
        "req_"
        + (time.time_ns() // 1_000_000 % 2**48).to_bytes(6, "big").hex()
        + (random_id_bytes(6).hex())
    )


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        state(scope)["request_id"] = request_id
        encoded = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", encoded)]
            await send(message)

        await self.app(scope, receive, send_with_id)
