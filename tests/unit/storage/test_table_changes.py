"""Per-table change counters (vigil.storage.changes): what lets the hot credential lookups keep
a row and still see every committed change from any process on the next request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vigil.storage.changes import TableChanges, slot_of
from vigil.storage.db import Database, written_tables

KEYS = [slot_of("api_keys")]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'changes.db'}")
    with database.transaction() as conn:
        conn.exec_driver_sql("CREATE TABLE api_keys (id TEXT PRIMARY KEY, status TEXT)")
        conn.exec_driver_sql("CREATE TABLE alarms (id TEXT PRIMARY KEY)")
    return database


def count(db: Database) -> int:
    assert db.changes is not None
    return db.changes.generation(KEYS)


@pytest.mark.parametrize(
    ("statement", "tables"),
    [
        ("INSERT INTO api_keys (id) VALUES (?)", {"api_keys"}),
        ("INSERT OR REPLACE INTO api_keys (id) VALUES (?)", {"api_keys"}),
        ('UPDATE "api_keys" SET status=? WHERE id=?', {"api_keys"}),
        ("  delete from api_keys where id = ?", {"api_keys"}),
        ("UPDATE apps SET s=? WHERE id IN (SELECT app_id FROM api_keys)", {"apps", "api_keys"}),
        ("DROP TABLE IF EXISTS api_keys", {"api_keys"}),
        ("SELECT * FROM api_keys JOIN apps ON apps.id = api_keys.app_id", set()),
        ("PRAGMA journal_mode=WAL", set()),
    ],
)
def test_statements_name_the_tables_they_may_write(statement: str, tables: set[str]) -> None:
    assert tables <= set(written_tables(statement))
    if not tables:
        assert written_tables(statement) == []


def test_a_write_counts_only_once_committed(db: Database) -> None:
    before = count(db)
    with db.transaction() as conn:
        conn.exec_driver_sql("INSERT INTO api_keys VALUES ('k1', 'active')")
        assert count(db) == before  # a reader now would still read the old rows
    assert count(db) > before


def test_a_rolled_back_write_and_other_tables_leave_the_count_alone(db: Database) -> None:
    before = count(db)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("INSERT INTO api_keys VALUES ('k1', 'active')")
        conn.rollback()
    with db.transaction() as conn:
        conn.exec_driver_sql("INSERT INTO alarms VALUES ('a1')")
    assert count(db) == before
    with db.transaction() as conn:
        conn.exec_driver_sql("INSERT INTO api_keys VALUES ('k1', 'active')")
    assert count(db) == before + 1


def test_another_process_sees_the_count_move(db: Database, tmp_path: Path) -> None:
    before = count(db)
    script = (
        "import sys; from vigil.storage.db import Database\n"
        "db = Database(sys.argv[1])\n"
        "with db.transaction() as conn:\n"
        "    conn.exec_driver_sql(\"UPDATE api_keys SET status = 'revoked'\")\n"
    )
    url = f"sqlite:///{tmp_path / 'changes.db'}"
    subprocess.run([sys.executable, "-c", script, url], check=True, timeout=60)
    assert count(db) == before + 1


def test_the_counters_file_is_private_and_counters_only_grow(tmp_path: Path) -> None:
    path = tmp_path / "x.db-changes"
    first, second = TableChanges(path), TableChanges(path)
    assert path.stat().st_mode & 0o077 == 0
    for n in range(1, 4):
        first.bump(["api_keys", "apps"])
        assert second.generation(KEYS) == n
    assert second.generation([slot_of("alarms")]) == 0


def test_postgres_style_urls_have_no_counters() -> None:
    # No shared file every host could map: the lookups read the database every time.
    assert Database("postgresql+psycopg://vigil@127.0.0.1:1/none").changes is None
