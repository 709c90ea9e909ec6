"""Appending records to their chains, and signing checkpoints (S16).

Each dealer has its own chains, one per environment (platform records share the "platform"
chain), so a dealer can verify its records without anyone else's. Appending locks a chain's
head row once per batch: concurrent processes serialize per chain and per batch, never per
request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from vigil.audit import canonical
from vigil.audit.record import AuditRecord
from vigil.audit.sealing import EMPTY, PLAINTEXT, Details
from vigil.audit.signing import AuditSigner
from vigil.audit.statements import Statements, statements_for
from vigil.core.clock import Clock
from vigil.storage.tables import audit_chain_heads, audit_checkpoints

PLATFORM_CHAIN = "platform"


def chain_id_for(dealer_id: str | None, environment: str | None) -> str:
    """One chain per dealer and environment (S13: a sandbox export holds no production record).

    Dealer-level records with no environment (the dealer's creation, say) join production.
    """
    if dealer_id is None:
        return PLATFORM_CHAIN
    return f"{dealer_id}/{environment or 'production'}"


def chain_of(record: AuditRecord) -> str:
    return chain_id_for(record.dealer_id, record.environment)


class AuditStore:
    def __init__(
        self,
        signer: AuditSigner,
        clock: Clock,
        checkpoint_every: int,
        details: Details = PLAINTEXT,
    ) -> None:
        self._signer, self._clock, self._every = signer, clock, checkpoint_every
        self.details = details

    def append(self, conn: Connection, records: Sequence[AuditRecord]) -> None:
        """Link `records` onto their chains inside the caller's transaction.

        One statement reads (and on PostgreSQL locks) every head the batch touches, one
        updates them all, one inserts the records: the cost per batch does not grow with the
        number of chains in it. All three go straight through the driver on the caller's
        connection (same transaction): SQLAlchemy's statement and bind processing used to cost
        more than the records' hashing.
        """
        if not records:
            return
        if not conn.in_transaction():
            # What SQLAlchemy's autobegin would have done on the first statement; the raw
            # statements below would otherwise run outside any transaction (and, on SQLite,
            # each commit on its own).
            conn.begin()
        sql = statements_for(conn)
        raw = conn.connection.dbapi_connection
        assert raw is not None
        by_chain: dict[str, list[AuditRecord]] = {}
        for record in records:
            by_chain.setdefault(chain_of(record), []).append(record)
        chains = sorted(by_chain)
        heads = _lock_heads(raw, sql, chains)
        now = self._clock.now()
        rows: list[tuple[Any, ...]] = []
        moves: list[tuple[str, int, bytes]] = []
        due: list[tuple[str, int, bytes]] = []
        still_pending: list[str] = []
        every, version, stored_time = self._every, canonical.VERSION, sql.stored_time
        encoded_record, link = canonical.encoded_record, canonical.link_encoded
        to_seal: list[tuple[int, str, str]] = []  # (row index, record id, canonical details)
        sealing = self.details.seals
        for chain_id in chains:
            seq, prev, checkpointed = heads[chain_id]
            for record in by_chain[chain_id]:
                seq += 1
                rid = record.stored_id()
                stamp = canonical.timestamp(record.occurred_at)
                tail = record.tail_values()
                details = canonical.details_text(record.details)
                hashed = link(
                    prev, encoded_record([version, rid, chain_id, seq, stamp, *tail], details)
                )
                if sealing and details != EMPTY:
                    to_seal.append((len(rows), rid, details))
                rows.append((rid, chain_id, seq, stored_time(stamp), *tail, details, prev, hashed))
                prev = hashed
                if seq - checkpointed >= every:
                    # However large the batch, no segment exceeds `every` records.
                    due.append((chain_id, seq, prev))
                    checkpointed = seq
            moves.append((chain_id, seq, prev))
            if due and due[-1][0] == chain_id and checkpointed < seq:
                still_pending.append(chain_id)
        if to_seal:
            # The hash covers the plaintext; the row stores it sealed (audit/sealing.py).
            stored = self.details.stored_forms([(rid, text) for _, rid, text in to_seal])
            for (i, _, _), text in zip(to_seal, stored, strict=True):
                row = rows[i]
                rows[i] = (*row[:-3], text, *row[-2:])
        sql.write_batch(raw, rows, moves, sql.stored_moment(now))
        for chain_id, seq, head in due:
            self._checkpoint(conn, chain_id, seq, head)
        if still_pending:
            # Records after the last mid-batch checkpoint are waiting for a signature again.
            conn.execute(
                update(audit_chain_heads)
                .where(audit_chain_heads.c.chain_id.in_(still_pending))
                .values(pending_since=now)
            )

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


def _lock_heads(
    raw: Any, sql: Statements, chain_ids: list[str]
) -> dict[str, tuple[int, bytes, int]]:
    """Read the heads of `chain_ids`, creating missing ones; sorted, so that concurrent batches
    lock in the same order and cannot deadlock."""
    found = {r[0]: (int(r[1]), bytes(r[2]), int(r[3])) for r in sql.read_heads(raw, chain_ids)}
    missing = [c for c in chain_ids if c not in found]
    if missing:  # a chain's first record: rare, so one more round trip is fine
        cur = raw.cursor()
        try:
            cur.executemany(sql.insert_head, [(c, canonical.GENESIS) for c in missing])
        finally:
            cur.close()
        found |= {r[0]: (int(r[1]), bytes(r[2]), int(r[3])) for r in sql.read_heads(raw, missing)}
    return found
