"""Retention (S17): purging is the only way a record leaves, and only whole signed segments.

A segment is the run of records a checkpoint closes. A segment goes once every record in it is
past its dealer's retention (the platform's for platform records). The checkpoint that closed
the last purged segment stays: its signed head anchors the first remaining record, so the rest
of the chain still verifies. The storage's own delete guard refuses anything younger, whatever
this code computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, func, select, text

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.audit.record import AuditRecord
from vigil.audit.store import PLATFORM_CHAIN
from vigil.audit.verify import chain_ids, checkpoints_of
from vigil.core.clock import Clock
from vigil.storage.db import Database
from vigil.storage.tables import audit_events, audit_policy, dealers


@dataclass(frozen=True)
class Purged:
    chain_id: str
    through_seq: int
    removed: int
    cutoff: datetime


def retention_days(conn: Connection, chain_id: str) -> int:
    if chain_id == PLATFORM_CHAIN:
        days = conn.execute(select(audit_policy.c.platform_retention_days)).scalar()
    else:
        dealer_id = chain_id.split("/", 1)[0]
        days = conn.execute(
            select(dealers.c.audit_retention_days).where(dealers.c.id == dealer_id)
        ).scalar()
        if days is None:  # dealer gone: its records follow the platform's retention
            days = conn.execute(select(audit_policy.c.platform_retention_days)).scalar()
    return int(days or 2557)


def _purgeable_through(conn: Connection, chain_id: str, cutoff: datetime) -> int | None:
    """The last checkpoint whose whole segment (and everything before it) is past `cutoff`."""
    first = conn.execute(
        select(func.min(audit_events.c.chain_seq)).where(audit_events.c.chain_id == chain_id)
    ).scalar()
    if first is None:
        return None
    through = None
    for cp in sorted(checkpoints_of(conn, chain_id), key=lambda c: c.seq):
        if cp.seq < first:
            continue
        newest = conn.execute(
            select(func.max(audit_events.c.occurred_at)).where(
                audit_events.c.chain_id == chain_id,
                audit_events.c.chain_seq >= (through or 0) + 1,
                audit_events.c.chain_seq <= cp.seq,
            )
        ).scalar()
        if newest is None or newest >= cutoff:
            break
        through = cp.seq
    return through


def purge(db: Database, audit: AuditLog, clock: Clock, actor_id: str, via: str) -> list[Purged]:
    now = clock.now()
    done: list[Purged] = []
    with db.read() as conn:
        chains = chain_ids(conn, None)
    for chain_id in chains:
        with db.transaction() as conn:
            cutoff = now - timedelta(days=retention_days(conn, chain_id))
            through = _purgeable_through(conn, chain_id, cutoff)
            if through is None:
                continue
            if conn.dialect.name == "postgresql":
                removed = int(
                    conn.execute(
                        text("SELECT vigil_audit_purge(:chain, :through)"),
                        {"chain": chain_id, "through": through},
                    ).scalar_one()
                )
            else:
                removed = conn.execute(
                    delete(audit_events).where(
                        audit_events.c.chain_id == chain_id, audit_events.c.chain_seq <= through
                    )
                ).rowcount
            dealer_id, _, environment = chain_id.partition("/")
            audit.write_in(
                conn,
                AuditRecord(
                    occurred_at=now,
                    action=AuditAction.AUDIT_PURGED,
                    result="success",
                    actor_type="operator" if via == "cli" else "system",
                    actor_id=actor_id,
                    dealer_id=None if chain_id == PLATFORM_CHAIN else dealer_id,
                    environment=environment or None,
                    target_type="audit_chain",
                    target_id=chain_id,
                    details={
                        "via": via,
                        "through_seq": through,
                        "removed": removed,
                        "cutoff": cutoff.isoformat(),
                    },
                ),
            )
        done.append(Purged(chain_id, through, removed, cutoff))
    return done
