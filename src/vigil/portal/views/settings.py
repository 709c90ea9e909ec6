"""Dealer settings, read-only for now: plan and audit retention (S17). Retention is changed by
the platform operator (`vigil dealers`), within the plan's limits, so the portal shows it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from vigil.auth.actor import Actor
from vigil.portal.access import portal_requires, services_of
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute
from vigil.portal.sessions import ABSOLUTE, IDLE

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
Operator = Annotated[Actor, Depends(portal_requires(None))]


@router.get("/portal/settings")
def dealer_settings(request: Request, actor: Operator) -> Response:
    assert actor.tenant is not None
    dealer = services_of(request).dealers.get(actor.tenant.dealer_id)
    limits = {
        "idle": int(IDLE.total_seconds() // 60),
        "absolute": int(ABSOLUTE.total_seconds() // 3600),
    }
    return render(request, "settings.html", dealer=dealer, limits=limits)
