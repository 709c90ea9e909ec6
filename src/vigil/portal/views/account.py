"""The signed-in person's own account: second factor, sign-out everywhere, and Connected apps
(OAuth consents) with revoke. Managing one's own consent needs no scope beyond being signed in,
as with `/v1/me/grants`, and uses the same grant functions. These are the only pages a site
user may open (with sign-out): they sign in to grant consent and to see what they granted."""

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
Anyone = Annotated[Actor, Depends(portal_requires(None, site_users=True))]
CONNECTED_APPS = "/portal/connected-apps"


@router.get("/portal/account")
def account(request: Request, actor: Anyone) -> Response:
    return render(request, "account.html")


@router.get(CONNECTED_APPS)
def connected_apps(request: Request, actor: Anyone) -> Response:
    connected = grants.list_grants(services_of(request).oauth.ctx, actor.id)
    return render(request, "connected_apps.html", connected=connected)


@router.post("/portal/account/grants/{grant_id}/revoke")
def revoke_grant(request: Request, grant_id: str, actor: Anyone) -> Response:
    grants.revoke_grant(services_of(request).oauth.ctx, actor, actor.id, grant_id)
    return RedirectResponse(CONNECTED_APPS, 303)
