"""Sites: the dealer's sites and one site's detail, through the same site service as the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.portal.access import portal_requires, services_of
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
SitesRead = Annotated[Actor, Depends(portal_requires(Scope.SITES_READ))]


@router.get("/portal/sites")
def list_sites(request: Request, actor: SitesRead, cursor: str | None = None) -> Response:
    page = services_of(request).sites.list(actor, limit=50, cursor=cursor)
    return render(request, "sites.html", sites=page.items, next_cursor=page.next_cursor)


@router.get("/portal/sites/{site_id}")
def site_detail(request: Request, site_id: str, actor: SitesRead) -> Response:
    svc = services_of(request)
    site = svc.sites.get(actor, site_id)
    history = svc.sites.arming_history(actor, site_id)
    devices = None
    if request.state.portal.can(Scope.DEVICES_READ):
        devices = svc.devices.list(actor, site_id=site.id, limit=200).items
    return render(request, "site.html", site=site, history=history, devices=devices)
