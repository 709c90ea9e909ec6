"""Webhook values handed out by the service: frozen, and without secrets (a secret is returned
once, next to the endpoint, by the calls that create one)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import RowMapping


class MessageStatus(StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    app_id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    internal_ca: bool
    secret_rotating_until: datetime | None
    failing_since: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> Endpoint:
        return cls(
            id=m["id"],
            app_id=m["app_id"],
            url=m["url"],
            description=m["description"],
            event_types=list(m["event_types"]),
            enabled=bool(m["enabled"]),
            disabled_reason=m["disabled_reason"],
            internal_ca=m["ca_bundle"] is not None,
            secret_rotating_until=m["previous_secret_expires_at"],
            failing_since=m["failing_since"],
            version=m["version"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    endpoint_id: str
    event_id: str | None
    event_type: str
    status: MessageStatus
    attempts: int
    next_attempt_at: datetime | None
    exhausted: bool
    last_status_code: int | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> Message:
        return cls(
            id=m["id"],
            endpoint_id=m["endpoint_id"],
            event_id=m["event_id"],
            event_type=m["event_type"],
            status=MessageStatus(m["status"]),
            attempts=m["attempts"],
            next_attempt_at=m["next_attempt_at"],
            exhausted=bool(m["exhausted"]),
            last_status_code=m["last_status_code"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    id: str
    message_id: str
    endpoint_id: str
    attempt: int
    result: str
    reason: str | None
    status_code: int | None
    latency_ms: int | None
    tls: str | None
    response_body: str | None
    attempted_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> Attempt:
        return cls(
            id=m["id"],
            message_id=m["message_id"],
            endpoint_id=m["endpoint_id"],
            attempt=m["attempt"],
            result=m["result"],
            reason=m["reason"],
            status_code=m["status_code"],
            latency_ms=m["latency_ms"],
            tls=m["tls"],
            response_body=m["response_body"],
            attempted_at=m["attempted_at"],
        )


@dataclass(frozen=True, slots=True)
class Health:
    """How an endpoint has fared over its latest attempts (at most `window` of them)."""

    attempts: int
    succeeded: int
    last_failure_at: datetime | None
    last_failure_reason: str | None

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.attempts if self.attempts else None

    @classmethod
    def of(cls, recent: list[Attempt]) -> Health:
        """`recent` newest first, as the attempt listing returns them."""
        failed = [a for a in recent if a.result != "success"]
        last = failed[0] if failed else None
        reason = None
        if last is not None:
            reason = last.reason or (f"HTTP {last.status_code}" if last.status_code else "failure")
        return cls(
            attempts=len(recent),
            succeeded=len(recent) - len(failed),
            last_failure_at=last.attempted_at if last else None,
            last_failure_reason=reason,
        )


@dataclass(frozen=True, slots=True)
class CaRequest:
    id: str
    endpoint_id: str
    fingerprints: list[str]
    reason: str | None
    status: str
    requested_by: str
    decided_by: str | None
    created_at: datetime
    decided_at: datetime | None

    @classmethod
    def from_row(cls, m: RowMapping) -> CaRequest:
        return cls(
            id=m["id"],
            endpoint_id=m["endpoint_id"],
            fingerprints=list(m["fingerprints"]),
            reason=m["reason"],
            status=m["status"],
            requested_by=m["requested_by"],
            decided_by=m["decided_by"],
            created_at=m["created_at"],
            decided_at=m["decided_at"],
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "fingerprints": self.fingerprints,
            "reason": self.reason,
            "status": self.status,
            "requested_by": self.requested_by,
            "decided_by": self.decided_by,
            "created_at": self.created_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }
