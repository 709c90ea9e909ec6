"""Claiming due messages and recording what their attempts came to.

A claim leases messages to one worker (`lease_until`) in one short transaction; on PostgreSQL
rows another worker holds are skipped (`FOR UPDATE SKIP LOCKED`), so two workers never claim the
same message. The HTTP request happens outside any transaction. If the worker dies, the lease
runs out and another claim picks the message up again: delivery is at least once, and a
duplicate carries the same `webhook-id`.

Recording writes, in one transaction per batch: the attempt row, its audit record (S14), the
message's new state, the endpoint's failure window, and the events telling the dealer when a
message is exhausted or an endpoint disabled.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from vigil.audit.actions import AuditAction
from vigil.audit.record import AuditRecord
from vigil.auth.actor import Tenant
from vigil.auth.principal import ActorType, Environment
from vigil.core.ids import new_ordered_id
from vigil.crypto.errors import CryptoError, KmsError
from vigil.crypto.fields import FieldCipher, TenantSealer
from vigil.events.outbox import emit
from vigil.events.types import EventType
from vigil.storage.tables import webhook_endpoints
from vigil.storage.tables import webhook_messages as messages
from vigil.webhooks import statements
from vigil.webhooks.models import MessageStatus
from vigil.webhooks.schedule import DISABLE_AFTER, next_attempt_at, parse_retry_after
from vigil.webhooks.sealing import message_payload_binding, open_secret
from vigil.webhooks.signing import SigningSecret
from vigil.webhooks.transport import Outcome

# Longer than the request timeout plus recording, so a live worker never loses its lease.
LEASE = timedelta(seconds=60)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    message_id: str
    dealer_id: str
    environment: str
    endpoint_id: str
    event_id: str | None
    event_type: str
    attempt: int
    url: str
    ca_bundle: str | None
    # The payload and the endpoint's secrets as stored (sealed, S6): `claim` runs inside the
    # write transaction, so they are opened after it commits (`unseal`), never while holding
    # SQLite's lock; `body` and `secrets` are filled in then.
    sealed_payload: bytes
    sealed_secret: bytes
    sealed_previous: bytes | None
    body: bytes = b""
    secrets: tuple[SigningSecret, ...] = ()
    # Whether the endpoint was in a failure window when the message was claimed: a batch of
    # successes clears the windows it knows of without reading the endpoints again.
    failing: bool = False


def claim(
    conn: Connection,
    now: datetime,
    limit: int,
    lease: timedelta = LEASE,
    *,
    expired: bool = True,
) -> list[Job]:
    """Lease up to `limit` due messages: those whose worker died (lease ran out) first, they
    are the oldest work, unless `expired` is False (a caller that looks for them less often),
    then pending messages in the order they fell due."""
    if conn.dialect.name == "postgresql":
        return _claim_returning(conn, now, limit, lease, expired)
    kinds = [(MessageStatus.DELIVERING.value, "lease_until", "<")] if expired else []
    kinds.append((MessageStatus.PENDING.value, "next_attempt_at", "<="))
    rows = statements.sqlite_claim(conn, kinds, limit, now + lease, now)
    if not rows:
        return []
    e = webhook_endpoints.c
    endpoints = {
        r["id"]: r
        for r in conn.execute(
            select(
                e.id,
                e.dealer_id,
                e.environment,
                e.url,
                e.secret_sealed,
                e.previous_secret_sealed,
                e.previous_secret_expires_at,
                e.ca_bundle,
                e.failing_since,
            ).where(e.id.in_(sorted({r["endpoint_id"] for r in rows})))
        ).mappings()
    }
    return [_job(r, endpoints[r["endpoint_id"]], r["attempts"] + 1, now) for r in rows]


def fanned_out_jobs(claimed: list[dict[str, Any]], now: datetime) -> list[Job]:
    """Jobs for the messages a fan-out leased to this worker as it wrote them
    (`fanout.fan_out_events(..., claim=n)`): their first attempt."""
    return [_job(r, r["endpoint"], 1, now) for r in claimed]


def _due_conditions(now: datetime, expired: bool, table: Any = messages) -> list[tuple[Any, Any]]:
    """(condition, order) of each kind of due message on `table` (webhook_messages or an
    alias of it), in the order they are claimed. Each walks an index range
    (ix_webhook_messages_due: status, then time) and stops after the rows it needs, however
    long the queue is: two queries rather than one OR."""
    m = table.c
    kinds = []
    if expired:
        kinds.append(
            ((m.status == MessageStatus.DELIVERING.value) & (m.lease_until < now), m.lease_until)
        )
    kinds.append(
        ((m.status == MessageStatus.PENDING.value) & (m.next_attempt_at <= now), m.next_attempt_at)
    )
    return kinds


def _claim_returning(
    conn: Connection, now: datetime, limit: int, lease: timedelta, expired: bool
) -> list[Job]:
    """PostgreSQL: one statement per kind of due message picks the rows (skipping those
    another worker holds), leases them and returns them with their endpoint, instead of a
    select, an update and a select of endpoints: three round trips fewer per turn."""
    m, e = messages.c, webhook_endpoints.c
    inner, inner_endpoints = messages.alias("due"), webhook_endpoints.alias("due_endpoint")
    jobs: list[Job] = []
    for condition, order in _due_conditions(now, expired, inner):
        wanted = limit - len(jobs)
        if wanted <= 0:
            break
        picked = (  # on aliases: the subquery must not correlate with the UPDATE's tables
            select(inner.c.id)
            .join(inner_endpoints, inner_endpoints.c.id == inner.c.endpoint_id)
            .where(condition, inner_endpoints.c.enabled == 1)
            .order_by(order)
            .limit(wanted)
            .with_for_update(skip_locked=True, of=inner)
        )
        rows = conn.execute(
            update(messages)
            .where(m.id.in_(picked), e.id == m.endpoint_id)
            .values(
                status=MessageStatus.DELIVERING.value,
                lease_until=now + lease,
                attempts=m.attempts + 1,
                updated_at=now,
            )
            .returning(
                m.id,
                m.dealer_id,
                m.environment,
                m.endpoint_id,
                m.event_id,
                m.event_type,
                m.payload_sealed,
                m.attempts,
                e.url,
                e.secret_sealed,
                e.previous_secret_sealed,
                e.previous_secret_expires_at,
                e.ca_bundle,
                e.failing_since,
            )
        ).mappings()
        jobs += [_job(r, r, r["attempts"], now) for r in rows]  # attempts: already counted
    return jobs


def _job(r: Any, ep: Any, attempt: int, now: datetime) -> Job:
    expires = ep["previous_secret_expires_at"]
    overlapping = expires is not None and expires > now
    return Job(
        message_id=r["id"],
        dealer_id=r["dealer_id"],
        environment=r["environment"],
        endpoint_id=r["endpoint_id"],
        event_id=r["event_id"],
        event_type=r["event_type"],
        attempt=attempt,
        url=ep["url"],
        ca_bundle=ep["ca_bundle"],
        sealed_payload=r["payload_sealed"],
        sealed_secret=ep["secret_sealed"],
        sealed_previous=ep["previous_secret_sealed"] if overlapping else None,
        failing=ep["failing_since"] is not None,
    )


def unseal(
    jobs: list[Job], secrets: FieldCipher, records: FieldCipher, now: datetime
) -> tuple[list[Job], list[Result]]:
    """Open each job's payload and signing secrets (the current one, and the previous one while
    a rotation overlaps). A job whose payload or secret does not open (a tampered row, a
    deleted dealer's destroyed key) is not sent: it comes back as a failed attempt with a
    clear reason (`payload_unavailable`, `secret_unavailable`), recorded and audited like any
    other failure and retried on the schedule. A KMS outage is not a failure of the message:
    its jobs are left leased and go out again when the lease runs out."""
    ready: list[Job] = []
    failed: list[Result] = []
    # A batch holds many messages to the same endpoint: its secrets are opened once per batch
    # (keyed by the sealed values, so a rotation inside the batch is seen).
    endpoint_secrets: dict[tuple[Any, ...], tuple[SigningSecret, ...] | None] = {}
    for job in jobs:
        what = "payload"
        try:
            binding = message_payload_binding(
                job.dealer_id, job.environment, job.event_id, job.message_id
            )
            body = records.open(binding, job.sealed_payload or b"")
            what = "secret"
            key = (job.endpoint_id, job.sealed_secret, job.sealed_previous)
            if key not in endpoint_secrets:
                try:
                    endpoint_secrets[key] = _open_secrets(job, secrets)
                except KmsError:
                    raise  # not the message's fault: nothing is remembered
                except CryptoError:
                    endpoint_secrets[key] = None  # they do not open: the same for every job
                    raise
            opened = endpoint_secrets[key]
            if opened is None:
                failed.append(_unusable(job, what, now))
                continue
        except KmsError:
            log.warning("webhook message %s: KMS unavailable, left for the lease", job.message_id)
            continue
        except CryptoError:
            failed.append(_unusable(job, what, now))
            continue
        ready.append(_with_contents(job, body, opened))
    return ready, failed


def _open_secrets(job: Job, secrets: FieldCipher) -> tuple[SigningSecret, ...]:
    row = {
        "dealer_id": job.dealer_id,
        "environment": job.environment,
        "id": job.endpoint_id,
        "secret_sealed": job.sealed_secret or b"",
        "previous_secret_sealed": job.sealed_previous,
    }
    opened = [SigningSecret(open_secret(secrets, row))]
    if job.sealed_previous is not None:
        opened.append(SigningSecret(open_secret(secrets, row, previous=True)))
    return tuple(opened)


def _with_contents(job: Job, body: bytes, secrets: tuple[SigningSecret, ...]) -> Job:
    """`job` with its opened payload and secrets (what `dataclasses.replace` does, without its
    per-call field introspection: this runs once per delivery)."""
    return Job(
        job.message_id,
        job.dealer_id,
        job.environment,
        job.endpoint_id,
        job.event_id,
        job.event_type,
        job.attempt,
        job.url,
        job.ca_bundle,
        job.sealed_payload,
        job.sealed_secret,
        job.sealed_previous,
        body,
        secrets,
        job.failing,
    )


_UNUSABLE = {"payload": "the payload", "secret": "the signing secret"}


def _unusable(job: Job, what: str, now: datetime) -> Result:
    reason = f"{what}_unavailable"
    log.warning(
        "webhook message %s: %s does not open (%s)", job.message_id, _UNUSABLE[what], reason
    )
    detail = (
        f"{_UNUSABLE[what]} could not be decrypted (tampered with, or its key destroyed); not sent"
    )
    return Result(job, Outcome(ok=False, reason=reason, detail=detail), now)


@dataclass(frozen=True, slots=True)
class Result:
    job: Job
    outcome: Outcome
    at: datetime


Sealers = Mapping[str, TenantSealer | None]


def sealers_for(results: list[Result], records: FieldCipher) -> dict[str, TenantSealer | None]:
    """Made before the recording transaction: a sealer for each dealer with a failed attempt
    (a failure may exhaust a message or disable an endpoint, and the event saying so is
    sealed). None for a dealer whose keys are gone (deleted): there is no one to tell."""
    return records.sealers(r.job.dealer_id for r in results if not r.outcome.ok)


def record(
    conn: Connection,
    results: list[Result],
    now: datetime,
    worker: str,
    sealers: Sealers,
    rand: random.Random | None = None,
) -> list[AuditRecord]:
    """Store the results; returns the audit records, which the caller writes in `conn`.
    `sealers`: from `sealers_for(results, …)`, made before the transaction.

    Successes, the common case, are written in bulk (one insert of attempts, one update per
    status code); each failure is handled on its own, since it may exhaust or disable.
    """
    e = webhook_endpoints.c
    endpoint_ids = sorted({r.job.endpoint_id for r in results})
    endpoints: dict[str, dict[str, Any]]
    if all(r.outcome.ok for r in results):
        # Only successes: what each job saw of its endpoint's failure window at claim time is
        # enough to close it (a failure another worker records meanwhile is closed by the next
        # success), and saves reading the endpoints, a round trip per turn.
        failing = {r.job.endpoint_id for r in results if r.job.failing}
        endpoints = {i: {"failing_since": now if i in failing else None} for i in endpoint_ids}
    else:
        endpoints = {
            row["id"]: dict(row)
            for row in conn.execute(
                select(e.id, e.enabled, e.failing_since).where(e.id.in_(endpoint_ids))
            ).mappings()
        }
    audit = [_attempt_record(r.job, r.outcome, r.at, worker) for r in results]
    statements.insert(
        conn,
        "webhook_attempts",
        statements.ATTEMPT_COLUMNS,
        [_attempt_row(conn, r) for r in results],
    )
    delivered: dict[int | None, list[str]] = {}
    recovered: set[str] = set()
    for result in results:
        if result.outcome.ok:
            delivered.setdefault(result.outcome.status_code, []).append(result.job.message_id)
            if endpoints[result.job.endpoint_id]["failing_since"] is not None:
                recovered.add(result.job.endpoint_id)
                endpoints[result.job.endpoint_id]["failing_since"] = None
        else:
            audit.extend(
                _failed(conn, result, endpoints[result.job.endpoint_id], now, worker, sealers, rand)
            )
    for code, ids in delivered.items():
        statements.mark_delivered(conn, ids, code, now)
    if recovered:
        conn.execute(
            update(webhook_endpoints).where(e.id.in_(sorted(recovered))).values(failing_since=None)
        )
    return audit


def _attempt_row(conn: Connection, result: Result) -> tuple[Any, ...]:
    """In `statements.ATTEMPT_COLUMNS` order. The kept response body is the receiver's text:
    NUL, which PostgreSQL cannot store, is replaced (`statements.text`)."""
    job, out = result.job, result.outcome
    return (
        new_ordered_id("wha"),
        job.dealer_id,
        job.environment,
        job.endpoint_id,
        job.message_id,
        job.attempt,
        "success" if out.ok else "failure",
        out.reason,
        out.status_code,
        out.latency_ms,
        statements.text((out.tls or "")[:200] or None),
        statements.text(out.body),
        statements.moment(conn, result.at),
    )


def _failed(
    conn: Connection,
    result: Result,
    endpoint: dict[str, Any],
    now: datetime,
    worker: str,
    sealers: Sealers,
    rand: random.Random | None,
) -> list[AuditRecord]:
    job, out = result.job, result.outcome
    m, e = messages.c, webhook_endpoints.c
    records: list[AuditRecord] = []
    state: dict[str, Any] = {"lease_until": None, "last_status_code": out.status_code}
    gone = out.reason == "gone"
    retry_after = parse_retry_after(out.retry_after, now)
    when = None if gone else next_attempt_at(job.attempt, now, retry_after, rand)
    if when is None:
        state |= {"status": MessageStatus.FAILED.value, "next_attempt_at": None}
        if not gone:
            state["exhausted"] = 1
            records.append(_exhausted(conn, job, now, worker, sealers))
    else:
        state |= {"status": MessageStatus.PENDING.value, "next_attempt_at": when}
    conn.execute(
        update(messages)
        .where(m.id == job.message_id, m.status == MessageStatus.DELIVERING.value)
        .values(**state, version=m.version + 1, updated_at=now)
    )
    if endpoint["failing_since"] is None:
        endpoint["failing_since"] = now
        conn.execute(
            update(webhook_endpoints).where(e.id == job.endpoint_id).values(failing_since=now)
        )
    disable = None
    if gone:
        disable = "gone_410"
    elif now - endpoint["failing_since"] >= DISABLE_AFTER:
        disable = "failing_5_days"
    if disable is not None and endpoint["enabled"]:
        endpoint["enabled"] = 0
        records.append(_disable(conn, job, disable, now, worker, sealers))
    return records


def _system(worker: str, when: datetime, action: AuditAction, job: Job, **kw: Any) -> AuditRecord:
    return AuditRecord(
        occurred_at=when,
        action=action,
        actor_type=ActorType.SYSTEM.value,
        actor_id=worker,
        dealer_id=job.dealer_id,
        environment=job.environment,
        **kw,
    )


def _attempt_record(job: Job, out: Outcome, when: datetime, worker: str) -> AuditRecord:
    details: dict[str, Any] = {
        "via": "webhook-worker",
        "endpoint_id": job.endpoint_id,
        "event_id": job.event_id,
        "event_type": job.event_type,
        "attempt": job.attempt,
        "status_code": out.status_code,
        "latency_ms": out.latency_ms,
    }
    if not out.ok:
        details |= {"reason": out.reason, "detail": out.detail}
    return _system(
        worker,
        when,
        AuditAction.WEBHOOK_DELIVERY_ATTEMPTED,
        job,
        result="success" if out.ok else (out.reason or "failure"),
        target_type="webhook_message",
        target_id=job.message_id,
        details=details,
    )


def _announce(
    conn: Connection,
    job: Job,
    sealers: Sealers,
    type: EventType,
    data: dict[str, Any],
    now: datetime,
) -> None:
    sealer = sealers.get(job.dealer_id)
    if sealer is None:
        log.warning("dealer %s has no keys (deleted): %s not announced", job.dealer_id, type.value)
        return
    emit(
        conn,
        Tenant(job.dealer_id, Environment(job.environment)),
        type,
        subject_type="webhook_endpoint",
        subject_id=job.endpoint_id,
        data=data,
        when=now,
        sealer=sealer,
    )


def _exhausted(
    conn: Connection, job: Job, now: datetime, worker: str, sealers: Sealers
) -> AuditRecord:
    _announce(
        conn,
        job,
        sealers,
        EventType.WEBHOOK_MESSAGE_EXHAUSTED,
        {"endpoint_id": job.endpoint_id, "message_id": job.message_id, "event_id": job.event_id},
        now,
    )
    return _system(
        worker,
        now,
        AuditAction.WEBHOOK_MESSAGE_EXHAUSTED,
        job,
        result="success",
        target_type="webhook_message",
        target_id=job.message_id,
        details={"via": "webhook-worker", "endpoint_id": job.endpoint_id, "attempts": job.attempt},
    )


def _disable(
    conn: Connection, job: Job, reason: str, now: datetime, worker: str, sealers: Sealers
) -> AuditRecord:
    e = webhook_endpoints.c
    conn.execute(
        update(webhook_endpoints)
        .where(e.id == job.endpoint_id)
        .values(enabled=0, disabled_reason=reason, version=e.version + 1, updated_at=now)
    )
    _announce(
        conn,
        job,
        sealers,
        EventType.WEBHOOK_ENDPOINT_DISABLED,
        {"endpoint_id": job.endpoint_id, "reason": reason},
        now,
    )
    return _system(
        worker,
        now,
        AuditAction.WEBHOOK_ENDPOINT_DISABLED,
        job,
        result="success",
        target_type="webhook_endpoint",
        target_id=job.endpoint_id,
        details={"via": "webhook-worker", "reason": reason},
    )
