"""The audit log viewer: filters, detail, export and an on-demand integrity check (S14, S16).

The same query and export code as `GET /v1/audit-events`, under the same `audit:read` scope and
the same tenant confinement: the portal shows nothing the API would not.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from vigil.audit.actions import AuditAction
from vigil.audit.export import export_lines
from vigil.audit.query import AuditFilter, list_events
from vigil.audit.verify import verify_store
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.core.errors import InvalidInput
from vigil.portal.access import portal_requires, services_of
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
AuditRead = Annotated[Actor, Depends(portal_requires(Scope.AUDIT_READ))]
VERIFIED = AuditAction.AUDIT_VERIFIED.value
FILTERS = ("actor", "action", "result", "request_id", "since", "until")


def _time(value: str, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"'{name}' is not a date and time (2026-01-31T12:00).") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _filters(request: Request) -> tuple[dict[str, str], AuditFilter]:
    raw = {name: request.query_params.get(name, "").strip()[:200] for name in FILTERS}
    flt = AuditFilter(
        _time(raw["since"], "since"),
        _time(raw["until"], "until"),
        raw["actor"] or None,
        raw["action"] or None,
        raw["result"] or None,
        raw["request_id"] or None,
    )
    return raw, flt


@router.get("/portal/audit")
def audit_log(request: Request, actor: AuditRead, cursor: str | None = None) -> Response:
    assert actor.tenant is not None
    raw, flt = _filters(request)
    svc = services_of(request)
    items, next_cursor = list_events(svc.db, actor.tenant, flt, 50, cursor, svc.audit.details)
    query = "&".join(f"{k}={v}" for k, v in raw.items() if v)
    latest, _ = list_events(
        svc.db, actor.tenant, AuditFilter(action=VERIFIED), 1, None, svc.audit.details
    )
    return render(
        request,
        "audit.html",
        items=items,
        filters=raw,
        next_cursor=next_cursor,
        query=query,
        latest=latest[0] if latest else None,
    )


@router.get("/portal/audit/export")
def audit_export(request: Request, actor: AuditRead) -> Response:
    tenant = actor.tenant
    assert tenant is not None
    _, flt = _filters(request)
    svc = services_of(request)
    svc.audit.checkpoint_all()
    now = svc.clock.now()

    def lines() -> Iterator[str]:
        with svc.db.read() as conn:
            yield from export_lines(
                conn,
                tenant.dealer_id,
                now,
                environment=tenant.environment.value,
                since=flt.since,
                until=flt.until,
                details=svc.audit.details,
            )

    name = f"vigil-audit-{tenant.dealer_id}-{now:%Y%m%dT%H%M%SZ}.jsonl"
    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


@router.get("/portal/audit/verify")
def audit_verify(request: Request, actor: AuditRead) -> Response:
    """Runs `vigil audit verify` over this dealer's chains now and shows the report; the outcome
    is recorded (`audit.verified`, as the CLI records it), so the audit page shows the latest."""
    assert actor.tenant is not None
    svc = services_of(request)
    svc.audit.checkpoint_all()
    reports = verify_store(
        svc.db, svc.audit.signer, actor.tenant.dealer_id, details=svc.audit.details
    )
    broken = next((r.problem for r in reports if r.problem), None)
    now = svc.clock.now()
    svc.audit.write_now(
        actor.record(
            now,
            AuditAction.AUDIT_VERIFIED,
            target_type="audit_log",
            target_id=actor.tenant.dealer_id,
            result="success" if broken is None else "failure",
            details={
                "records": sum(r.records for r in reports),
                "problem": str(broken) if broken else None,
            },
        )
    )
    return render(request, "verify.html", reports=reports, at=now)
