"""Engine, transactions and schema migration for SQLite and PostgreSQL.

SQLite runs in WAL mode with `synchronous=FULL`: a committed audit record must survive power
loss (S15), and WAL lets readers run while the audit writer commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import NullPool, QueuePool

MIGRATIONS = Path(__file__).parent / "migrations"

ConnectionFactory = Callable[[], Any]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Database:
    """One engine per process. `creator` is the hook a later layer uses for SQLCipher keys."""

    def __init__(self, url: str, *, creator: ConnectionFactory | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"future": True}
        if creator is not None:
            kwargs["creator"] = creator
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
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling is off (isolation_level=None); emit BEGIN
            # ourselves so SQLAlchemy's transaction boundaries are the real ones.
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A unit of work: everything inside commits together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()


def single_use_engine(url: str) -> Engine:
    """An engine without pooling, for short-lived tools and tests."""
    return create_engine(url, poolclass=NullPool)
