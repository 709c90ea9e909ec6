"""The dealer's own audit log: query and provable export (`audit:read`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import StreamingResponse

from vigil.api.deps import services
from vigil.audit.export import export_lines
from vigil.audit.query import AuditFilter, list_events
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.core.times import DATE_TIME_TEXT, optional_utc
from vigil.edge.authorization import requires
from vigil.services import Services

router = APIRouter(tags=["audit"])
Svc = Annotated[Services, Depends(services)]
AuditRead = Annotated[Actor, Depends(requires(Scope.AUDIT_READ))]
# RFC 3339 text; a missing zone is refused by `optional_utc`, with its own message.
TimeParam = Annotated[datetime | None, DATE_TIME_TEXT]


@router.get("/v1/audit-events", summary="Query the dealer's audit records, newest first")
def list_audit_events(
    actor: AuditRead,
    svc: Svc,
    since: TimeParam = None,
    until: TimeParam = None,
    actor_id: Annotated[str | None, Query(alias="actor", max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    result: Annotated[str | None, Query(max_length=40)] = None,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    assert actor.tenant is not None
    flt = AuditFilter(
        optional_utc(since, "since"),
        optional_utc(until, "until"),
        actor_id,
        action,
        result,
        request_id,
    )
    items, next_cursor = list_events(svc.db, actor.tenant, flt, limit, cursor, svc.audit.details)
    return {"data": items, "next_cursor": next_cursor}


@router.get(
    "/v1/audit-events/export",
    summary="Export this environment's audit chain as JSON Lines, with signed checkpoints",
    response_class=StreamingResponse,
)
def export_audit_events(
    actor: AuditRead, svc: Svc, since: TimeParam = None, until: TimeParam = None
) -> StreamingResponse:
    tenant = actor.tenant
    assert tenant is not None
    since, until = optional_utc(since, "since"), optional_utc(until, "until")
    svc.audit.checkpoint_all()
    now = svc.clock.now()

    def lines() -> Iterator[str]:
        with svc.db.read() as conn:
            yield from export_lines(
                conn,
                tenant.dealer_id,
                now,
                environment=tenant.environment.value,
                since=since,
                until=until,
                details=svc.audit.details,
            )

    return StreamingResponse(lines(), media_type="application/x-ndjson")
