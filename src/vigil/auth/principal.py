"""Who is calling. Every credential kind resolves to this one frozen value (S12)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from vigil.auth.scopes import Scope


class Environment(StrEnum):
    SANDBOX = "sandbox"
    PRODUCTION = "production"


class ActorType(StrEnum):
    APP = "app"
    USER = "user"
    PARTNER = "partner"
    OPERATOR = "operator"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    actor_type: ActorType
    actor_id: str
    dealer_id: str
    environment: Environment
    scopes: frozenset[Scope]
    credential_id: str
    credential_kind: str
    app_id: str | None = None
    site_ids: frozenset[str] | None = None
    expires_at: datetime | None = None

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes
