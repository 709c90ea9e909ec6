"""From the outbox to messages: each committed event becomes one message per endpoint that
subscribed to it and whose app may read it.

The app's scopes are read at fan-out time, not at registration: narrowing an app's grant stops
its endpoints receiving what it can no longer read. Events about an endpoint itself (its
exhaustion, its disabling) are not sent to that endpoint, which is failing anyway.

Several workers may fan out at once: on PostgreSQL each locks the events it handles with
`FOR UPDATE SKIP LOCKED`, and a marker row per event (primary key) plus the unique
(endpoint, event) pair make a second fan-out of the same event fail rather than duplicate.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, exists, insert, select

from vigil.auth.scopes import decode_scopes
from vigil.core.ids import new_id
from vigil.events.types import READ_SCOPE, EventType
from vigil.storage.tables import apps, outbox_events, webhook_endpoints, webhook_fanout
from vigil.storage.tables import webhook_messages as messages
from vigil.webhooks.models import MessageStatus

BATCH = 500


def fan_out(conn: Connection, now: datetime, batch: int = BATCH) -> int:
    """Turn up to `batch` not yet fanned-out events into messages; returns events handled."""
    o = outbox_events.c
    events = list(
        conn.execute(
            select(outbox_events)
            .where(~exists().where(webhook_fanout.c.event_id == o.id))
            .order_by(o.seq)
            .limit(batch)
            .with_for_update(skip_locked=True, of=outbox_events)
        ).mappings()
    )
    if not events:
        return 0
    targets = _endpoints_by_tenant(conn, {(e["dealer_id"], e["environment"]) for e in events})
    rows: list[dict[str, Any]] = []
    for event in events:
        try:
            event_type = EventType(event["type"])
        except ValueError:
            continue
        for endpoint in targets.get((event["dealer_id"], event["environment"]), []):
            if _wants(endpoint, event_type, event["subject_id"]):
                rows.append(
                    {
                        "id": new_id("msg"),
                        "dealer_id": event["dealer_id"],
                        "environment": event["environment"],
                        "endpoint_id": endpoint["id"],
                        "event_id": event["id"],
                        "event_type": event_type.value,
                        "payload": event["payload"],
                        "status": MessageStatus.PENDING.value,
                        "attempts": 0,
                        "next_attempt_at": now,
                        "exhausted": 0,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
    if rows:
        conn.execute(insert(messages), rows)
    conn.execute(
        insert(webhook_fanout), [{"event_id": e["id"], "fanned_out_at": now} for e in events]
    )
    return len(events)


def _endpoints_by_tenant(
    conn: Connection, tenants: set[tuple[str, str]]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    e = webhook_endpoints.c
    found: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    dealers = sorted({d for d, _ in tenants})
    query = (
        select(e.id, e.dealer_id, e.environment, e.event_types, apps.c.scopes)
        .join(apps, apps.c.id == e.app_id)
        .where(e.dealer_id.in_(dealers), e.enabled == 1)
    )
    for row in conn.execute(query).mappings():
        key = (row["dealer_id"], row["environment"])
        if key in tenants:
            found[key].append(
                {
                    "id": row["id"],
                    "types": frozenset(row["event_types"]),
                    "scopes": decode_scopes(row["scopes"]),
                }
            )
    return found


def _wants(endpoint: dict[str, Any], event_type: EventType, subject_id: str) -> bool:
    if READ_SCOPE[event_type] not in endpoint["scopes"]:
        return False
    if event_type.value.startswith("webhook.") and subject_id == endpoint["id"]:
        return False
    types: frozenset[str] = endpoint["types"]
    return not types or event_type.value in types
