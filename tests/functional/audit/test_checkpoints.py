"""Checkpoints: signed at least every N records or every interval, by keys that rotate."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from tests.support.audit_world import AuditWorld

from vigil.audit.signing import AuditSigner
from vigil.audit.verify import verify_store
from vigil.storage.tables import audit_checkpoints


def checkpoints(world: AuditWorld) -> list[tuple[str, int, str]]:
    with world.db.read() as conn:
        rows = conn.execute(
            select(
                audit_checkpoints.c.chain_id, audit_checkpoints.c.seq, audit_checkpoints.c.kid
            ).order_by(audit_checkpoints.c.id)
        ).all()
    return [(r[0], int(r[1]), r[2]) for r in rows]


def test_a_checkpoint_every_n_records(world: AuditWorld) -> None:
    world.record("dlr_a", 25)
    assert [seq for _, seq, _ in checkpoints(world)] == [10, 20]


def test_quiet_chains_are_signed_after_the_interval(world: AuditWorld) -> None:
    world.record("dlr_a", 3)
    world.clock.advance(timedelta(seconds=59))
    assert world.log.checkpoint_stale() == 0
    assert checkpoints(world) == []
    world.clock.advance(timedelta(seconds=2))
    assert world.log.checkpoint_stale() == 1
    assert [(c, s) for c, s, _ in checkpoints(world)] == [("dlr_a/production", 3)]
    assert world.log.checkpoint_stale() == 0  # nothing new to sign


def test_signing_key_rotates_and_old_checkpoints_still_verify(world: AuditWorld) -> None:
    world.record("dlr_a", 10)
    world.clock.advance(timedelta(days=31))
    world.record("dlr_a", 10)
    kids = [kid for _, _, kid in checkpoints(world)]
    assert len(kids) == 2
    assert kids[0] != kids[1]
    with world.db.read() as conn:
        published = {k["kid"]: k for k in world.signer.jwks(conn)["keys"]}
    assert set(kids) <= set(published)
    assert "vigil_retired_at" in published[kids[0]]
    assert all(r.ok for r in verify_store(world.db, world.signer))


def test_private_signing_keys_are_owner_only(world: AuditWorld) -> None:
    world.record("dlr_a", 10)
    files = list((world.home / "keys" / "audit").glob("*.pem"))
    assert files
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    assert (world.home / "keys" / "audit").stat().st_mode & 0o777 == 0o700


def test_explicit_rotation_retires_the_previous_key_even_from_a_fresh_process(
    world: AuditWorld,
) -> None:
    world.record("dlr_a", 10)
    fresh = AuditSigner(world.home / "keys" / "audit", world.clock, timedelta(days=30))
    with world.db.transaction() as conn:
        new = fresh.rotate(conn)
    with world.db.read() as conn:
        keys = world.signer.jwks(conn)["keys"]
    current = [k["kid"] for k in keys if "vigil_retired_at" not in k]
    assert current == [new.kid]
    assert len(keys) == 2


def test_a_large_batch_is_still_checkpointed_every_n_records(world: AuditWorld) -> None:
    """Group commit can put thousands of one chain's records in one transaction; segments
    must still never exceed N records, and the tail after the last one waits for the timer."""
    from vigil.audit.actions import AuditAction
    from vigil.audit.record import AuditRecord

    batch = [
        AuditRecord(world.clock.now(), AuditAction.API_REQUEST, "200", "app", dealer_id="dlr_b")
        for _ in range(25)
    ]
    with world.db.transaction() as conn:
        world.log.store.append(conn, batch)
    assert [seq for _, seq, _ in checkpoints(world)] == [10, 20]
    world.clock.advance(timedelta(seconds=61))
    assert world.log.checkpoint_stale() == 1
    assert [seq for _, seq, _ in checkpoints(world)] == [10, 20, 25]
    assert all(r.ok for r in verify_store(world.db, world.signer))
