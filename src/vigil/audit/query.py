"""Reading a dealer's audit records: filters and keyset pagination (newest first)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from vigil.audit import canonical
from vigil.audit.sealing import Details
from vigil.auth.actor import Tenant
from vigil.core.pagination import decode_cursor, encode_cursor
from vigil.storage.db import Database
from vigil.storage.tables import audit_events

PUBLIC_FIELDS = [f for f in canonical.FIELDS if f not in ("chain_id", "chain_seq")]


@dataclass(frozen=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    actor_id: str | None = None
    action: str | None = None
    result: str | None = None
    request_id: str | None = None


def list_events(
    db: Database,
    tenant: Tenant,
    flt: AuditFilter,
    limit: int,
    cursor: str | None,
    details: Details,
) -> tuple[list[dict[str, Any]], str | None]:
    """A sandbox credential sees sandbox records only (S13); production also sees the dealer's
    environment-less records (its creation, plan changes). `details` opens sealed details
    (the services' `audit.details`): required, so no reader can forget it."""
    c = audit_events.c
    query = select(c.seq, *(c[f] for f in PUBLIC_FIELDS), c.hash).where(
        c.dealer_id == tenant.dealer_id
    )
    if tenant.environment.value == "sandbox":
        query = query.where(c.environment == "sandbox")
    else:
        query = query.where((c.environment == "production") | c.environment.is_(None))
    if flt.since is not None:
        query = query.where(c.occurred_at >= flt.since)
    if flt.until is not None:
        query = query.where(c.occurred_at <= flt.until)
    for column, value in (
        (c.actor_id, flt.actor_id),
        (c.action, flt.action),
        (c.result, flt.result),
        (c.request_id, flt.request_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if cursor is not None:
        query = query.where(c.seq < decode_cursor(cursor))
    query = query.order_by(c.seq.desc()).limit(limit + 1)
    with db.read() as conn:
        rows = conn.execute(query).all()
    items = []
    for row in rows[:limit]:
        m = row._mapping
        item = {f: m[f] for f in PUBLIC_FIELDS}
        item["occurred_at"] = canonical.timestamp(m["occurred_at"])
        item["details"] = details.value(m["id"], m["details"])
        item["hash"] = bytes(m["hash"]).hex()
        items.append(item)
    next_cursor = encode_cursor(int(rows[limit - 1]._mapping["seq"])) if len(rows) > limit else None
    return items, next_cursor
