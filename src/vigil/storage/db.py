"""Engine, transactions and schema migration for SQLite and PostgreSQL.

SQLite runs in WAL mode with `synchronous=FULL`: a committed audit record must survive power
loss (S15), and WAL lets readers run while the audit writer commits.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.pool import NullPool, QueuePool

from vigil.core.errors import InvalidInput
from vigil.storage.changes import TableChanges
from vigil.storage.roles import app_role_of, apply_grants

MIGRATIONS = Path(__file__).parent / "migrations"

ConnectionFactory = Callable[[], Any]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _postgres_durability(dbapi_connection: Any, _record: Any) -> None:
    """A commit returns only once it is flushed (S15), whatever the server's default says."""
    cursor = dbapi_connection.cursor()
    cursor.execute("SET synchronous_commit = on")
    cursor.close()
    dbapi_connection.commit()


def _refuse_nul(
    _conn: Connection,
    _cursor: Any,
    _statement: str,
    parameters: Any,
    _context: Any,
    executemany: bool,
) -> None:
    """Text with a NUL character is bad input, not a server error: PostgreSQL cannot store it
    (and SQLite would store what C-string consumers truncate). Checked once, here, for every
    statement, so no front or service can forget it."""
    rows = parameters if executemany else (parameters,)
    for row in rows:
        for value in row.values() if isinstance(row, dict) else row or ():
            if type(value) is str and "\x00" in value:
                raise InvalidInput("Text may not contain NUL (U+0000) characters.")


# Statements that never write; anything else is searched for the tables it may write (a
# false positive, a table a statement only reads, merely makes a kept lookup read again).
_READ_ONLY = ("SELECT", "PRAGMA", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "EXPLAIN")
_TARGETS = re.compile(
    r"\b(?:INTO|UPDATE|FROM|TABLE)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?[\"`\[]?(\w+)", re.IGNORECASE
)


def written_tables(statement: str) -> list[str]:
    """The tables `statement` may write (see `vigil.storage.changes`)."""
    if statement.lstrip()[:9].upper().startswith(_READ_ONLY):
        return []
    return _TARGETS.findall(statement)


def _changes_path(url: str) -> Path | None:
    path = url.removeprefix("sqlite:///")
    if path == url or path in ("", ":memory:") or path.startswith("file:"):
        return None
    return Path(path + "-changes")


_ANNOUNCED = "vigil_announced"


def announce(conn: Connection, topic: str) -> None:
    """Tell this process's subscribers to `topic` once the transaction on `conn` commits (the
    outbox wakes the in-process webhook worker this way). Only transactions opened with
    `Database.transaction` announce; other writers are found by their readers' polling."""
    conn.info.setdefault(_ANNOUNCED, set()).add(topic)


