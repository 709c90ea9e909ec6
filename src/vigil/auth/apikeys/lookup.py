"""The key lookup on the hot path, on a raw driver connection.

Every request looks its key up, and through SQLAlchemy's connection and result machinery that
one indexed SELECT cost ~150 us of CPU against ~6 us for the driver itself (bench/RESULTS.md).
So the statement is compiled once by SQLAlchemy for the engine's dialect and then run on a
connection each thread keeps, in autocommit mode, with the few type conversions done here.

On SQLite a found row is also kept, with the change count of the tables the query reads
(`vigil.storage.changes`), and served again while that count is unchanged: every commit of
another writer (the audit log's, all the time) makes the reading connection re-read, and under
SQLCipher re-decrypt, the pages of an otherwise unchanged key. Any committed write to those
tables, from any process on the database, makes the next lookup read the database again, so a
revocation still counts from the next request on. Only found rows are kept: a flood of unknown
keys cannot push real ones out or be answered from memory.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, Update

from vigil.storage.changes import slot_of
from vigil.storage.db import Database

# Found rows kept per lookup; past it the oldest goes first.
KEPT = 4096
_READS = re.compile(r"\b(?:FROM|JOIN)\s+[\"`]?(\w+)", re.IGNORECASE)


def tables_read(sql: str) -> list[str]:
    """Every table `sql` names after FROM or JOIN, subqueries included."""
    return _READS.findall(sql)


def _when(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


class RawLookup:
    """`fetch` runs `query` (one row, named columns) and `touch` runs `update`."""

    DATETIMES: tuple[str, ...] = ("expires_at", "last_used_at")
    BYTES: tuple[str, ...] = ("secret_hash",)
    JSONS: tuple[str, ...] = ()  # decoded once per database read, not once per request

    def __init__(self, db: Database, query: Select[Any], update: Update) -> None:
        self._db = db
        dialect = db.engine.dialect
        compiled = query.compile(dialect=dialect)
        self._query_sql = str(compiled)
        self._query_params = compiled.positiontup or []
        self._columns = [c.name for c in query.selected_columns]
        touch = update.compile(dialect=dialect)
        self._touch_sql = str(touch)
        self._touch_params = touch.positiontup or []
        self._local = threading.local()
        self._sqlite = db.is_sqlite
        self._changes = db.changes
        self._slots: Sequence[int] = sorted({slot_of(t) for t in tables_read(self._query_sql)})
        self._kept: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] = {}

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            pooled = self._db.engine.raw_connection()
            driver = pooled.driver_connection
            if not self._sqlite:
                driver.autocommit = True  # type: ignore[union-attr]
            self._local.pooled = pooled
            self._local.conn = conn = driver
        return conn

    def _run(self, sql: str, names: list[str], params: dict[str, Any]) -> Any:
        args: Any = [params[n] for n in names] if names else params
        for attempt in (1, 2):
            conn = self._connection()
            try:
                cursor = conn.cursor()
                cursor.execute(sql, args)
            except Exception:
                # A dropped server connection: discard it and retry once on a fresh one.
                self._local.conn = None
                pooled = getattr(self._local, "pooled", None)
                if pooled is not None:
                    pooled.invalidate()
                if attempt == 2:
                    raise
            else:
                return cursor
        raise AssertionError("unreachable")

    def fetch(self, **params: Any) -> dict[str, Any] | None:
        """The row, or None. A kept row is shared with later callers: only what this process
        wrote itself through `touch` may be recorded in it."""
        changes = self._changes
        key = generation = None
        if changes is not None:
            key = tuple(params.values())
            # Read before the database: a write committed after this point bumps the count
            # past it, so a row read below can never be kept under a count newer than it.
            generation = changes.generation(self._slots)
            kept = self._kept.get(key)
            if kept is not None and kept[0] == generation:
                return kept[1]
        for value in params.values():
            # These parameters come from the caller (a key's id, a claimed issuer or key id).
            # No stored id or hash holds NUL, and PostgreSQL refuses NUL in a text parameter
            # (this raw path bypasses `storage.db`'s NUL check): no row, not a server error.
            # Checked only on the way to the database: a kept row is never kept under such a
            # key, so the hot path of a kept credential pays nothing for it.
            if type(value) is str and "\x00" in value:
                return None
        cursor = self._run(self._query_sql, list(self._query_params), params)
        row = cursor.fetchone()
        cursor.close()
        if row is None:
            return None
        m = dict(zip(self._columns, row, strict=True))
        for name in self.DATETIMES:
            m[name] = _when(m[name])
        for name in self.BYTES:
            m[name] = bytes(m[name])
        for name in self.JSONS:
            if isinstance(m[name], str | bytes):  # the raw driver hands JSON over as text
                m[name] = json.loads(m[name])
        if key is not None and generation is not None:
            self._keep(key, generation, m)
        return m

    def _keep(self, key: tuple[Any, ...], generation: int, row: dict[str, Any]) -> None:
        kept = self._kept
        if len(kept) >= KEPT and key not in kept:
            # Another thread may be evicting too: losing that race costs nothing.
            with contextlib.suppress(RuntimeError, KeyError, StopIteration):
                del kept[next(iter(kept))]
        kept[key] = (generation, row)

    def touch(self, **params: Any) -> None:
        if self._sqlite:
            params = {k: _sqlite_time(v) for k, v in params.items()}
        self._run(self._touch_sql, list(self._touch_params), params).close()


def _sqlite_time(value: Any) -> Any:
    """The text form SQLAlchemy's SQLite DateTime stores (naive UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
