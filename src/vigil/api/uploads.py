"""Feed a request body to a blocking sink as it arrives, without ever holding it whole.

The body is read on the event loop (`request.stream()`), gathered into batches of about 1 MiB
and each batch handed to the sink on a worker thread, where hashing and file writes release the
GIL. Batching keeps the thread hops to about one per MiB, whatever size the transport delivers
chunks in; memory stays at one batch per upload.
"""

from __future__ import annotations

from typing import Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from vigil.core.errors import InvalidInput

BATCH = 1024 * 1024


class Sink(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def abort(self) -> None: ...


async def stream_into(request: Request, sink: Sink) -> None:
    """Deliver the whole body to `sink`; on any failure `sink.abort()` runs before raising."""
    batch: list[bytes] = []
    held = 0
    try:
        async for chunk in request.stream():
            batch.append(chunk)
            held += len(chunk)
            if held >= BATCH:
                await run_in_threadpool(sink.write, b"".join(batch))
                batch, held = [], 0
        if held:
            await run_in_threadpool(sink.write, b"".join(batch))
    except ClientDisconnect:
        await run_in_threadpool(sink.abort)
        raise InvalidInput("The connection closed before the whole body arrived.") from None
    except BaseException:
        await run_in_threadpool(sink.abort)
        raise
