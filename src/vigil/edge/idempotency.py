"""`Idempotency-Key` on POST: a retried request returns the first response and changes nothing.

Networks drop responses, and a client that retries a POST must not raise the same alarm twice.
The first request with a key runs and its successful (2xx/3xx) response is stored before it is
released; a retry with the same key and the same request (method, path, query, body) within
24 hours gets that response again, marked `Idempotent-Replayed: true`; the same key with a
different request is a client bug and gets 422; a retry while the first is still running gets
409. Failures are not stored, so a corrected retry runs afresh. The body is hashed as it streams
through, never buffered, so large uploads stay streaming.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

import anyio.to_thread

from vigil.auth.principal import Principal
from vigil.core.clock import Clock
from vigil.core.errors import Conflict, InvalidInput, VigilError
from vigil.edge.asgi import ASGIApp, Message, Receive, Scope, Send, header, state
from vigil.edge.problem import send_error
from vigil.storage.idempotency import IdempotencyStore, Owner, StoredResponse

HEADER = b"idempotency-key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# Response headers worth replaying; the edge adds request id, HSTS and the like afresh.
_KEPT = {b"content-type", b"etag", b"location"}


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, store: IdempotencyStore, clock: Clock) -> None:
        self.app, self.store, self.clock = app, store, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = header(scope, HEADER) if scope["type"] == "http" else None
        principal: Principal | None = state(scope).get("principal") if key is not None else None
        if key is None or principal is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        request_id = state(scope).get("request_id")
        if not _KEY.match(key):
            error: VigilError = InvalidInput(
                "Idempotency-Key must be 1 to 255 printable ASCII characters."
            )
            await send_error(send, error, request_id)
            return
        owner = Owner(principal.dealer_id, principal.environment.value, principal.actor_id)
        try:
            claim = await anyio.to_thread.run_sync(self.store.claim, owner, key, self.clock.now())
        except VigilError as exc:  # a stored response that does not open (S6): 409/404
            await send_error(send, exc, request_id)
            return
        digest = _request_digest(scope)
        if claim.in_flight:
            await send_error(
                send,
                Conflict("A request with this Idempotency-Key is still running; retry shortly."),
                request_id,
            )
            return
        if claim.stored is not None:
            await _drain(receive, digest.update)
            if not hmac.compare_digest(digest.digest(), claim.stored.request_hash):
                await send_error(
                    send,
                    InvalidInput("This Idempotency-Key was used for a different request."),
                    request_id,
                )
                return
            await _replay(send, claim.stored)
            return
        assert claim.seq is not None  # claimed: the store names our row
        await self._run_first(scope, receive, send, owner, key, claim.seq, digest)

    async def _run_first(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        owner: Owner,
        key: str,
        seq: int,
        digest: hashlib._Hash,
    ) -> None:
        ended = False

        async def hashing_receive() -> Message:
            nonlocal ended
            message = await receive()
            if message["type"] == "http.request":
                digest.update(message.get("body", b""))
                ended = not message.get("more_body", False)
            return message

        start: Message | None = None
        chunks: list[bytes] = []
        try:

            async def capture(message: Message) -> None:
                nonlocal start
                if message["type"] == "http.response.start":
                    start = message
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))

            await self.app(scope, hashing_receive, capture)
        except BaseException:
            await anyio.to_thread.run_sync(self.store.release, owner, key)
            raise
        if start is None:
            await anyio.to_thread.run_sync(self.store.release, owner, key)
            return
        status = int(start["status"])
        body = b"".join(chunks)
        if status < 400:
            if not ended:
                await _drain(hashing_receive, lambda _b: None)
            kept = [(k.decode(), v.decode()) for k, v in start["headers"] if k.lower() in _KEPT]
            stored = StoredResponse(digest.digest(), status, kept, body)
            await anyio.to_thread.run_sync(self.store.complete, owner, key, seq, stored)
        else:
            await anyio.to_thread.run_sync(self.store.release, owner, key)
        await send(start)
        await send({"type": "http.response.body", "body": body})


def _request_digest(scope: Scope) -> hashlib._Hash:
    digest = hashlib.sha256()
    for part in (scope["method"], scope["path"], scope.get("query_string", b"").decode("latin-1")):
        digest.update(part.encode() + b"\x00")
    return digest


async def _drain(receive: Receive, feed: Callable[[bytes], object]) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        feed(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _replay(send: Send, stored: StoredResponse) -> None:
    headers = [(k.encode(), v.encode()) for k, v in stored.headers]
    headers += [
        (b"content-length", str(len(stored.body)).encode()),
        (b"idempotent-replayed", b"true"),
    ]
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body})
