"""A reference for the edge benchmark: the baseline hello-world plus a durable audit record per
request, and nothing else.

`bench/edge.py --durable-hello` serves this third app beside the baseline and `vigil serve`,
pinned to the same core with the same TLS. Each response waits, before its first byte leaves,
until a row for it is committed durably to an `audit_events` table (the schema of
`vigil.storage.tables`, its indexes included) in a SQLCipher database (raw 32-byte key, WAL,
`synchronous=FULL`: the pragmas `vigil serve` uses). One writer thread commits whatever rows
queued up during its previous commit in one transaction (group commit), one multi-row INSERT
through the raw driver. No key check, hash chain, checkpoint, sealed details, rate limit or
middleware stack.

What it answers: how much of the hello-world's throughput S15's rule alone (a durable record
before each response, on the embedded database) costs when added to the baseline in the plain
way. It is not a strict ceiling for Vigil, whose request path is leaner than FastAPI's own
(see `edge_inprocess.py`), but the 0.8 target asks Vigil's whole edge, durable record
included, to keep more than this app does.
"""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import threading
from functools import lru_cache
from itertools import chain, count
from pathlib import Path
from typing import Any

from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from vigil.storage.tables import audit_events

Row = tuple[Any, ...]
Pending = tuple[Row, asyncio.Future[None]]

COLUMNS = [c.name for c in audit_events.columns if c.name != "seq"]
ROW = f"({', '.join('?' * len(COLUMNS))})"


@lru_cache(maxsize=512)
def insert(rows: int) -> str:
    """One multi-row INSERT per batch: `executemany` would release and retake the GIL once
    per row, each time waiting for the busy event loop (Vigil's writer does the same)."""
    return (
        f"INSERT INTO audit_events ({', '.join(COLUMNS)}) "  # noqa: S608 - fixed names
        f"VALUES {', '.join([ROW] * rows)}"
    )


def open_database(path: Path) -> Any:
    """A keyed SQLCipher connection with `vigil serve`'s pragmas and the audit table."""
    import sqlcipher3

    key = secrets.token_hex(32)
    # Kept beside the database so that the benchmark can count the rows afterwards.
    (path.parent / "durable-hello.key").write_text(key)
    (path.parent / "durable-hello.key").chmod(0o600)
    conn = sqlcipher3.dbapi2.connect(str(path), check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{key}'\"")
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    dialect = sqlite.dialect()
    conn.execute(str(CreateTable(audit_events).compile(dialect=dialect)))
    for index in audit_events.indexes:
        conn.execute(str(CreateIndex(index).compile(dialect=dialect)))
    return conn


class Writer:
    """Group commit in its least costly form: one thread, one connection, one `executemany`
    and one durable COMMIT per batch, every waiting future settled in one loop callback."""

    def __init__(self, path: Path) -> None:
        self._conn = open_database(path)
        self._queue: queue.SimpleQueue[list[Pending]] = queue.SimpleQueue()
        self._gathering: list[Pending] = []
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, row: Row) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._gathering:  # what one loop iteration submits travels together
            loop.call_soon(self._hand_over)
        self._gathering.append((row, future))
        return future

    def _hand_over(self) -> None:
        batch, self._gathering = self._gathering, []
        self._queue.put(batch)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            while not self._queue.empty():
                batch += self._queue.get()
            self._conn.execute("BEGIN")
            for start in range(0, len(batch), 256):  # 256 x 23 values: within SQLite's limit
                part = batch[start : start + 256]
                self._conn.execute(insert(len(part)), list(chain.from_iterable(r for r, _ in part)))
            self._conn.execute("COMMIT")
            futures = [f for _, f in batch]
            futures[0].get_loop().call_soon_threadsafe(_settle, futures)


def _settle(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def rows(home: Path) -> int:
    """Rows committed so far (the benchmark's proof that every response was recorded)."""
    import sqlcipher3

    conn = sqlcipher3.dbapi2.connect(str(home / "durable-hello.db"), isolation_level=None)
    try:
        conn.execute(f"PRAGMA key = \"x'{(home / 'durable-hello.key').read_text()}'\"")
        (n,) = conn.execute("SELECT count(*) FROM audit_events").fetchone()
        return int(n)
    finally:
        conn.close()


def with_durable_record(app: Any, home: Path) -> Any:
    """`app`, each response held back until its row is durable (S15's rule, nothing more)."""
    writer = Writer(home / "durable-hello.db")
    numbers = count()
    prefix = secrets.token_hex(5)
    chain_id = f"dlr_{secrets.token_hex(11)}/sandbox"
    filler = os.urandom(32)
    agent = "wrk/4.2.0"
    details = '{"sealed":"' + secrets.token_urlsafe(90) + '"}'  # the size of sealed details

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def held(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                n = next(numbers)
                row = {
                    "id": f"aud_{prefix}{n:012d}",
                    "chain_id": chain_id,
                    "chain_seq": n,
                    "prev_hash": filler,
                    "hash": filler,
                    "occurred_at": "2026-11-28 12:00:00.000000",
                    "actor_type": "app",
                    "actor_id": "app_" + prefix,
                    "dealer_id": chain_id.split("/")[0],
                    "environment": "sandbox",
                    "app_id": "app_" + prefix,
                    "credential_id": "key_" + prefix,
                    "scope": None,
                    "request_id": f"req_{prefix}{n:012d}",
                    "source_ip": scope["client"][0] if scope.get("client") else None,
                    "user_agent": agent,
                    "method": scope["method"],
                    "route": scope["path"],
                    "action": "api.request",
                    "target_type": None,
                    "target_id": None,
                    "result": str(message["status"]),
                    "details": details,
                }
                await writer.submit(tuple(row[c] for c in COLUMNS))
            await send(message)

        await app(scope, receive, held)

    return asgi
