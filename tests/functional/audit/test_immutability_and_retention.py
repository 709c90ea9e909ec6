"""S16, S17: the storage itself refuses changes and early deletion; purging removes exactly
the expired segments and leaves a log that still verifies."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from tests.conftest import DATABASE
from tests.support.audit_world import AuditWorld

from vigil.audit.retention import purge
from vigil.audit.verify import verify_store
from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType
from vigil.core.clock import FrozenClock, SystemClock
from vigil.tenancy.dealers import DealerService
from vigil.tenancy.models import Plan

OPERATOR = Actor(type=ActorType.OPERATOR, id="cli:test", via="cli")
NOW = datetime.now(UTC)


def app_sql(world: AuditWorld, statement: str) -> None:
    """Run `statement` on the application's own connection (the role the server uses)."""
    with world.db.transaction() as conn:
        conn.execute(text(statement))


REFUSED = [
    "UPDATE audit_events SET result = '500'",
    "DELETE FROM audit_events",
    "UPDATE audit_checkpoints SET seq = seq + 1",
    "DELETE FROM audit_checkpoints",
]
if DATABASE == "postgres":  # SQLite has no TRUNCATE statement
    REFUSED += ["TRUNCATE audit_events", "TRUNCATE audit_checkpoints"]


@pytest.mark.parametrize("statement", REFUSED)
def test_application_connection_cannot_alter_or_delete_records(
    world: AuditWorld, statement: str
) -> None:
    world.record("dlr_x", 12)
    with pytest.raises(DBAPIError) as refused:
        app_sql(world, statement)
    message = str(refused.value).lower()
    assert "immutable" in message or "retention" in message or "permission denied" in message
    reports = verify_store(world.db, world.signer)
    assert all(r.ok for r in reports)
    assert sum(r.records for r in reports) == 12


def test_appending_still_works_for_the_application(world: AuditWorld) -> None:
    world.record("dlr_x", 3)
    with world.db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar_one() == 3


def make_dealers(world: AuditWorld) -> tuple[str, str]:
    # The dealers were created long ago: their creation records open their chains.
    dealers = DealerService(world.db, world.log, FrozenClock(NOW - timedelta(days=401)))
    standard = dealers.create(OPERATOR, name="Std", plan=Plan.STANDARD).id
    enterprise = dealers.create(OPERATOR, name="Ent", plan=Plan.ENTERPRISE, retention_days=2557).id
    return standard, enterprise


def count(world: AuditWorld, dealer_id: str) -> int:
    with world.db.read() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM audit_events"
                    " WHERE dealer_id = :d AND action = 'api.request'"
                ),
                {"d": dealer_id},
            ).scalar_one()
        )


def test_purge_removes_exactly_the_expired_segments(world: AuditWorld) -> None:
    standard, enterprise = make_dealers(world)
    # Checkpoints every 10 records, so segments are #1-10 (creation + 9 at 400 days),
    # #11-20 (366 days), #21-30 (364 days), then 4 recent unsigned records.
    for dealer in (standard, enterprise):
        world.record(dealer, 9, at=NOW - timedelta(days=400))  # + the dealer.created record
        world.record(dealer, 10, at=NOW - timedelta(days=366))
        world.record(dealer, 10, at=NOW - timedelta(days=364))
        world.record(dealer, 4, at=NOW - timedelta(days=1))
    assert count(world, standard) == 33
    done = purge(world.db, world.log, SystemClock(), "cli:test", "cli")
    assert [(p.chain_id, p.removed) for p in done] == [(f"{standard}/production", 20)]
    assert count(world, standard) == 14  # the 364-day segment and the recent records remain
    assert count(world, enterprise) == 33  # enterprise keeps what standard loses
    reports = verify_store(world.db, world.signer)
    assert all(r.ok for r in reports), [str(r.problem) for r in reports]
    with world.db.read() as conn:
        purged = conn.execute(
            text("SELECT count(*) FROM audit_events WHERE action = 'audit.purged'")
        ).scalar_one()
    assert purged == 1


def test_direct_delete_of_an_in_retention_record_fails_at_the_storage(world: AuditWorld) -> None:
    standard, _ = make_dealers(world)
    world.record(standard, 10, at=NOW - timedelta(days=364))
    world.record(standard, 10, at=NOW - timedelta(days=366))
    recent = (NOW - timedelta(days=365)).strftime("%Y-%m-%d")
    statement = (
        f"DELETE FROM audit_events WHERE dealer_id = '{standard}' AND occurred_at > '{recent}'"
    )
    with pytest.raises(DBAPIError):
        app_sql(world, statement)
    # Even the owner cannot: on PostgreSQL the retention trigger binds the owner too.
    if world.db.url.startswith("postgresql"):
        from sqlalchemy import create_engine

        engine = create_engine(world.owner_url or "")
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(statement))
        engine.dispose()
    assert count(world, standard) == 20


def test_offline_verifier_imports_nothing_from_storage() -> None:
    code = (
        "import sys, vigil.audit.offline as o; "
        "bad = sorted(m for m in sys.modules if m.startswith(('sqlalchemy', 'vigil.storage', "
        "'psycopg', 'fastapi', 'starlette', 'vigil.services', 'alembic'))); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_application_cannot_shorten_a_dealers_retention(world: AuditWorld) -> None:
    """Otherwise a stolen app credential could cut retention to 365 days and purge."""
    _, enterprise = make_dealers(world)
    with pytest.raises(DBAPIError):
        app_sql(world, f"UPDATE dealers SET audit_retention_days = 365 WHERE id = '{enterprise}'")
    app_sql(world, f"UPDATE dealers SET audit_retention_days = 2557 WHERE id = '{enterprise}'")
