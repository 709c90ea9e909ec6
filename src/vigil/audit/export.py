"""Export a dealer's audit chains as JSON Lines, with everything an offline proof needs.

Each exported chain starts right after a signed checkpoint (or at its genesis) and ends on a
signed checkpoint, so every exported record is covered by a signature, and nothing from other
chains or tenants is needed to check it. Callers sign chain heads first (`checkpoint_all`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from vigil.audit import canonical
from vigil.audit.proof import Checkpoint
from vigil.audit.sealing import PLAINTEXT, Details
from vigil.audit.verify import chain_ids, checkpoints_of, record_fields, stream_records
from vigil.storage.tables import audit_events

FORMAT = "vigil-audit-export"


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


def _checkpoint_line(cp: Checkpoint) -> str:
    return _line(
        {
            "type": "checkpoint",
            "chain_id": cp.chain_id,
            "seq": cp.seq,
            "head_hash": cp.head_hash.hex(),
            "signed_at": cp.signed_at,
            "kid": cp.kid,
            "signature": cp.signature.hex(),
        }
    )


def _bounds(
    conn: Connection, chain_id: str, since: datetime | None, until: datetime | None
) -> tuple[int, int] | None:
    query = select(func.min(audit_events.c.chain_seq), func.max(audit_events.c.chain_seq)).where(
        audit_events.c.chain_id == chain_id
    )
    if since is not None:
        query = query.where(audit_events.c.occurred_at >= since)
    if until is not None:
        query = query.where(audit_events.c.occurred_at <= until)
    low, high = conn.execute(query).one()
    if low is None:
        return None
    return int(low), int(high)


def export_lines(
    conn: Connection,
    dealer_id: str,
    now: datetime,
    *,
    environment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    details: Details = PLAINTEXT,
) -> Iterator[str]:
    """The export carries details in plaintext (opened with `details`): what the dealer's
    offline verifier hashes, and what the dealer is entitled to read."""
    yield _line(
        {
            "type": "header",
            "format": FORMAT,
            "version": canonical.VERSION,
            "dealer_id": dealer_id,
            "environment": environment,
            "since": canonical.timestamp(since) if since else None,
            "until": canonical.timestamp(until) if until else None,
            "exported_at": canonical.timestamp(now),
        }
    )
    for chain_id in chain_ids(conn, dealer_id):
        if environment is not None and not chain_id.endswith("/" + environment):
            continue
        bounds = _bounds(conn, chain_id, since, until)
        if bounds is None:
            continue
        low, high = bounds
        checkpoints = checkpoints_of(conn, chain_id)
        # Widen to signed boundaries: start after the last checkpoint before `low` (its head
        # anchors the first record), end at the first checkpoint at or after `high`.
        anchor = max((c for c in checkpoints if c.seq < low), key=lambda c: c.seq, default=None)
        start = anchor.seq + 1 if anchor else 1
        closing = min((c for c in checkpoints if c.seq >= high), key=lambda c: c.seq, default=None)
        if closing is None:
            # Records after the newest checkpoint are not signed yet: leave them out rather
            # than hand over anything the verifier cannot prove.
            closing = max(
                (c for c in checkpoints if c.seq >= start), key=lambda c: c.seq, default=None
            )
            if closing is None:
                continue
        end = closing.seq
        if anchor is not None:
            yield _checkpoint_line(anchor)
        for cp in checkpoints:
            if cp.seq >= start and (end is None or cp.seq <= end):
                yield _checkpoint_line(cp)
        for row in stream_records(conn, chain_id, start, end):
            fields, prev_hash, stored = record_fields(row, details)
            yield _line(
                {"type": "record", **fields, "prev_hash": prev_hash.hex(), "hash": stored.hex()}
            )
