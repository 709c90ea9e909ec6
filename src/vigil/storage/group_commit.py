"""Group commit for small write transactions: concurrent requests share one durable commit.

A durable commit costs a disk flush (SQLite `synchronous=FULL`, PostgreSQL
`synchronous_commit=on`), and a request whose whole work is a few inserts spends most of its
time waiting for it: one JWT-bearer grant per flush was the OAuth benchmark's ceiling. Here one
thread commits, for whatever requests queued up while its previous commit ran, their items in
one transaction, through a `Sink` that writes them all (multi-row statements) and says, item by
item, what came of it. Like the audit writer (vigil.audit.writer): a lone item is committed at
once, never held back for a timer, and nobody's future is settled before the commit returned,
so a response still leaves only after its state change and audit record are durable (S15).

An item the sink refuses (its own outcome is an exception) is simply not written; an exception
out of the sink or the commit fails every item of the batch, which then wrote nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from vigil.storage.db import Database

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# What the sink reports per item, in order: the item's result, or the exception refusing it.
Sink = Callable[[Connection, Sequence[Item]], Sequence[Result | BaseException]]

MAX_BATCH = 256


@dataclass(slots=True)
class _Pending(Generic[Item, Result]):
    item: Item
    future: asyncio.Future[Result]


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        db: Database,
        sink: Sink[Item, Result],
        name: str,
        *,
        before: Callable[[], object] | None = None,
        on_failure: Callable[[], object] | None = None,
    ) -> None:
        """`before` runs on the thread before each transaction opens (the audit log tops up
        the key its records' details are sealed with: a key-store write inside the batch's
        SQLite transaction would wait on that transaction's own lock). `on_failure` runs
        after a batch rolled back (the audit signer forgets a key it may have created in that
        transaction)."""
        self._db, self._sink, self._name = db, sink, name
        self._before, self._on_failure = before, on_failure
        self._queue: queue.SimpleQueue[list[_Pending[Item, Result]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Submissions of one event-loop iteration travel to the thread together.
        self._gathering: list[_Pending[Item, Result]] = []
        self._conn: Connection | None = None  # the thread's own, kept between batches

    async def submit(self, item: Item) -> Result:
        """The item's result once its batch is committed; its refusal, or the batch's
        failure, raised."""
        if self._thread is None:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        if not self._gathering:
            loop.call_soon(self._hand_over)
        self._gathering.append(_Pending(item, future))
        return await future

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=10)
        self._drop_connection()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _hand_over(self) -> None:
        gathered, self._gathering = self._gathering, []
        if gathered:
            self._queue.put(gathered)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = list(first)
            stopping = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.extend(more)
            self._commit(batch)
            if stopping:
                return

    def _commit(self, batch: list[_Pending[Item, Result]]) -> None:
        outcomes: Sequence[Result | BaseException]
        try:
            outcomes = self._write([p.item for p in batch])
        except Exception as exc:  # every waiting request fails closed
            log.exception("%s: a batch of %d could not be committed", self._name, len(batch))
            outcomes = [exc] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Result], object]]] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(pending.future.get_loop(), []).append((pending.future, outcome))
        for loop, settled in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(_settle, settled)

    def _write(self, items: list[Item]) -> Sequence[Result | BaseException]:
        """One transaction on the kept connection; a connection that broke (a database
        restart) is replaced and the batch tried once more (nothing of it was committed)."""
        if self._before is not None:
            self._before()
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._db.engine.connect().execution_options(vigil_write=True)
            try:
                # The process's SQLite writers queue on the write lock (Database.__init__
                # says why); without it this thread polled SQLite's file lock instead.
                with self._db.write_lock(), self._conn.begin():
                    outcomes = self._sink(self._conn, items)
            except Exception as exc:
                if self._on_failure is not None:
                    self._on_failure()
                broken = isinstance(exc, DBAPIError) and exc.connection_invalidated
                self._drop_connection()
                if attempt == 2 or not broken:
                    raise
            else:
                if len(outcomes) != len(items):
                    raise AssertionError("the sink must report one outcome per item")
                return outcomes
        raise AssertionError("unreachable")

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def _settle(settled: list[tuple[asyncio.Future[Result], object]]) -> None:
    for future, outcome in settled:
        if future.done():  # the request went away
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)  # type: ignore[arg-type]
