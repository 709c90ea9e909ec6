"""The transactional outbox: an event is written in the same transaction as the change it
announces, so a change is never lost without its event nor announced without having happened.

The payload follows the Standard Webhooks shape (`type`, `timestamp`, `data`) so the webhooks
issue can deliver it as is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from vigil.auth.actor import Tenant
from vigil.core.ids import new_id
from vigil.events.types import EventType
from vigil.storage.db import announce
from vigil.storage.tables import outbox_events

OUTBOX_TOPIC = "outbox"


def emit(
    conn: Connection,
    tenant: Tenant,
    type: EventType,
    *,
    subject_type: str,
    subject_id: str,
    data: dict[str, Any],
    when: datetime,
) -> str:
    event_id = new_id("evt")
    conn.execute(
        insert(outbox_events).values(
            id=event_id,
            dealer_id=tenant.dealer_id,
            environment=tenant.environment.value,
            type=type.value,
            subject_type=subject_type,
            subject_id=subject_id,
            payload={
                "type": type.value,
                "timestamp": when.isoformat().replace("+00:00", "Z"),
                "data": data,
            },
            created_at=when,
        )
    )
    announce(conn, OUTBOX_TOPIC)  # wakes this process's webhook worker once it commits
    return event_id


def events_for(conn: Connection, tenant: Tenant, subject_id: str | None = None) -> list[Any]:
    """The tenant's events, oldest first (tests and the webhooks worker read them this way)."""
    c = outbox_events.c
    query = select(outbox_events).where(
        c.dealer_id == tenant.dealer_id, c.environment == tenant.environment.value
    )
    if subject_id is not None:
        query = query.where(c.subject_id == subject_id)
    return list(conn.execute(query.order_by(c.seq)).mappings())
