"""Who performs a service call, and from where: the facts every audit record needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vigil.audit.actions import AuditAction
from vigil.audit.record import AuditRecord
from vigil.auth.principal import ActorType, Environment, Principal


@dataclass(frozen=True, slots=True)
class Tenant:
    """The dealer and environment a call is confined to (S12, S13)."""

    dealer_id: str
    environment: Environment


@dataclass(frozen=True, slots=True)
class Actor:
    type: ActorType
    id: str
    via: str
    request_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    principal: Principal | None = None
    scope: str | None = None

    @classmethod
    def for_principal(
        cls,
        principal: Principal,
        *,
        request_id: str | None,
        source_ip: str | None,
        user_agent: str | None = None,
        scope: str | None = None,
    ) -> Actor:
        return cls(
            type=principal.actor_type,
            id=principal.actor_id,
            via="api",
            request_id=request_id,
            source_ip=source_ip,
            user_agent=user_agent,
            principal=principal,
            scope=scope,
        )

    @property
    def tenant(self) -> Tenant | None:
        if self.principal is None:
            return None
        return Tenant(self.principal.dealer_id, self.principal.environment)

    def record(
        self,
        when: datetime,
        action: AuditAction,
        *,
        target_type: str | None = None,
        target_id: str | None = None,
        result: str = "success",
        dealer_id: str | None = None,
        environment: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord:
        p = self.principal
        return AuditRecord(
            occurred_at=when,
            action=action,
            result=result,
            actor_type=self.type.value,
            actor_id=self.id,
            dealer_id=dealer_id or (p.dealer_id if p else None),
            environment=environment or (p.environment.value if p else None),
            app_id=p.app_id if p else None,
            credential_id=p.credential_id if p else None,
            scope=self.scope,
            request_id=self.request_id,
            source_ip=self.source_ip,
            user_agent=self.user_agent,
            target_type=target_type,
            target_id=target_id,
            details={"via": self.via, **(details or {})},
        )
