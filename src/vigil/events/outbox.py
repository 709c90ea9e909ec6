"""The transactional outbox: an event is written in the same transaction as the change it
announces, so a change is never lost without its event nor announced without having happened.

The payload follows the Standard Webhooks shape (`type`, `timestamp`, `data`) so the webhooks
issue can deliver it as is. It is sealed (S6) with the dealer's records key, bound to dealer /
environment / `outbox_event` / event id / `payload`: an alarm's description travels in it, and
on PostgreSQL nothing but field encryption keeps it out of the database files (migration 0009).

Events are written inside the caller's write transaction, where a key-store call must not
happen (on SQLite it would wait on the lock the caller holds), so callers bring a
`TenantSealer` made before the transaction opened (`FieldCipher.sealer`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from vigil.auth.actor import Tenant
from vigil.core.ids import new_ordered_id
from vigil.crypto.binding import Binding, BindingScope
from vigil.crypto.fields import FieldCipher, TenantSealer
from vigil.events.types import EventType
from vigil.storage.db import announce
from vigil.storage.tables import outbox_events

OUTBOX_TOPIC = "outbox"
RECORD_TYPE = "outbox_event"
FIELD = "payload"


def payload_binding(dealer_id: str, environment: str, event_id: str) -> Binding:
    return BindingScope(dealer_id, environment, RECORD_TYPE).bind(event_id, FIELD)


def event_payload(type: EventType, data: dict[str, Any], when: datetime) -> dict[str, Any]:
    """The Standard Webhooks payload shape: `type`, `timestamp`, `data`."""
    return {"type": type.value, "timestamp": when.isoformat().replace("+00:00", "Z"), "data": data}


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The bytes that are sealed, and that a webhook delivery sends: compact, sorted keys."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def emit(
    conn: Connection,
    tenant: Tenant,
    type: EventType,
    *,
    subject_type: str,
    subject_id: str,
    data: dict[str, Any],
    when: datetime,
    sealer: TenantSealer,
) -> str:
    # Time-ordered (core/ids.py): each event adds a row at the right-hand end of its unique
    # index, and of the fan-out marker and (endpoint, event) indexes the worker writes for it.
    event_id = new_ordered_id("evt")
    payload = event_payload(type, data, when)
    binding = payload_binding(tenant.dealer_id, tenant.environment.value, event_id)
    conn.execute(
        insert(outbox_events).values(
            id=event_id,
            dealer_id=tenant.dealer_id,
            environment=tenant.environment.value,
            type=type.value,
            subject_type=subject_type,
            subject_id=subject_id,
            payload_sealed=sealer.seal(binding, encode_payload(payload)),
            created_at=when,
        )
    )
    announce(conn, OUTBOX_TOPIC)  # wakes this process's webhook worker once it commits
    return event_id


def open_payload(cipher: FieldCipher, row: Mapping[str, Any]) -> dict[str, Any]:
    """An event row's payload. Raises the cipher's errors (`DecryptionFailed`,
    `KeyUnavailable`)."""
    binding = payload_binding(row["dealer_id"], row["environment"], row["id"])
    opened: dict[str, Any] = json.loads(cipher.open(binding, row["payload_sealed"]))
    return opened


def events_for(
    conn: Connection,
    tenant: Tenant,
    subject_id: str | None = None,
    cipher: FieldCipher | None = None,
) -> list[dict[str, Any]]:
    """The tenant's events, oldest first (tests read them this way). With `cipher`, each row's
    `payload` is the opened payload."""
    c = outbox_events.c
    query = select(outbox_events).where(
        c.dealer_id == tenant.dealer_id, c.environment == tenant.environment.value
    )
    if subject_id is not None:
        query = query.where(c.subject_id == subject_id)
    rows = [dict(m) for m in conn.execute(query.order_by(c.seq)).mappings()]
    if cipher is not None:
        for row in rows:
            row["payload"] = open_payload(cipher, row)
    return rows
