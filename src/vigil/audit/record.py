"""One audit record: a frozen value, built by fronts and the edge, written only by the audit log."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from vigil.audit.actions import AuditAction
from vigil.core.ids import new_id


@dataclass(frozen=True, slots=True)
class AuditRecord:
    occurred_at: datetime
    action: AuditAction
    result: str
    actor_type: str
    actor_id: str | None = None
    dealer_id: str | None = None
    environment: str | None = None
    app_id: str | None = None
    credential_id: str | None = None
    scope: str | None = None
    request_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    method: str | None = None
    route: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: new_id("aud"))

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["action"] = self.action.value
        return row
