"""Users and roles, for owners and admins: change a role, reset a password or second factor.

These are operator-account actions, not dealer data, so no API scope names them: the portal
route needs a signed-in operator, and the service refuses anyone but an owner or admin (an
owner only by another owner) and answers 404 for another dealer's users. Each change ends the
target's sessions, so new privileges (or lost ones) apply at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vigil.auth.actor import Actor
from vigil.core.errors import InvalidInput
from vigil.portal.access import portal_requires, services_of
from vigil.portal.forms import one, read_form
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute
from vigil.tenancy.roles import OPERATOR_ROLES, ROLE_SCOPES, PortalRole

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
Operator = Annotated[Actor, Depends(portal_requires(None))]


def _page(request: Request, actor: Actor, status: int = 200, **extra: object) -> Response:
    team = services_of(request).operators.team(actor)
    return render(
        request,
        "users.html",
        status,
        team=team,
        roles=list(OPERATOR_ROLES),
        scopes=ROLE_SCOPES,
        **extra,
    )


@router.get("/portal/users")
def users(request: Request, actor: Operator) -> Response:
    return _page(request, actor)


@router.post("/portal/users/{user_id}/role")
async def set_role(request: Request, user_id: str, actor: Operator) -> Response:
    value = one(await read_form(request), "role", 20)
    if value not in {r.value for r in OPERATOR_ROLES}:
        raise InvalidInput("Choose owner, admin, operator or viewer.")
    services_of(request).operators.set_role(actor, user_id, PortalRole(value))
    return RedirectResponse("/portal/users", 303)


@router.post("/portal/users/{user_id}/reset-mfa")
def reset_mfa(request: Request, user_id: str, actor: Operator) -> Response:
    services_of(request).operators.reset_mfa(actor, user_id)
    return RedirectResponse("/portal/users", 303)


@router.post("/portal/users/{user_id}/reset-password")
async def reset_password(request: Request, user_id: str, actor: Operator) -> Response:
    password = one(await read_form(request), "password", 1024)
    try:
        services_of(request).operators.reset_password(actor, user_id, password)
    except InvalidInput as error:
        return _page(request, actor, 422, error=error.detail)
    return _page(request, actor, notice="Password changed; that operator's sessions ended.")
