"""Messages and attempts as the tenant sees them: listing, test sends and replays.

A message is one event for one endpoint; its id is the `webhook-id` every attempt and every
replay carries, so a receiver deduplicates on it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput
from vigil.core.ids import new_id
from vigil.core.pagination import Page, decode_cursor, page_of
from vigil.crypto.fields import FieldCipher
from vigil.events.outbox import encode_payload, event_payload
from vigil.events.types import EventType
from vigil.monitoring.scoping import TenantScope, scope_of
from vigil.storage.db import Database
from vigil.storage.tables import webhook_attempts, webhook_endpoints, webhook_messages
from vigil.webhooks.models import Attempt, Health, Message, MessageStatus
from vigil.webhooks.sealing import message_payload_binding

MAX_REPLAY = 10_000
HEALTH_WINDOW = 50


class MessageService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock, records: FieldCipher) -> None:
        self._db, self._audit, self._clock, self._records = db, audit, clock, records

    def send_test(self, actor: Actor, endpoint_id: str) -> Message:
        """Queue a `webhook.test` message to one endpoint, to check the receiver end to end."""
        scope = scope_of(actor)
        now = self._clock.now()
        message_id = new_id("msg")
        t = scope.tenant
        payload = event_payload(EventType.WEBHOOK_TEST, {"endpoint_id": endpoint_id}, now)
        sealed = self._records.seal(  # like every payload (S6); before the write transaction
            message_payload_binding(t.dealer_id, t.environment.value, None, message_id),
            encode_payload(payload),
        )
        with self._db.transaction() as conn:
            scope.one(conn, webhook_endpoints, endpoint_id, "webhook endpoint")
            conn.execute(
                insert(webhook_messages).values(
                    id=message_id,
                    **scope.values(),
                    endpoint_id=endpoint_id,
                    event_id=None,
                    event_type=EventType.WEBHOOK_TEST.value,
                    payload_sealed=sealed,
                    status=MessageStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    exhausted=0,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.WEBHOOK_TEST_SENT,
                    target_type="webhook_message",
                    target_id=message_id,
                    details={"endpoint_id": endpoint_id},
                ),
            )
            return _message(conn, scope, message_id)

    def replay(self, actor: Actor, message_id: str) -> Message:
        """Send one message again now, with the same webhook-id, whatever became of it."""
        scope = scope_of(actor)
        now = self._clock.now()
        with self._db.transaction() as conn:
            row = scope.one(conn, webhook_messages, message_id, "webhook message")
            _requeue(conn, scope, [message_id], now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.WEBHOOK_MESSAGE_REPLAYED,
                    target_type="webhook_message",
                    target_id=message_id,
                    details={"endpoint_id": row["endpoint_id"], "previous": row["status"]},
                ),
            )
            return _message(conn, scope, message_id)

    def replay_failed(self, actor: Actor, endpoint_id: str, since: datetime) -> int:
        """Send again every message to the endpoint that failed (or is exhausted) since `since`."""
        scope = scope_of(actor)
        now = self._clock.now()
        if since > now:
            raise InvalidInput("'since' is in the future.")
        c = webhook_messages.c
        with self._db.transaction() as conn:
            scope.one(conn, webhook_endpoints, endpoint_id, "webhook endpoint")
            ids = [
                r[0]
                for r in conn.execute(
                    scope.select(webhook_messages, c.id)
                    .where(
                        c.endpoint_id == endpoint_id,
                        c.status == MessageStatus.FAILED.value,
                        c.created_at >= since,
                    )
                    .limit(MAX_REPLAY)
                )
            ]
            _requeue(conn, scope, ids, now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.WEBHOOK_MESSAGE_REPLAYED,
                    target_type="webhook_endpoint",
                    target_id=endpoint_id,
                    details={"since": since.isoformat(), "count": len(ids)},
                ),
            )
            return len(ids)

    def list(
        self,
        actor: Actor,
        endpoint_id: str,
        *,
        status: MessageStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Message]:
        scope = scope_of(actor)
        c = webhook_messages.c
        query = (
            scope.select(webhook_messages)
            .where(c.endpoint_id == endpoint_id)
            .order_by(c.seq.desc())
            .limit(limit + 1)
        )
        if status is not None:
            query = query.where(c.status == status.value)
        if cursor is not None:
            query = query.where(c.seq < decode_cursor(cursor))
        with self._db.read() as conn:
            scope.one(conn, webhook_endpoints, endpoint_id, "webhook endpoint")
            rows = [(int(m["seq"]), Message.from_row(m)) for m in conn.execute(query).mappings()]
        return page_of(rows, limit)

    def attempts(
        self,
        actor: Actor,
        endpoint_id: str,
        *,
        message_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Attempt]:
        scope = scope_of(actor)
        c = webhook_attempts.c
        query = (
            scope.select(webhook_attempts)
            .where(c.endpoint_id == endpoint_id)
            .order_by(c.seq.desc())
            .limit(limit + 1)
        )
        if message_id is not None:
            query = query.where(c.message_id == message_id)
        if cursor is not None:
            query = query.where(c.seq < decode_cursor(cursor))
        with self._db.read() as conn:
            scope.one(conn, webhook_endpoints, endpoint_id, "webhook endpoint")
            rows = [(int(m["seq"]), Attempt.from_row(m)) for m in conn.execute(query).mappings()]
        return page_of(rows, limit)

    def health(self, actor: Actor, endpoint_id: str, window: int = HEALTH_WINDOW) -> Health:
        """Success rate and last failure over the endpoint's latest `window` attempts."""
        return Health.of(self.attempts(actor, endpoint_id, limit=window).items)


def _requeue(conn: Connection, scope: TenantScope, ids: list[str], now: datetime) -> None:
    """Due now, with a fresh retry schedule; a message being delivered right now is left to
    finish (its lease still guards it)."""
    c = webhook_messages.c
    for start in range(0, len(ids), 500):
        conn.execute(
            update(webhook_messages)
            .where(
                scope.where(webhook_messages),
                c.id.in_(ids[start : start + 500]),
                c.status != MessageStatus.DELIVERING.value,
            )
            .values(
                status=MessageStatus.PENDING.value,
                attempts=0,
                exhausted=0,
                next_attempt_at=now,
                version=c.version + 1,
                updated_at=now,
            )
        )


def _message(conn: Connection, scope: TenantScope, message_id: str) -> Message:
    return Message.from_row(scope.one(conn, webhook_messages, message_id, "webhook message"))
