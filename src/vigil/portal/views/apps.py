"""Apps and their API keys: list, create, issue, rotate with grace, revoke.

A new secret is rendered once, in the response to the action that made it, and never stored
or shown again (S9). Keys management needs `apps:read` to see and `apps:write` to change: a
viewer's session fails the same check an API key without those scopes fails.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vigil.auth.actor import Actor
from vigil.auth.scopes import DESCRIPTIONS, Scope, encode_scopes, parse_scopes
from vigil.core.errors import InvalidInput
from vigil.portal.access import portal_requires, services_of
from vigil.portal.forms import one, read_form
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
AppsRead = Annotated[Actor, Depends(portal_requires(Scope.APPS_READ))]
AppsWrite = Annotated[Actor, Depends(portal_requires(Scope.APPS_WRITE))]


def _apps_page(request: Request, actor: Actor, status: int = 200, **extra: object) -> Response:
    svc = services_of(request)
    apps = svc.apps.list(actor.tenant)
    keys = svc.keys.list(actor.tenant)
    return render(
        request,
        "apps.html",
        status,
        apps=apps,
        keys=keys,
        scopes=sorted(Scope, key=lambda s: s.value),
        descriptions=DESCRIPTIONS,
        **extra,
    )


@router.get("/portal/apps")
def list_apps(request: Request, actor: AppsRead) -> Response:
    return _apps_page(request, actor)


def _chosen_scopes(values: list[str]) -> frozenset[Scope]:
    scopes = parse_scopes(values)
    if not scopes:
        raise InvalidInput("Choose at least one scope.")
    return scopes


@router.post("/portal/apps")
async def create_app(request: Request, actor: AppsWrite) -> Response:
    form = await read_form(request)
    p = actor.principal
    assert p is not None
    try:
        scopes = _chosen_scopes(form.get("scopes", []))
        networks = [n for n in one(form, "ip_allow_list", 4000).split() if n]
        app = services_of(request).apps.create(
            actor,
            dealer_id=p.dealer_id,
            name=one(form, "name", 200) or "",
            environment=p.environment,
            scopes=scopes,
            ip_allow_list=networks,
        )
    except (InvalidInput, ValueError) as error:
        message = error.detail if isinstance(error, InvalidInput) else str(error)
        return _apps_page(request, actor, 422, error=message)
    return RedirectResponse(f"/portal/apps/{app.id}", 303)


def _app_page(
    request: Request, actor: Actor, app_id: str, status: int = 200, **extra: object
) -> Response:
    svc = services_of(request)
    app = svc.apps.get(app_id, actor.tenant)
    keys = svc.keys.list(actor.tenant, app_id=app.id)
    return render(
        request,
        "app.html",
        status,
        app=app,
        keys=keys,
        now=svc.clock.now(),
        scopes=sorted(Scope, key=lambda s: s.value),
        descriptions=DESCRIPTIONS,
        **extra,
    )


@router.get("/portal/apps/{app_id}")
def app_detail(request: Request, app_id: str, actor: AppsRead) -> Response:
    return _app_page(request, actor, app_id)


@router.post("/portal/apps/{app_id}/scopes")
async def set_scopes(request: Request, app_id: str, actor: AppsWrite) -> Response:
    """Narrowing applies at once (to the app's keys and tokens on their next request). Widening
    is never applied from the form that asked for it: the page lists what would be added and
    asks the operator to approve exactly that set again; a stale or altered approval (the
    added set changed meanwhile) asks again rather than granting."""
    form = await read_form(request)
    svc = services_of(request)
    app = svc.apps.get(app_id, actor.tenant)
    try:
        chosen = _chosen_scopes(form.get("scopes", []))
    except (InvalidInput, ValueError) as error:
        message = error.detail if isinstance(error, InvalidInput) else str(error)
        return _app_page(request, actor, app_id, 422, error=message)
    added = chosen - app.scopes
    if added and one(form, "approve_added", 2000) != encode_scopes(added):
        return render(
            request,
            "app_widen.html",
            app=app,
            chosen=sorted(chosen, key=lambda s: s.value),
            added=sorted(added, key=lambda s: s.value),
            approval=encode_scopes(added),
            descriptions=DESCRIPTIONS,
        )
    svc.apps.grant(actor, app_id, chosen)
    return RedirectResponse(f"/portal/apps/{app_id}", 303)


def _secret_page(request: Request, actor: Actor, app_id: str, token: str, what: str) -> Response:
    app = services_of(request).apps.get(app_id, actor.tenant)
    return render(
        request,
        "secret.html",
        heading=f"Key {what} for {app.name}",
        label="API key",
        token=token,
        back=f"/portal/apps/{app.id}",
        overlap=None,
    )


@router.post("/portal/apps/{app_id}/keys")
def create_key(request: Request, app_id: str, actor: AppsWrite) -> Response:
    _key, token = services_of(request).keys.create(actor, app_id)
    return _secret_page(request, actor, app_id, token, "issued")


@router.post("/portal/apps/{app_id}/keys/rotate")
async def rotate_key(request: Request, app_id: str, actor: AppsWrite) -> Response:
    hours = one(await read_form(request), "grace_hours", 4) or "24"
    if not hours.isdigit():
        raise InvalidInput("The grace window is a whole number of hours (0 to 168).")
    grace = timedelta(hours=int(hours))
    _key, token, _old = services_of(request).keys.rotate(actor, app_id, grace=grace)
    return _secret_page(request, actor, app_id, token, "rotated")


@router.post("/portal/keys/{key_id}/revoke")
def revoke_key(request: Request, key_id: str, actor: AppsWrite) -> Response:
    key = services_of(request).keys.revoke(actor, key_id)
    return RedirectResponse(f"/portal/apps/{key.app_id}", 303)
