"""Feed a request body to a blocking sink as it arrives, without ever holding it whole.

The body is read on the event loop (`request.stream()`), gathered into batches of about 1 MiB,
and each batch is handed to the sink on a worker thread, chunk by chunk as received (joining
them first would copy every byte for nothing); there hashing, encryption and file writes release
the GIL. While one batch is being written the next is being received, so the network and the
disk work at the same time; memory stays at two batches per upload, and thread hops at about one
per MiB whatever size the transport delivers chunks in.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from vigil.core.errors import InvalidInput

BATCH = 1024 * 1024


class Sink(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def abort(self) -> None: ...


def _write_all(sink: Sink, chunks: list[bytes]) -> None:
    for chunk in chunks:
        sink.write(chunk)


async def stream_into(request: Request, sink: Sink) -> None:
    """Deliver the whole body to `sink` in order; on any failure `sink.abort()` runs (after the
    write in flight, if any, has finished) before the error is raised."""
    writing: asyncio.Future[None] | None = None
    batch: list[bytes] = []
    held = 0
    try:
        async for chunk in request.stream():
            batch.append(chunk)
            held += len(chunk)
            if held >= BATCH:
                if writing is not None:
                    await writing  # at most one batch in flight: memory stays bounded
                writing = asyncio.ensure_future(run_in_threadpool(_write_all, sink, batch))
                batch, held = [], 0
        if writing is not None:
            await writing
        if held:
            await run_in_threadpool(_write_all, sink, batch)
    except BaseException as error:
        if writing is not None:
            await asyncio.wait([writing])  # a thread cannot be stopped; let it finish first
            if not writing.cancelled():
                writing.exception()  # retrieved: the error that matters is being raised
        await run_in_threadpool(sink.abort)
        if isinstance(error, ClientDisconnect):
            raise InvalidInput("The connection closed before the whole body arrived.") from None
        raise
