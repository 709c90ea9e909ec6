"""The hot lookups keep found rows on SQLite (vigil.auth.apikeys.lookup) and read again as
soon as any process commits a write to a table their query reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, ForeignKey, MetaData, String, Table, bindparam, false, select, update

from vigil.auth.apikeys.lookup import KEPT, RawLookup
from vigil.storage.db import Database

meta = MetaData()
owners = Table("owners", meta, Column("id", String, primary_key=True), Column("scopes", String))
keys = Table(
    "keys",
    meta,
    Column("id", String, primary_key=True),
    Column("owner_id", String, ForeignKey("owners.id")),
    Column("status", String),
)
others = Table("others", meta, Column("id", String, primary_key=True))

QUERY = (
    select(keys.c.status, owners.c.scopes)
    .join(owners, owners.c.id == keys.c.owner_id)
    .where(keys.c.id == bindparam("key_id"))
)
NO_TOUCH = update(keys).where(false()).values(status=bindparam("status"))


class Counted(RawLookup):
    DATETIMES = ()
    BYTES = ()

    def __init__(self, db: Database) -> None:
        super().__init__(db, QUERY, NO_TOUCH)
        self.reads = 0

    def _run(self, sql: str, names: list[str], params: dict[str, Any]) -> Any:
        self.reads += 1
        return super()._run(sql, names, params)


def _database(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    meta.create_all(db.engine)
    with db.transaction() as conn:
        conn.execute(owners.insert().values(id="o1", scopes="sites:read"))
        conn.execute(keys.insert().values(id="k1", owner_id="o1", status="active"))
    return db


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return _database(tmp_path / "kept.db")


def test_a_found_row_is_kept_until_a_table_it_reads_changes(db: Database, tmp_path: Path) -> None:
    lookup = Counted(db)
    assert lookup.fetch(key_id="k1") == {"status": "active", "scopes": "sites:read"}
    assert lookup.fetch(key_id="k1") == {"status": "active", "scopes": "sites:read"}
    assert lookup.reads == 1

    elsewhere = Database(f"sqlite:///{tmp_path / 'kept.db'}")  # another writer on the file
    with elsewhere.transaction() as conn:
        conn.execute(others.insert().values(id="x"))  # a table the query does not read
    assert lookup.fetch(key_id="k1") is not None
    assert lookup.reads == 1

    with elsewhere.transaction() as conn:  # the joined table narrows
        conn.execute(update(owners).values(scopes="alarms:read"))
    assert lookup.fetch(key_id="k1") == {"status": "active", "scopes": "alarms:read"}
    assert lookup.reads == 2

    with elsewhere.transaction() as conn:  # the key itself is revoked
        conn.execute(update(keys).values(status="revoked"))
    assert lookup.fetch(key_id="k1") == {"status": "revoked", "scopes": "alarms:read"}
    assert lookup.reads == 3


def test_a_missing_row_is_never_kept(db: Database) -> None:
    lookup = Counted(db)
    assert lookup.fetch(key_id="nope") is None
    assert lookup.fetch(key_id="nope") is None
    assert lookup.reads == 2
    with db.transaction() as conn:
        conn.execute(keys.insert().values(id="nope", owner_id="o1", status="active"))
    assert lookup.fetch(key_id="nope") is not None


def test_kept_rows_are_bounded(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(
            keys.insert(),
            [{"id": f"k{n}", "owner_id": "o1", "status": "active"} for n in range(2, KEPT + 10)],
        )
    lookup = Counted(db)
    for n in range(1, KEPT + 10):
        assert lookup.fetch(key_id=f"k{n}") is not None
    assert len(lookup._kept) == KEPT
    reads = lookup.reads
    assert lookup.fetch(key_id="k1") is not None  # the oldest went first
    assert lookup.reads == reads + 1


def test_without_shared_counters_every_fetch_reads(db: Database) -> None:
    db.changes = None  # as on PostgreSQL
    lookup = Counted(db)
    lookup.fetch(key_id="k1")
    lookup.fetch(key_id="k1")
    assert lookup.reads == 2
