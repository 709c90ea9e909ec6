"""The key lookup on the hot path, on a raw driver connection.

Every request looks its key up, and through SQLAlchemy's connection and result machinery that
one indexed SELECT cost ~150 us of CPU against ~6 us for the driver itself (bench/RESULTS.md).
So the statement is compiled once by SQLAlchemy for the engine's dialect and then run on a
connection each thread keeps, in autocommit mode, with the few type conversions done here.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, Update

from vigil.storage.db import Database


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
        return m

    def touch(self, **params: Any) -> None:
        if self._sqlite:
            params = {k: _sqlite_time(v) for k, v in params.items()}
        self._run(self._touch_sql, list(self._touch_params), params).close()


def _sqlite_time(value: Any) -> Any:
    """The text form SQLAlchemy's SQLite DateTime stores (naive UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value
