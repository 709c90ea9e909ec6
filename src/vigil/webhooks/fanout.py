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

from sqlalchemy import Connection, exists, func, insert, select, update

from vigil.auth.scopes import decode_scopes
from vigil.core.ids import new_ordered_id
from vigil.events.types import READ_SCOPE, EventType
from vigil.storage.tables import (
    apps,
    outbox_events,
    settings_kv,
    webhook_endpoints,
    webhook_fanout,
)
from vigil.webhooks import statements
from vigil.webhooks.models import MessageStatus

BATCH = 500
WATERMARK = "webhook_fanout_watermark"
SETTLE = timedelta(minutes=5)


def fan_out(conn: Connection, now: datetime, after: int = 0, batch: int = BATCH) -> tuple[int, int]:
    """Turn up to `batch` not yet fanned-out events with `seq > after` into messages.

    Returns (events handled, highest seq handled, or `after` when none)."""
    count, highest, _ = fan_out_events(conn, now, waiting(conn, after, batch), after)
    return count, highest


def waiting(conn: Connection, after: int = 0, batch: int = BATCH) -> list[dict[str, Any]]:
    """Up to `batch` events with `seq > after` not fanned out yet, locked (on PostgreSQL,
    skipping those another worker is fanning out): the columns a fan-out needs
    (`statements.EVENT_COLUMNS`), read through the driver (statements.py)."""
    columns = statements.EVENT_COLUMNS
    return [
        dict(zip(columns, row, strict=True))
        for row in statements.waiting_events(conn, after, batch)
    ]


def fan_out_events(
    conn: Connection,
    now: datetime,
    events: list[dict[str, Any]],
    after: int = 0,
    *,
    claim: int = 0,
    lease_until: datetime | None = None,
) -> tuple[int, int, list[dict[str, Any]]]:
    """Messages for `events` (from `waiting`), and their fan-out markers: a second fan-out of
    the same event fails on the marker's primary key rather than duplicating.

    The first `claim` messages are written already leased to the caller until `lease_until`
    (their first attempt counted), as a claim would lease them a moment later: the caller, a
    worker with that many free slots, delivers them without a claim's read and update. Returns
    (events handled, highest seq handled, the leased messages with their endpoint's delivery
    columns, as `claims.fanned_out_jobs` reads them)."""
    if not events:
        return 0, after, []
    targets = _endpoints_by_tenant(conn, {(e["dealer_id"], e["environment"]) for e in events})
    stamp = statements.moment(conn, now)
    leased = statements.moment(conn, lease_until) if claim > 0 else None
    pending, delivering = MessageStatus.PENDING.value, MessageStatus.DELIVERING.value
    rows: list[tuple[Any, ...]] = []
    claimed: list[dict[str, Any]] = []
    for event in events:
        try:
            event_type = EventType(event["type"])
        except ValueError:
            continue
        for endpoint in targets.get((event["dealer_id"], event["environment"]), []):
            if not _wants(endpoint, event_type, event["subject_id"]):
                continue
            message_id = new_ordered_id("msg")
            mine = len(claimed) < claim
            rows.append(  # in statements.MESSAGE_COLUMNS order
                (
                    message_id,
                    event["dealer_id"],
                    event["environment"],
                    endpoint["id"],
                    event["id"],
                    event_type.value,
                    # Copied sealed: still bound to the event, opened by the worker.
                    event["payload_sealed"],
                    delivering if mine else pending,
                    1 if mine else 0,  # attempts
                    stamp,  # next_attempt_at
                    leased if mine else None,  # lease_until
                    0,  # exhausted
                    1,  # version
                    stamp,  # created_at
                    stamp,  # updated_at
                )
            )
            if mine:
                claimed.append(
                    {
                        "id": message_id,
                        "dealer_id": event["dealer_id"],
                        "environment": event["environment"],
                        "endpoint_id": endpoint["id"],
                        "event_id": event["id"],
                        "event_type": event_type.value,
                        "payload_sealed": event["payload_sealed"],
                        "endpoint": endpoint["delivery"],
                    }
                )
    statements.insert_many(
        conn,
        [
            ("webhook_messages", statements.MESSAGE_COLUMNS, rows),
            ("webhook_fanout", statements.FANOUT_COLUMNS, [(e["id"], stamp) for e in events]),
        ],
    )
    return len(events), max(int(e["seq"]) for e in events), claimed


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
    delivery = (  # what a worker needs to deliver a message it leased at fan-out
        e.url,
        e.secret_sealed,
        e.previous_secret_sealed,
        e.previous_secret_expires_at,
        e.ca_bundle,
        e.failing_since,
    )
    query = (
        select(e.id, e.dealer_id, e.environment, e.event_types, apps.c.scopes, *delivery)
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
                    "delivery": {c.name: row[c.name] for c in delivery},
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
