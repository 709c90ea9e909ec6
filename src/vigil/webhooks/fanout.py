"""From the outbox to messages: each committed event becomes one message per endpoint that
subscribed to it and whose app may read it.

The app's scopes are read at fan-out time, not at registration: narrowing an app's grant stops
its endpoints receiving what it can no longer read. Events about an endpoint itself (its
exhaustion, its disabling) are not sent to that endpoint, which is failing anyway.

Finding the events not yet fanned out must not cost a scan of the whole outbox on every poll:
- the hot path looks only past the highest event this worker has seen (`after`);
- on PostgreSQL a transaction can commit an event with a lower `seq` than one already visible,
  so every few seconds a sweep looks past the platform-wide watermark instead, and moves the
  watermark up to the last event that is fanned out and older than `SETTLE` (no transaction
  that writes an event stays open that long).

Several workers may fan out at once: on PostgreSQL each locks the events it handles with
`FOR UPDATE SKIP LOCKED`, and a marker row per event (primary key) plus the unique
(endpoint, event) pair make a second fan-out of the same event fail rather than duplicate.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, exists, func, insert, select, update

from vigil.auth.scopes import decode_scopes
from vigil.core.ids import new_id
from vigil.events.types import READ_SCOPE, EventType
from vigil.storage.tables import (
    apps,
    outbox_events,
    settings_kv,
    webhook_endpoints,
    webhook_fanout,
)
from vigil.storage.tables import webhook_messages as messages
from vigil.webhooks.models import MessageStatus

BATCH = 500
WATERMARK = "webhook_fanout_watermark"
SETTLE = timedelta(minutes=5)


def fan_out(conn: Connection, now: datetime, after: int = 0, batch: int = BATCH) -> tuple[int, int]:
    """Turn up to `batch` not yet fanned-out events with `seq > after` into messages.

    Returns (events handled, highest seq handled, or `after` when none)."""
    return fan_out_events(conn, now, waiting(conn, after, batch), after)


def waiting(conn: Connection, after: int = 0, batch: int = BATCH) -> list[RowMapping]:
    """Up to `batch` events with `seq > after` not fanned out yet, locked (on PostgreSQL,
    skipping those another worker is fanning out)."""
    o = outbox_events.c
    return list(
        conn.execute(
            select(outbox_events)
            .where(o.seq > after, ~exists().where(webhook_fanout.c.event_id == o.id))
            .order_by(o.seq)
            .limit(batch)
            .with_for_update(skip_locked=True, of=outbox_events)
        ).mappings()
    )


def fan_out_events(
    conn: Connection, now: datetime, events: list[RowMapping], after: int = 0
) -> tuple[int, int]:
    """Messages for `events` (from `waiting`), and their fan-out markers: a second fan-out of
    the same event fails on the marker's primary key rather than duplicating."""
    if not events:
        return 0, after
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
                        # Copied sealed: still bound to the event, opened by the worker.
                        "payload_sealed": event["payload_sealed"],
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
    return len(events), max(int(e["seq"]) for e in events)


def watermark(conn: Connection) -> int:
    """Every event at or below this seq is fanned out (platform-wide, all workers)."""
    value = conn.execute(
        select(settings_kv.c.value).where(settings_kv.c.name == WATERMARK)
    ).scalar()
    return int(value) if value is not None else 0


def advance_watermark(conn: Connection, now: datetime) -> int:
    o = outbox_events.c
    current = watermark(conn)
    first_open = conn.execute(
        select(func.min(o.seq)).where(
            o.seq > current, ~exists().where(webhook_fanout.c.event_id == o.id)
        )
    ).scalar()
    settled = conn.execute(
        select(func.max(o.seq)).where(o.seq > current, o.created_at < now - SETTLE)
    ).scalar()
    if settled is None:
        return current
    new = int(settled) if first_open is None else min(int(settled), int(first_open) - 1)
    if new <= current:
        return current
    if conn.execute(select(settings_kv.c.name).where(settings_kv.c.name == WATERMARK)).first():
        conn.execute(
            update(settings_kv).where(settings_kv.c.name == WATERMARK).values(value=str(new))
        )
    else:
        conn.execute(insert(settings_kv).values(name=WATERMARK, value=str(new)))
    return new


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
