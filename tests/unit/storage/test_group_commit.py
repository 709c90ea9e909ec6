"""Group commit for small write transactions (vigil.storage.group_commit): concurrent items
share one transaction, each item gets its own outcome, and a failed batch writes nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import Connection

from vigil.storage.db import Database
from vigil.storage.group_commit import GroupCommit


class Refused(Exception):
    pass


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'group.db'}")
    with database.transaction() as conn:
        conn.exec_driver_sql("CREATE TABLE items (value INTEGER PRIMARY KEY)")
    return database


def stored(db: Database) -> list[int]:
    with db.read() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT value FROM items ORDER BY value")]


def test_concurrent_items_share_a_commit_and_each_gets_its_own_outcome(db: Database) -> None:
    batches: list[int] = []

    def sink(conn: Connection, items: Sequence[int]) -> list[object]:
        batches.append(len(items))
        outcomes: list[object] = []
        for item in items:
            if item % 3 == 0:
                outcomes.append(Refused(item))  # refused: not written, the others go on
                continue
            conn.exec_driver_sql("INSERT INTO items VALUES (?)", (item,))
            outcomes.append(item * 10)
        return outcomes

    commits: GroupCommit[int, int] = GroupCommit(db, sink, "test-group")

    async def main() -> list[object]:
        return await asyncio.gather(
            *(commits.submit(i) for i in range(1, 10)), return_exceptions=True
        )

    try:
        results = asyncio.run(main())
    finally:
        commits.close()
    assert [r if isinstance(r, int) else type(r) for r in results] == [
        10, 20, Refused, 40, 50, Refused, 70, 80, Refused,
    ]  # fmt: skip
    assert stored(db) == [1, 2, 4, 5, 7, 8]
    assert batches == [9]  # submitted in one loop iteration: one transaction


def test_a_failing_batch_fails_every_item_and_writes_nothing(db: Database) -> None:
    forgotten: list[bool] = []

    def sink(conn: Connection, items: Sequence[int]) -> list[object]:
        for item in items:
            conn.exec_driver_sql("INSERT INTO items VALUES (?)", (item,))
        raise RuntimeError("disk full")

    commits: GroupCommit[int, int] = GroupCommit(
        db, sink, "test-group", on_failure=lambda: forgotten.append(True)
    )

    async def main() -> list[object]:
        return await asyncio.gather(*(commits.submit(i) for i in (1, 2)), return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        commits.close()
    assert all(isinstance(r, RuntimeError) for r in results)
    assert stored(db) == []
    assert forgotten == [True]


def test_before_runs_outside_the_transaction_and_the_batch_holds_the_write_lock(
    db: Database,
) -> None:
    seen: list[str] = []
    commits: GroupCommit[int, int]

    def before() -> None:
        conn = commits._conn
        seen.append("before, in a transaction" if conn and conn.in_transaction() else "before")

    def sink(conn: Connection, items: Sequence[int]) -> list[object]:
        # Another thread of this process cannot start a write meanwhile: it queues on the lock.
        probe: list[bool] = []

        def try_lock() -> None:
            lock = db.write_lock()
            probe.append(lock.acquire(False))
            if probe[0]:
                lock.release()

        other = threading.Thread(target=try_lock)
        other.start()
        other.join()
        seen.append("sink, lock free" if probe[0] else "sink, lock held")
        for item in items:
            conn.exec_driver_sql("INSERT INTO items VALUES (?)", (item,))
        return list(items)

    commits = GroupCommit(db, sink, "test-group", before=before)

    async def main() -> None:
        assert await commits.submit(1) == 1
        assert await commits.submit(2) == 2

    try:
        asyncio.run(main())
    finally:
        commits.close()
    assert seen == ["before", "sink, lock held", "before", "sink, lock held"]
    assert stored(db) == [1, 2]
