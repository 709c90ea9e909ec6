"""RFC 9457 problem documents: the only error shape Vigil's HTTP surface returns."""

from __future__ import annotations

import json
from typing import Any

from vigil.core.errors import (
    AuthenticationFailed,
    InsufficientScope,
    RangeNotSatisfiable,
    RateLimited,
    VigilError,
)
from vigil.edge.asgi import Send

PROBLEM_TYPE_BASE = "https://vigil.dev/problems/"
CONTENT_TYPE = b"application/problem+json"


def problem_body(
    status: int, title: str, detail: str, code: str, request_id: str | None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request_id:
        body["request_id"] = request_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def error_headers(error: VigilError) -> list[tuple[bytes, bytes]]:
    """Headers RFC 6750 and RFC 9110 ask for alongside particular errors."""
    if isinstance(error, AuthenticationFailed):
        challenge = 'Bearer realm="vigil"'
        if error.error:
            challenge += f', error="{error.error}"'
        return [(b"www-authenticate", challenge.encode())]
    if isinstance(error, InsufficientScope):
        value = f'Bearer realm="vigil", error="insufficient_scope", scope="{error.scope}"'
        return [(b"www-authenticate", value.encode())]
    if isinstance(error, RateLimited):
        return [(b"retry-after", str(error.retry_after).encode())]
    if isinstance(error, RangeNotSatisfiable):
        return [(b"content-range", f"bytes */{error.size}".encode())]
    return []


def error_body(error: VigilError, request_id: str | None) -> dict[str, Any]:
    return problem_body(
        error.status, error.title, error.detail, error.code, request_id, **error.extra
    )


async def send_problem(
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", CONTENT_TYPE),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_error(send: Send, error: VigilError, request_id: str | None) -> None:
    await send_problem(send, error.status, error_body(error, request_id), error_headers(error))
