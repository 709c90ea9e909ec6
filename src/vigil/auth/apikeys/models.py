"""Stored API key metadata. The secret itself is never stored, only its hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope


class KeyStatus(StrEnum):
    ACTIVE = "active"
    ROTATING = "rotating"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    app_id: str
    dealer_id: str
    environment: Environment
    scopes: frozenset[Scope]
    status: KeyStatus
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    exposed_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None

    def usable_at(self, now: datetime) -> bool:
        if self.status is KeyStatus.REVOKED:
            return False
        return self.expires_at is None or now < self.expires_at

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "app_id": self.app_id,
            "dealer_id": self.dealer_id,
            "environment": self.environment.value,
            "scopes": sorted(s.value for s in self.scopes),
            "status": self.status.value,
            "exposed": self.exposed_at is not None,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "exposed_at": iso(self.exposed_at),
            "last_used_at": iso(self.last_used_at),
            "last_used_ip": self.last_used_ip,
        }
