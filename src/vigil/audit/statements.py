"""The audit log's hot statements, written for each driver (sqlite3, psycopg).

Appending and verifying touch every record, so they bypass SQLAlchemy's statement compilation
and per-value bind/result processing and talk to the DBAPI connection of the caller's own
transaction. The values' types are fixed here, in one place per database, so nothing is
guessed: SQLite keeps times as SQLAlchemy's UTC text ('YYYY-MM-DD HH:MM:SS.ffffff'), PostgreSQL
as `timestamptz`; `details` is stored as its canonical JSON text on both.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection

from vigil.audit import canonical

# Stored columns in the order rows are built: the hashed fields, then the links.
RECORD_COLUMNS = (*canonical.FIELDS, "prev_hash", "hash")
_COLUMN_LIST = ", ".join(RECORD_COLUMNS)


@dataclass(frozen=True, slots=True)
class Statements:
    # (raw connection, chain ids) -> (chain_id, seq, hash, checkpointed_seq) rows, locked on
    # PostgreSQL, in chain order.
    read_heads: Callable[[Any, list[str]], list[Sequence[Any]]]
    insert_head: str
    stored_time: Callable[[str], Any]
    stored_moment: Callable[[datetime], Any]
    # (raw connection, record rows, (chain_id, seq, hash) per chain, now): insert the rows and
    # move the heads, in as few statements (and round trips) as the driver allows.
    write_batch: Callable[[Any, list[tuple[Any, ...]], list[tuple[str, int, bytes]], Any], None]
    # Verification, per record of one chain in chain order: chain_seq, chain_id, id, the
    # canonical JSON array of VERSION and every field but `details` (or the values to spell it
    # from), the stored details text (sealed or not), prev_hash, hash. `spell_head(row)` gives
    # that array's text; the verifier hashes it itself. A value not in exactly the form the
    # writer stores spells differently, so its hash does not match and verify.py checks that
    # chain the general way instead: this form only speeds up records that verify, it never
    # decides that one fails.
    chain_rows: str
    spell_head: Callable[[Sequence[Any]], str]
    # (raw connection, chain id) -> the chain_rows rows, streamed.
    chain_records: Callable[[Any, str], Generator[Sequence[Any], None, None]]


def statements_for(conn: Connection) -> Statements:
    return POSTGRES if conn.dialect.name == "postgresql" else SQLITE


# -- SQLite ----------------------------------------------------------------------------------


def _sqlite_heads(raw: Any, chain_ids: list[str]) -> list[Sequence[Any]]:
    marks = ", ".join("?" * len(chain_ids))
    sql = (
        "SELECT chain_id, seq, hash, checkpointed_seq FROM audit_chain_heads "  # noqa: S608
        f"WHERE chain_id IN ({marks}) ORDER BY chain_id"
    )
    return list(raw.execute(sql, chain_ids).fetchall())


def _sqlite_time(stamp: str) -> str:
    """The canonical '…T19:26:23.096Z' as SQLAlchemy's SQLite DateTime text, microseconds
    included, so every reader (SQLAlchemy, the delete guard's trigger) sees the same value."""
    return stamp.replace("T", " ")[:-1] + "000"


def _sqlite_moment(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# Rows per INSERT statement: one statement per batch keeps the writer from handing the GIL to
# the event loop (and waiting to get it back) once per row; 256 rows x 23 values stays far
# below SQLite's limit of 32,766 bound values per statement.
SQLITE_ROWS_PER_INSERT = 256
_SQLITE_ROW = f"({', '.join('?' * len(RECORD_COLUMNS))})"


@lru_cache(maxsize=SQLITE_ROWS_PER_INSERT)
def _sqlite_insert(rows: int) -> str:
    return (
        f"INSERT INTO audit_events ({_COLUMN_LIST}) "  # noqa: S608 - fixed column names
        f"VALUES {', '.join([_SQLITE_ROW] * rows)}"
    )


@lru_cache(maxsize=64)
def _sqlite_move_heads(chains: int) -> str:
    # SET sees the old row: a chain with no unsigned record starts its pending clock now.
    return (
        "UPDATE audit_chain_heads SET seq = v.column2, hash = v.column3, pending_since = "  # noqa: S608
        "CASE WHEN seq = checkpointed_seq THEN ? ELSE pending_since END "
        f"FROM (VALUES {', '.join(['(?, ?, ?)'] * chains)}) AS v "
        "WHERE audit_chain_heads.chain_id = v.column1"
    )


def _sqlite_write(
    raw: Any, rows: list[tuple[Any, ...]], heads: list[tuple[str, int, bytes]], now: Any
) -> None:
    step = SQLITE_ROWS_PER_INSERT
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        raw.execute(_sqlite_insert(len(chunk)), list(chain.from_iterable(chunk)))
    raw.execute(_sqlite_move_heads(len(heads)), [now, *chain.from_iterable(heads)])


def _chain_rows(head: str, mark: str) -> str:
    return (
        f"SELECT chain_seq, chain_id, id, {head}, details, prev_hash, hash "  # noqa: S608
        f"FROM audit_events WHERE chain_id = {mark} AND chain_seq >= {mark} ORDER BY chain_seq"
    )


def _head_fields(occurred_at: str) -> list[str]:
    """FIELDS but `details`, with `occurred_at` as the expression giving its canonical text."""
    return [occurred_at if f == "occurred_at" else f for f in canonical.FIELDS[:-1]]


def _sqlite_chain_records(raw: Any, chain_id: str) -> Generator[Sequence[Any], None, None]:
    cur = raw.cursor()
    try:
        cur.execute(SQLITE.chain_rows, (chain_id, 0))
        yield from cur
    finally:
        cur.close()


SQLITE = Statements(
    read_heads=_sqlite_heads,
    insert_head=(
        "INSERT INTO audit_chain_heads (chain_id, seq, hash, checkpointed_seq) "
        "VALUES (?, 0, ?, 0) ON CONFLICT DO NOTHING"
    ),
    stored_time=_sqlite_time,
    stored_moment=_sqlite_moment,
    write_batch=_sqlite_write,
    spell_head=itemgetter(3),
    chain_records=_sqlite_chain_records,
    # `occurred_at` exactly in the writer's form ('YYYY-MM-DD HH:MM:SS.mmm000', text) or NULL.
    # SQLite's JSON strings escape exactly as Python's with ensure_ascii=False.
    chain_rows=_chain_rows(
        "json_array({}, {})".format(
            canonical.VERSION,
            ", ".join(
                _head_fields(
                    "CASE WHEN typeof(occurred_at) = 'text' AND length(occurred_at) = 26"
                    " AND substr(occurred_at, 11, 1) = ' ' AND substr(occurred_at, 24, 3) = '000'"
                    " THEN substr(occurred_at, 1, 10) || 'T' || substr(occurred_at, 12, 12)"
                    " || 'Z' END"
                )
            ),
        ),
        "?",
    ),
)


# -- PostgreSQL ------------------------------------------------------------------------------


def _pg_heads(raw: Any, chain_ids: list[str]) -> list[Sequence[Any]]:
    """Pipelined: psycopg's BEGIN travels with the SELECT instead of a round trip of its own
    (each round trip is a wake-up of the server and of this thread, which on a busy machine
    costs more than the statement)."""
    with raw.pipeline(), raw.cursor() as cur:
        cur.execute(
            "SELECT chain_id, seq, hash, checkpointed_seq FROM audit_chain_heads "
            "WHERE chain_id = ANY(%s) ORDER BY chain_id FOR UPDATE",
            (chain_ids,),
        )
        return list(cur.fetchall())


@lru_cache(maxsize=64)
def _pg_move_heads(chains: int) -> str:
    values = ", ".join(["(%s, %s::bigint, %s::bytea)"] * chains)
    # SET sees the old row: a chain with no unsigned record starts its pending clock now.
    return (
        "UPDATE audit_chain_heads AS h SET seq = v.seq, hash = v.hash, pending_since = "  # noqa: S608
        "CASE WHEN h.seq = h.checkpointed_seq THEN %s::timestamptz ELSE h.pending_since END "
        f"FROM (VALUES {values}) AS v (chain_id, seq, hash) WHERE h.chain_id = v.chain_id"
    )


_PG_COPY = f"COPY audit_events ({_COLUMN_LIST}) FROM STDIN"


def _pg_write(
    raw: Any, rows: list[tuple[Any, ...]], heads: list[tuple[str, int, bytes]], now: Any
) -> None:
    """COPY for the rows: psycopg formats them in C, where a multi-row INSERT had its
    thousand-placeholder text re-parsed in Python on every batch (too long for its cache)."""
    with raw.cursor() as cur:
        with cur.copy(_PG_COPY) as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(_pg_move_heads(len(heads)), [now, *chain.from_iterable(heads)])


# Rows per message from the server; chunked streaming needs libpq 17 (psycopg-binary ships it).
PG_STREAM_ROWS = 2000


def _pg_chain_records(raw: Any, chain_id: str) -> Generator[Sequence[Any], None, None]:
    """Binary results (no hex round trip for the hashes, no text one for numbers; the same
    Python values). Streamed in chunks: the server keeps producing rows while Python checks
    the previous ones, where a server-side cursor's FETCH left one side idle at a time. A
    chain can be far larger than memory either way."""
    params = (chain_id, 0)
    if psycopg_pq_version() >= 170000:
        with raw.cursor(binary=True) as cur:
            yield from cur.stream(POSTGRES.chain_rows, params, size=PG_STREAM_ROWS)
        return
    with raw.cursor(name="vigil_audit_verify", binary=True) as cur:
        cur.execute(POSTGRES.chain_rows, params)
        while rows := cur.fetchmany(PG_STREAM_ROWS):
            yield from rows


def psycopg_pq_version() -> int:
    import psycopg

    return int(psycopg.pq.version())


def _encode_head(row: Sequence[Any]) -> str:
    return canonical.encode_json(row[3:-3])


def _identity(value: Any) -> Any:
    return value


# The canonical text of a stored time that is exactly on a millisecond (the writer's), else NULL.
_PG_OCCURRED_AT = (
    "CASE WHEN date_trunc('milliseconds', e.occurred_at) = e.occurred_at THEN"
    " to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') END"
)

POSTGRES = Statements(
    read_heads=_pg_heads,
    insert_head=(
        "INSERT INTO audit_chain_heads (chain_id, seq, hash, checkpointed_seq) "
        "VALUES (%s, 0, %s, 0) ON CONFLICT DO NOTHING"
    ),
    # The canonical text is ISO 8601 with 'Z': PostgreSQL reads it as that exact UTC instant.
    stored_time=_identity,
    stored_moment=_identity,
    write_batch=_pg_write,
    # `json` keeps its input text verbatim, so `details::text` is what the writer stored.
    # The fields come back as they are and Python spells the array: PostgreSQL's own JSON
    # functions (to_json per field, array_to_json) cost the server three times what the
    # driver and Python's C encoder cost here.
    chain_rows=(
        f"SELECT e.chain_seq, e.chain_id, e.id, {canonical.VERSION}, "  # noqa: S608 - fixed
        + ", ".join(
            _PG_OCCURRED_AT if f == "occurred_at" else f"e.{f}" for f in canonical.FIELDS[:-1]
        )
        + ", e.details::text, e.prev_hash, e.hash FROM audit_events AS e"
        " WHERE e.chain_id = %s AND e.chain_seq >= %s ORDER BY e.chain_seq"
    ),
    spell_head=_encode_head,
    chain_records=_pg_chain_records,
)
