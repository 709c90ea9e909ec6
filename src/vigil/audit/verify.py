"""`vigil audit verify`: check every chain in the store against its signed checkpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, select, union

from vigil.audit import canonical
from vigil.audit.jwks import public_key_from_jwk
from vigil.audit.proof import ChainReport, ChainVerifier, Checkpoint
from vigil.audit.signing import AuditSigner
from vigil.storage.db import Database
from vigil.storage.tables import audit_chain_heads, audit_checkpoints, audit_events

Progress = Callable[[int], None]

RECORD_COLUMNS = [audit_events.c[name] for name in canonical.FIELDS]


def record_fields(row: Any) -> tuple[dict[str, Any], bytes, bytes]:
    """A database row in the canonical form the hash covers."""
    fields = dict(zip(canonical.FIELDS, row[:-2], strict=True))
    fields["occurred_at"] = canonical.timestamp(fields["occurred_at"])
    return fields, bytes(row[-2]), bytes(row[-1])


def chain_ids(conn: Connection, dealer_id: str | None) -> list[str]:
    query = union(select(audit_chain_heads.c.chain_id), select(audit_events.c.chain_id).distinct())
    ids = sorted(r[0] for r in conn.execute(query))
    if dealer_id is not None:
        ids = [c for c in ids if c.split("/", 1)[0] == dealer_id]
    return ids


def checkpoints_of(conn: Connection, chain_id: str) -> list[Checkpoint]:
    rows = conn.execute(
        select(audit_checkpoints).where(audit_checkpoints.c.chain_id == chain_id)
    ).mappings()
    return [
        Checkpoint(
            r["chain_id"],
            int(r["seq"]),
            bytes(r["head_hash"]),
            r["signed_at"],
            r["kid"],
            bytes(r["signature"]),
        )
        for r in rows
    ]


def stream_records(
    conn: Connection, chain_id: str, first_seq: int = 0, last_seq: int | None = None
) -> Iterator[Any]:
    query = (
        select(*RECORD_COLUMNS, audit_events.c.prev_hash, audit_events.c.hash)
        .where(audit_events.c.chain_id == chain_id, audit_events.c.chain_seq >= first_seq)
        .order_by(audit_events.c.chain_seq)
    )
    if last_seq is not None:
        query = query.where(audit_events.c.chain_seq <= last_seq)
    yield from conn.execution_options(yield_per=5000).execute(query)


def verify_store(
    db: Database,
    signer: AuditSigner,
    dealer_id: str | None = None,
    progress: Progress | None = None,
) -> list[ChainReport]:
    reports = []
    with db.read() as conn:
        keys = {k["kid"]: public_key_from_jwk(k) for k in signer.jwks(conn)["keys"]}
        for chain_id in chain_ids(conn, dealer_id):
            head = conn.execute(
                select(audit_chain_heads.c.seq).where(audit_chain_heads.c.chain_id == chain_id)
            ).scalar()
            verifier = ChainVerifier(chain_id, keys, checkpoints_of(conn, chain_id))
            n = 0
            for row in stream_records(conn, chain_id):
                if not verifier.feed(*record_fields(row)):
                    break
                n += 1
                if progress is not None and n % 5000 == 0:
                    progress(5000)
            if progress is not None:
                progress(n % 5000)
            reports.append(verifier.finish(None if head is None else int(head)))
    return reports


def count_records(db: Database, dealer_id: str | None = None) -> int:
    from sqlalchemy import func

    query = select(func.count()).select_from(audit_events)
    if dealer_id is not None:
        query = query.where(audit_events.c.dealer_id == dealer_id)
    with db.read() as conn:
        return int(conn.execute(query).scalar_one())
