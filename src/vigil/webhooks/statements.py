"""The delivery worker's hot statements, written for each driver (sqlite3, psycopg).

Every delivered message costs a fan-out insert, an attempt insert and a state update; through
SQLAlchemy's statement and per-value bind processing those cost more than the HTTPS request
itself (bench/RESULTS.md, session 4). Like the audit log's (`audit/statements.py`), they go
straight to the DBAPI connection of the caller's own transaction (and savepoint), with the
values' stored forms fixed here: SQLite keeps times as SQLAlchemy's naive UTC text, PostgreSQL
as `timestamptz`.

On SQLite each batch is ONE multi-row statement rather than an `executemany`, and a batch of
rows is read as ONE result row (`sqlite_rows`: the rows as a JSON array built by SQLite): the
turn runs in a thread, and sqlite3 releases the GIL around every step, so a step per row hands
the GIL to the busy event loop and waits up to a switch interval (5 ms) to get it back, once
per row. Measured: a turn's wall time was 2.5x its CPU time. On PostgreSQL a batch of inserts
is one `INSERT ... SELECT FROM unnest(arrays)` per table, all in one pipeline (one round trip).

Raw statements skip the engine's NUL guard (`storage/db.py`), so text a receiver chose (the
response body kept with an attempt) has NUL replaced here, as the audit record does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from vigil.storage.tables import metadata
from vigil.webhooks.models import MessageStatus

# webhook_messages columns a fan-out writes, in row order.
MESSAGE_COLUMNS = (
    "id",
    "dealer_id",
    "environment",
    "endpoint_id",
    "event_id",
    "event_type",
    "payload_sealed",
    "status",
    "attempts",
    "next_attempt_at",
    "lease_until",
    "exhausted",
    "version",
    "created_at",
    "updated_at",
)
ATTEMPT_COLUMNS = (
    "id",
    "dealer_id",
    "environment",
    "endpoint_id",
    "message_id",
    "attempt",
    "result",
    "reason",
    "status_code",
    "latency_ms",
    "tls",
    "response_body",
    "attempted_at",
)
FANOUT_COLUMNS = ("event_id", "fanned_out_at")
# Columns of `outbox_events` a fan-out reads, in this order.
EVENT_COLUMNS = ("id", "dealer_id", "environment", "type", "subject_id", "payload_sealed", "seq")

# SQLite allows 32,766 bound values per statement; 14 x 500 stays well below.
SQLITE_ROWS_PER_STATEMENT = 500


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def raw(conn: Connection) -> Any:
    """The DBAPI connection of `conn`'s transaction (begun if it is not yet)."""
    if not conn.in_transaction():
        conn.begin()
    driver = conn.connection.dbapi_connection
    assert driver is not None
    return driver


def moment(conn: Connection, value: datetime | None) -> Any:
    """`value` in the form the column stores (see UtcDateTime)."""
    if value is None or is_postgres(conn):
        return value
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def text(value: str | None) -> str | None:
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


@lru_cache(maxsize=64)
def _sqlite_insert(table: str, columns: tuple[str, ...], rows: int) -> str:
    row = f"({', '.join('?' * len(columns))})"
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - fixed names
        f"VALUES {', '.join([row] * rows)}"
    )


