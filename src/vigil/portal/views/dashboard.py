"""The dashboard: what needs attention now (open alarms by priority, offline devices, failing
webhook endpoints, keys exposed or rotating out), each panel only where the operator's scopes
allow."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vigil.audit.query import AuditFilter, list_events
from vigil.auth.actor import Actor
from vigil.auth.apikeys.models import ApiKey, KeyStatus
from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.monitoring.devices import DeviceStatus
from vigil.monitoring.sites import Site
from vigil.portal.access import portal_requires, services_of, sessions_of
from vigil.portal.forms import one, read_form
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute
from vigil.portal.views.auth import with_session

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
Operator = Annotated[Actor, Depends(portal_requires(None))]
SOON = timedelta(days=7)
OFFLINE_SHOWN = 8


@router.get("/portal/")
def dashboard(request: Request, actor: Operator) -> Response:
    svc, view = services_of(request), request.state.portal
    tenant = actor.tenant
    assert tenant is not None
    now = svc.clock.now()
    attention: list[tuple[ApiKey, str]] = []
    sites: list[Site] | None = None
    recent: list[dict[str, Any]] = []
    if view.can(Scope.APPS_READ):
        for key in svc.keys.list(tenant):
            if key.status is KeyStatus.REVOKED and key.exposed_at is None:
                continue
            if key.exposed_at is not None:
                attention.append((key, "exposed"))
            elif (
                key.expires_at is not None and key.expires_at > now and key.expires_at - now < SOON
            ):
                attention.append((key, "rotating out"))
    if view.can(Scope.SITES_READ):
        sites = svc.sites.list(actor, limit=200).items
    open_alarms = svc.alarms.open_counts(actor) if view.can(Scope.ALARMS_READ) else None
    offline = None
    if view.can(Scope.DEVICES_READ):
        offline = svc.devices.list(actor, status=DeviceStatus.OFFLINE, limit=OFFLINE_SHOWN)
    hooks = None
    if view.can(Scope.WEBHOOKS_READ):
        hooks = svc.webhooks.endpoints.list(actor, limit=200).items
    if view.can(Scope.AUDIT_READ):
        recent, _ = list_events(
            svc.db,
            tenant,
            AuditFilter(None, None, None, None, None, None),
            8,
            None,
            svc.audit.details,
        )
    dealer = svc.dealers.get(tenant.dealer_id)
    return render(
        request,
        "dashboard.html",
        dealer=dealer,
        attention=attention,
        sites=sites,
        recent=recent,
        open_alarms=open_alarms,
        offline=offline,
        hooks=hooks,
    )


@router.post("/portal/environment")
async def switch_environment(request: Request, actor: Operator) -> Response:
    """Production and sandbox are separate tenants (S13); switching is a new session id."""
    value = one(await read_form(request), "environment", 20)
    environment = Environment.SANDBOX if value == "sandbox" else Environment.PRODUCTION
    fresh = sessions_of(request).renew(request.state.portal.session, environment=environment)
    return with_session(RedirectResponse("/portal/", 303), fresh)
