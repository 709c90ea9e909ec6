"""The audit write path keeps S15's promises however the caller holds its transaction."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from tests.support.audit_world import AuditWorld

from vigil.audit.actions import AuditAction
from vigil.audit.record import AuditRecord
from vigil.audit.verify import verify_store
from vigil.storage.tables import audit_events


def a_record(world: AuditWorld, n: int = 0) -> AuditRecord:
    return AuditRecord(
        occurred_at=world.clock.now(),
        action=AuditAction.API_REQUEST,
        result="200",
        actor_type="app",
        dealer_id="dlr_write",
        environment="production",
        request_id=f"req_write_{n}",
        details={"n": n},
    )


def rows(world: AuditWorld) -> int:
    with world.db.read() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())


def change_that_fails(world: AuditWorld) -> None:
    with world.db.transaction() as conn:
        world.log.write_in(conn, a_record(world))
        raise RuntimeError("the state change failed")


def test_a_record_written_in_a_transaction_rolls_back_with_it(world: AuditWorld) -> None:
    with pytest.raises(RuntimeError):
        change_that_fails(world)
    assert rows(world) == 0


def test_a_record_written_before_any_statement_still_joins_the_callers_transaction(
    world: AuditWorld,
) -> None:
    """No explicit begin: the record must not commit on its own (autobegin, as SQLAlchemy)."""
    with world.db.engine.connect() as conn:
        world.log.write_in(conn, a_record(world))
        conn.rollback()
    assert rows(world) == 0
    with world.db.engine.connect() as conn:
        world.log.write_in(conn, a_record(world, 1))
        conn.commit()
    assert rows(world) == 1


def test_group_commit_survives_a_broken_writer_connection(world: AuditWorld) -> None:
    async def append(n: int) -> None:
        await world.log.append(a_record(world, n))

    asyncio.run(append(1))
    conn = world.log._group_conn
    assert conn is not None
    conn.connection.dbapi_connection.close()  # type: ignore[union-attr]
    asyncio.run(append(2))
    assert rows(world) == 2
    world.log.checkpoint_all()
    assert all(r.ok for r in verify_store(world.db, world.signer))
