"""The operator's own account: second factor, connected apps (OAuth consents) with revoke, and
sign-out everywhere. Managing one's own consent needs no scope beyond being signed in, as with
`/v1/me/grants`, and uses the same grant functions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vigil.auth.actor import Actor
from vigil.auth.oauth import grants
from vigil.portal.access import portal_requires, services_of
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
Operator = Annotated[Actor, Depends(portal_requires(None))]


@router.get("/portal/account")
def account(request: Request, actor: Operator) -> Response:
    connected = grants.list_grants(services_of(request).oauth.ctx, actor.id)
    return render(request, "account.html", connected=connected)


@router.post("/portal/account/grants/{grant_id}/revoke")
def revoke_grant(request: Request, grant_id: str, actor: Operator) -> Response:
    grants.revoke_grant(services_of(request).oauth.ctx, actor, actor.id, grant_id)
    return RedirectResponse("/portal/account", 303)