def insert(
    conn: Connection, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` (values in `columns` order, already in stored form) into `table`."""
    insert_many(conn, [(table, columns, rows)])


@lru_cache(maxsize=16)
def _pg_insert(table: str, columns: tuple[str, ...]) -> str:
    """One statement for any number of rows, its text fixed (prepared once by the server):
    each column's values travel as one array, typed as `storage/tables.py` declares it. (An
    `executemany` runs one INSERT per row on the server, which cost more than the rows.)"""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    # Without a length (`VARCHAR(40)` -> `VARCHAR`): an explicit cast would cut a longer
    # value silently; the column itself still refuses it.
    types = [
        re.sub(r"\(\d+\)", "", metadata.tables[table].c[c].type.compile(dialect=dialect))
        for c in columns
    ]
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    return f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"  # noqa: S608


def insert_many(
    conn: Connection, batches: Sequence[tuple[str, tuple[str, ...], Sequence[Sequence[Any]]]]
) -> None:
    """Insert each `(table, columns, rows)` batch, in order. On PostgreSQL they all travel in
    one pipeline, one statement per table: one round trip in all (COPY costs two per table). A
    unique-key refusal is raised as SQLAlchemy's IntegrityError, as `conn.execute` would."""
    batches = [b for b in batches if b[2]]
    if not batches:
        return
    driver = raw(conn)
    try:
        if is_postgres(conn):
            with driver.pipeline(), driver.cursor() as cur:
                for table, columns, rows in batches:
                    cur.execute(
                        _pg_insert(table, columns), [list(c) for c in zip(*rows, strict=True)]
                    )
            return
        step = SQLITE_ROWS_PER_STATEMENT
        for table, columns, rows in batches:
            for start in range(0, len(rows), step):
                part = rows[start : start + step]
                sql = _sqlite_insert(table, columns, len(part))
                driver.execute(sql, list(chain.from_iterable(part)))
    except conn.dialect.dbapi.IntegrityError as exc:  # type: ignore[union-attr]
        raise IntegrityError(f"INSERT INTO {batches[0][0]}", None, exc) from exc


def sqlite_rows(
    driver: Any,
    query: str,
    params: Sequence[Any],
    columns: Sequence[str],
    blobs: frozenset[str] = frozenset(),
) -> list[list[Any]]:
    """The rows of `query` (which selects `columns`), read in ONE step: SQLite builds them into
    a JSON array (blobs as hex), decoded here in C. Values come back as stored: integers, text
    (times in their stored text form), None; blobs as bytes."""
    items = ", ".join(
        f"CASE WHEN q.{c} IS NULL THEN NULL ELSE hex(q.{c}) END" if c in blobs else f"q.{c}"
        for c in columns
    )
    sql = f"SELECT json_group_array(json_array({items})) FROM ({query}) AS q"  # noqa: S608
    (encoded,) = driver.execute(sql, params).fetchone()
    rows: list[list[Any]] = json.loads(encoded)
    if blobs:
        at = [i for i, c in enumerate(columns) if c in blobs]
        for row in rows:
            for i in at:
                if row[i] is not None:
                    row[i] = bytes.fromhex(row[i])
    return rows


def waiting_events(conn: Connection, after: int, batch: int) -> Sequence[Sequence[Any]]:
    """Up to `batch` outbox events with `seq > after` not fanned out yet, in `EVENT_COLUMNS`
    order; on PostgreSQL locked, skipping those another worker is fanning out."""
    columns = ", ".join(f"o.{c}" for c in EVENT_COLUMNS)
    query = (
        f"SELECT {columns} FROM outbox_events AS o WHERE o.seq > {{m}} AND NOT EXISTS "  # noqa: S608
        "(SELECT 1 FROM webhook_fanout AS f WHERE f.event_id = o.id) ORDER BY o.seq LIMIT {m}"
    )
    driver = raw(conn)
    if is_postgres(conn):
        with driver.cursor() as cur:
            cur.execute(query.format(m="%s") + " FOR UPDATE OF o SKIP LOCKED", (after, batch))
            return list(cur.fetchall())
    return sqlite_rows(
        driver, query.format(m="?"), (after, batch), EVENT_COLUMNS, frozenset({"payload_sealed"})
    )


# webhook_messages columns a claim reads, in this order.
CLAIM_COLUMNS = (
    "id",
    "dealer_id",
    "environment",
    "endpoint_id",
    "event_id",
    "event_type",
    "payload_sealed",
    "attempts",
)


def sqlite_claim(
    conn: Connection,
    kinds: Sequence[tuple[str, str, str]],
    limit: int,
    lease_until: datetime,
    now: datetime,
) -> list[dict[str, Any]]:
    """SQLite: lease up to `limit` due messages, each kind `(status, time column, bound)` in
    turn (messages with that status whose time column is at or before - for leases, before -
    the bound, oldest first, on an enabled endpoint): one read of one result row per kind and
    one update. (The caller's transaction holds SQLite's write lock: no one else claims.)
    Returns the rows as they were before the lease (`attempts` not yet counted)."""
    driver = raw(conn)
    rows: list[dict[str, Any]] = []
    columns = ", ".join(f"m.{c}" for c in CLAIM_COLUMNS)
    for status, column, comparison in kinds:
        wanted = limit - len(rows)
        if wanted <= 0:
            break
        query = (
            f"SELECT {columns} FROM webhook_messages AS m "  # noqa: S608 - fixed names
            "JOIN webhook_endpoints AS e ON e.id = m.endpoint_id "
            f"WHERE m.status = ? AND m.{column} {comparison} ? AND e.enabled = 1 "
            f"ORDER BY m.{column} LIMIT ?"
        )
        found = sqlite_rows(
            driver,
            query,
            (status, moment(conn, now), wanted),
            CLAIM_COLUMNS,
            frozenset({"payload_sealed"}),
        )
        rows += [dict(zip(CLAIM_COLUMNS, r, strict=True)) for r in found]
    step = SQLITE_ROWS_PER_STATEMENT
    for start in range(0, len(rows), step):
        part = [r["id"] for r in rows[start : start + step]]
        driver.execute(
            "UPDATE webhook_messages SET status = ?, lease_until = ?, attempts = attempts + 1, "  # noqa: S608
            f"updated_at = ? WHERE id IN ({', '.join('?' * len(part))})",
            (MessageStatus.DELIVERING.value, moment(conn, lease_until), moment(conn, now), *part),
        )
    return rows


def mark_delivered(
    conn: Connection, ids: list[str], status_code: int | None, now: datetime
) -> None:
    """Messages `ids`, still being delivered, are delivered (one statement per batch)."""
    if not ids:
        return
    query = (
        "UPDATE webhook_messages SET status = {m}, next_attempt_at = NULL, lease_until = NULL, "
        "last_status_code = {m}, version = version + 1, updated_at = {m} "
        "WHERE status = {m} AND id {match}"
    )
    head = (MessageStatus.DELIVERED.value, status_code, moment(conn, now))
    delivering = MessageStatus.DELIVERING.value
    driver = raw(conn)
    if is_postgres(conn):
        with driver.cursor() as cur:
            cur.execute(query.format(m="%s", match="= ANY(%s)"), (*head, delivering, ids))
        return
    step = SQLITE_ROWS_PER_STATEMENT
    for start in range(0, len(ids), step):
        part = ids[start : start + step]
        match = f"IN ({', '.join('?' * len(part))})"
        driver.execute(query.format(m="?", match=match), (*head, delivering, *part))
