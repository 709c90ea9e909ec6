"""Appending records to their chains, and signing checkpoints (S16).

Each dealer has its own chains, one per environment (platform records share the "platform"
chain), so a dealer can verify its records without anyone else's. Appending locks a chain's
head row once per batch: concurrent processes serialize per chain and per batch, never per
request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from vigil.audit import canonical
from vigil.audit.record import AuditRecord
from vigil.audit.signing import AuditSigner
from vigil.core.clock import Clock
from vigil.storage.tables import audit_chain_heads, audit_checkpoints, audit_events
from vigil.storage.types import UtcDateTime

PLATFORM_CHAIN = "platform"

_UPDATE_HEAD = (
    update(audit_chain_heads)
    .where(audit_chain_heads.c.chain_id == bindparam("b_chain"))
    .values(
        seq=bindparam("b_seq"),
        hash=bindparam("b_hash"),
        pending_since=bindparam("b_pending", type_=UtcDateTime),
    )
)


def chain_id_for(dealer_id: str | None, environment: str | None) -> str:
    """One chain per dealer and environment (S13: a sandbox export holds no production record).

    Dealer-level records with no environment (the dealer's creation, say) join production.
    """
    if dealer_id is None:
        return PLATFORM_CHAIN
    return f"{dealer_id}/{environment or 'production'}"


def chain_of(record: AuditRecord) -> str:
    return chain_id_for(record.dealer_id, record.environment)


def to_millis(moment: datetime) -> datetime:
    """Hashes cover millisecond timestamps; store exactly what was hashed."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def hashed_fields(row: dict[str, Any]) -> dict[str, Any]:
    fields = {name: row[name] for name in canonical.FIELDS}
    fields["occurred_at"] = canonical.timestamp(row["occurred_at"])
    return fields


class AuditStore:
    def __init__(self, signer: AuditSigner, clock: Clock, checkpoint_every: int) -> None:
        self._signer, self._clock, self._every = signer, clock, checkpoint_every

    def append(self, conn: Connection, records: Sequence[AuditRecord]) -> None:
        """Link `records` onto their chains inside the caller's transaction.

        One statement reads (and on PostgreSQL locks) every head the batch touches, one
        updates them all, one inserts the records: the cost per batch does not grow with the
        number of chains in it.
        """
        by_chain: dict[str, list[AuditRecord]] = {}
        for record in records:
            by_chain.setdefault(chain_of(record), []).append(record)
        heads = self._lock_heads(conn, sorted(by_chain))
        now = self._clock.now()
        rows: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        due: list[tuple[str, int, bytes]] = []
        still_pending: list[str] = []
        for chain_id, chain_records in by_chain.items():
            seq, prev, checkpointed, pending_since = heads[chain_id]
            if seq == checkpointed:
                pending_since = now
            for record in chain_records:
                seq += 1
                row = record.as_row()
                row["occurred_at"] = to_millis(record.occurred_at)
                row["chain_id"], row["chain_seq"] = chain_id, seq
                row["prev_hash"] = prev
                prev = canonical.link(prev, hashed_fields(row))
                row["hash"] = prev
                rows.append(row)
                if seq - checkpointed >= self._every:
                    # However large the batch, no segment exceeds `every` records.
                    due.append((chain_id, seq, prev))
                    checkpointed = seq
            updates.append(
                {"b_chain": chain_id, "b_seq": seq, "b_hash": prev, "b_pending": pending_since}
            )
            if due and due[-1][0] == chain_id and checkpointed < seq:
                still_pending.append(chain_id)
        if rows:
            _insert_rows(conn, rows)
            conn.execute(_UPDATE_HEAD, updates)
        for chain_id, seq, head in due:
            self._checkpoint(conn, chain_id, seq, head)
        if still_pending:
            # Records after the last mid-batch checkpoint are waiting for a signature again.
            conn.execute(
                update(audit_chain_heads)
                .where(audit_chain_heads.c.chain_id.in_(still_pending))
                .values(pending_since=now)
            )

    def _lock_heads(
        self, conn: Connection, chain_ids: list[str]
    ) -> dict[str, tuple[int, bytes, int, datetime | None]]:
        """Read the heads of `chain_ids`, creating missing ones; sorted, so that concurrent
        batches lock in the same order and cannot deadlock."""
        if not chain_ids:
            return {}
        h = audit_chain_heads.c
        query = (
            select(h.chain_id, h.seq, h.hash, h.checkpointed_seq, h.pending_since)
            .where(h.chain_id.in_(chain_ids))
            .order_by(h.chain_id)
        )
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        found = {r[0]: (int(r[1]), bytes(r[2]), int(r[3]), r[4]) for r in conn.execute(query)}
        missing = [c for c in chain_ids if c not in found]
        if missing:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(
                dialect.insert(audit_chain_heads).on_conflict_do_nothing(),
                [
                    {"chain_id": c, "seq": 0, "hash": canonical.GENESIS, "checkpointed_seq": 0}
                    for c in missing
                ],
            )
            again = query.where(h.chain_id.in_(missing))
            found |= {r[0]: (int(r[1]), bytes(r[2]), int(r[3]), r[4]) for r in conn.execute(again)}
        return found

    def checkpoint_stale(self, conn: Connection, older_than: timedelta) -> int:
        """Sign every chain whose oldest unsigned record has waited `older_than` or longer."""
        cutoff = self._clock.now() - older_than
        heads = conn.execute(
            select(audit_chain_heads.c.chain_id).where(
                audit_chain_heads.c.seq > audit_chain_heads.c.checkpointed_seq,
                audit_chain_heads.c.pending_since <= cutoff,
            )
        ).all()
        return self.checkpoint_chains(conn, [h[0] for h in heads])

    def checkpoint_chains(self, conn: Connection, chain_ids: Iterable[str]) -> int:
        signed = 0
        for chain_id in sorted(chain_ids):
            seq, head, checkpointed = self._lock_head(conn, chain_id)
            if seq > checkpointed:
                self._checkpoint(conn, chain_id, seq, head)
                signed += 1
        return signed

    def _lock_head(self, conn: Connection, chain_id: str) -> tuple[int, bytes, int]:
        values = {"chain_id": chain_id, "seq": 0, "hash": canonical.GENESIS, "checkpointed_seq": 0}
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(audit_chain_heads).values(values).on_conflict_do_nothing())
        query = select(
            audit_chain_heads.c.seq, audit_chain_heads.c.hash, audit_chain_heads.c.checkpointed_seq
        ).where(audit_chain_heads.c.chain_id == chain_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        seq, head, checkpointed = conn.execute(query).one()
        return int(seq), bytes(head), int(checkpointed)

    def _checkpoint(self, conn: Connection, chain_id: str, seq: int, head: bytes) -> None:
        key = self._signer.current(conn)
        now = self._clock.now()
        signed_at = canonical.timestamp(now)
        payload = canonical.checkpoint_bytes(chain_id, seq, head, signed_at, key.kid)
        conn.execute(
            insert(audit_checkpoints).values(
                chain_id=chain_id,
                seq=seq,
                head_hash=head,
                signed_at=signed_at,
                kid=key.kid,
                signature=key.private.sign(payload),
            )
        )
        conn.execute(
            update(audit_chain_heads)
            .where(and_(audit_chain_heads.c.chain_id == chain_id))
            .values(checkpointed_seq=seq, checkpointed_at=now, pending_since=None)
        )


_INSERT_COLUMNS = tuple(c.name for c in audit_events.columns if c.name != "seq")


def _insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert straight through the driver: SQLAlchemy's per-row bind processing was the larger
    part of the writer's CPU, and here the values' types are known exactly."""
    sqlite_db = conn.dialect.name == "sqlite"
    marker = "?" if sqlite_db else "%s"
    sql = (
        f"INSERT INTO audit_events ({', '.join(_INSERT_COLUMNS)}) "  # noqa: S608 - fixed names
        f"VALUES ({', '.join([marker] * len(_INSERT_COLUMNS))})"
    )
    params = []
    for row in rows:
        values = []
        for name in _INSERT_COLUMNS:
            value = row[name]
            if name == "occurred_at" and sqlite_db:
                value = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            elif name == "details":
                value = json.dumps(value)
            values.append(value)
        params.append(tuple(values))
    conn.exec_driver_sql(sql, params)