def _sqlite_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    write = options.get("vigil_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """One engine per process. `creator` is the hook a later layer uses for SQLCipher keys."""

    def __init__(
        self, url: str, *, creator: ConnectionFactory | None = None, module: Any = None
    ) -> None:
        """`module`: the DB-API module `creator`'s connections come from (sqlcipher3), so that
        SQLAlchemy recognises its exceptions (an IntegrityError must stay a 409, not a 500)."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"future": True}
        if creator is not None:
            kwargs["creator"] = creator
        if module is not None:
            kwargs["module"] = module
        if self.is_sqlite:
            if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            kwargs["poolclass"] = QueuePool
            kwargs["pool_size"] = 8
            kwargs["connect_args"] = {"check_same_thread": False, "isolation_level": None}
        else:
            kwargs["pool_size"] = 10
            kwargs["max_overflow"] = 20
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **kwargs)
        # SQLite has one writer at a time. Writers in this process queue on this lock and are
        # woken the moment it is free; left to SQLite they would poll the file lock through its
        # busy handler, which sleeps 1, 2, 5, 10... up to 100 ms between tries, so under a
        # steady stream of small commits (API changes next to the webhook worker) a writer
        # could wait hundreds of milliseconds for a lock that is free most of the time.
        # Re-entrant: a nested write transaction behaves as it did without the lock.
        # Writers in other processes (`vigil worker`) still meet at SQLite's own lock.
        self._write_lock = threading.RLock() if self.is_sqlite else None
        # Per-table change counters for the hot lookups' kept rows (vigil.storage.changes):
        # SQLite only, where every process on the file can share them.
        self.changes: TableChanges | None = None
        self._written: dict[int, set[str]] = {}
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        event.listen(self.engine, "before_cursor_execute", _refuse_nul)
        if not self.is_sqlite:
            event.listen(self.engine, "connect", _postgres_durability)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling is off (isolation_level=None); emit BEGIN
            # ourselves so SQLAlchemy's transaction boundaries are the real ones.
            event.listen(self.engine, "begin", _sqlite_begin)
            self.changes = TableChanges(_changes_path(url))
            event.listen(self.engine, "after_cursor_execute", self._note_writes)
            self._count_changes_at_commit()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A unit of work: everything inside commits together or not at all.

        On SQLite the write lock is taken up front (`BEGIN IMMEDIATE`): a deferred transaction
        that reads and then writes can fail outright with SQLITE_BUSY_SNAPSHOT when another
        writer committed in between, which busy_timeout does not retry.
        """
        with self.write_lock(), self.engine.connect() as conn:
            conn.execution_options(vigil_write=True)
            conn.info.pop(_ANNOUNCED, None)  # left by a transaction that did not commit
            with conn.begin():
                yield conn
            announced = conn.info.pop(_ANNOUNCED, None)
        for topic in announced or ():
            for listener in list(self._listeners.get(topic, ())):
                listener()

    def _note_writes(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        _parameters: Any,
        _context: Any,
        _executemany: bool,
    ) -> None:
        tables = written_tables(statement)
        if not tables:
            return
        raw = cursor.connection
        if raw.in_transaction:
            self._written.setdefault(id(raw), set()).update(tables)
        elif self.changes is not None:  # the statement committed on its own (autocommit)
            self.changes.bump(tables)

    def _count_changes_at_commit(self) -> None:
        """Bump the written tables' counters once the transaction has committed, not before:
        a reader that saw the new count while the change was still uncommitted would keep the
        old rows under it. (SQLAlchemy's `commit` event fires before the commit, so the
        dialect's own `do_commit` is wrapped.)"""
        dialect = self.engine.dialect
        commit, rollback = dialect.do_commit, dialect.do_rollback
        written, changes = self._written, self.changes
        assert changes is not None

        def driver(connection: Any) -> int:
            # SQLAlchemy hands the dialect its pool's proxy; the cursor knew the driver's own.
            return id(getattr(connection, "dbapi_connection", connection))

        def do_commit(dbapi_connection: Any) -> None:
            try:
                commit(dbapi_connection)
            finally:  # a failed commit may still have written: counting it again is harmless
                tables = written.pop(driver(dbapi_connection), None)
                if tables:
                    changes.bump(tables)

        def do_rollback(dbapi_connection: Any) -> None:
            written.pop(driver(dbapi_connection), None)
            rollback(dbapi_connection)

        dialect.do_commit = do_commit  # type: ignore[method-assign]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    def subscribe(self, topic: str, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` (from the committing thread; keep it short) after each commit of a
        transaction that announced `topic`. Returns the function that unsubscribes."""
        self._listeners.setdefault(topic, []).append(listener)
        return lambda: self._listeners[topic].remove(listener)

    def write_lock(self) -> AbstractContextManager[object]:
        """Held around every write transaction of this process on SQLite (see `__init__`);
        callers that open a write transaction on their own connection take it too."""
        return self._write_lock if self._write_lock is not None else nullcontext()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def migrate(self, *, owner_url: str | None = None, platform_retention_days: int = 365) -> None:
        """Bring the schema to the newest migration (idempotent), as the owner role if given.

        Also records the platform retention the storage's delete guard enforces and, on
        PostgreSQL with a separate application role, re-applies that role's grants.
        """
        owner = create_engine(owner_url, poolclass=NullPool) if owner_url else self.engine
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            if self.is_sqlite and owner is self.engine:
                conn_cm = self.transaction()
            else:
                conn_cm = owner.begin()
            with conn_cm as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                _set_platform_retention(conn, platform_retention_days)
                role = app_role_of(self.url, owner_url) if owner_url else None
                if role and conn.dialect.name == "postgresql":
                    apply_grants(conn, role)
        finally:
            if owner is not self.engine:
                owner.dispose()

    def dispose(self) -> None:
        self.engine.dispose()


def _set_platform_retention(conn: Connection, days: int) -> None:
    from vigil.storage.tables import audit_policy

    if conn.execute(select(audit_policy.c.id).where(audit_policy.c.id == 1)).first() is None:
        conn.execute(insert(audit_policy).values(id=1, platform_retention_days=days))
    else:
        conn.execute(
            update(audit_policy).where(audit_policy.c.id == 1).values(platform_retention_days=days)
        )
