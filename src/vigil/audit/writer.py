"""Group commit: one writer thread turns many concurrent audit appends into one durable commit.

S15 forbids releasing a response before its record is durable. A commit per request costs a
disk flush per request; batching whatever has queued up while the previous flush ran lets
concurrent requests share one flush, so durability stays cheap under load and costs nothing
extra when idle (a lone record is committed at once, never held back for a timer).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vigil.audit.record import AuditRecord

log = logging.getLogger(__name__)

BatchSink = Callable[[Sequence[AuditRecord]], None]
Tick = Callable[[], object]

# Enough records per transaction to spread its fixed cost (flush, head reads) thin; few enough
# that no request waits behind more than a couple of milliseconds of other records' hashing.
MAX_BATCH = 256


@dataclass(slots=True)
class _Pending:
    record: AuditRecord
    future: asyncio.Future[None]


class GroupCommitWriter:
    def __init__(
        self, sink: BatchSink, tick: Tick | None = None, tick_seconds: float = 5.0
    ) -> None:
        """`tick` runs on the writer thread when it has been idle for `tick_seconds`
        (time-based checkpoints), so it never competes with appends for the write lock."""
        self._sink = sink
        self._tick, self._tick_seconds = tick, tick_seconds
        self._queue: queue.SimpleQueue[list[_Pending] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Appends made during one event-loop iteration travel to the writer together: one
        # wake-up of the writer thread per iteration instead of one per request.
        self._gathering: list[_Pending] = []

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
            self._thread = None

    async def append(self, record: AuditRecord) -> None:
        """Return once `record` is committed; raise if it could not be made durable."""
        if self._thread is None:
            self.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._gathering:
            loop.call_soon(self._hand_over)
        self._gathering.append(_Pending(record, future))
        await future

    def _hand_over(self) -> None:
        gathered, self._gathering = self._gathering, []
        if gathered:
            self._queue.put(gathered)

    def _run(self) -> None:
        last_tick = time.monotonic()
        while True:
            if self._tick is not None and time.monotonic() - last_tick >= self._tick_seconds:
                last_tick = time.monotonic()
                self._run_tick()
            try:
                first = self._queue.get(timeout=self._tick_seconds)
            except queue.Empty:
                continue
            if first is None:
                return
            batch = list(first)
            stopping = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.extend(item)
            self._commit(batch)
            if stopping:
                return

    def _run_tick(self) -> None:
        assert self._tick is not None
        try:
            self._tick()
        except Exception:  # a failed checkpoint is retried on the next tick
            log.exception("audit writer tick failed")

    def _commit(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            self._sink([p.record for p in batch])
        except Exception as exc:  # reported to every waiting request, which then fails closed
            log.exception("audit batch of %d records could not be committed", len(batch))
            error = exc
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for pending in batch:
            by_loop.setdefault(pending.future.get_loop(), []).append(pending.future)
        for loop, futures in by_loop.items():
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
