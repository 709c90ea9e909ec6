"""Webhook endpoints per app: list with health, create, edit, enable/disable, rotate the signing
secret, recent deliveries with their attempts, replay, test sends and internal-CA requests.

The same webhook services as `/v1/webhooks/...`, under the same scopes (`webhooks:read` to see,
`webhooks:write` to change) and the same tenant confinement: another dealer's ids are 404. The
URL policy (https only, no credentials, SSRF guard) is the service's, so its refusal reads here
as it reads in the API. A new signing secret is rendered once, in the response to the action
that made it (S9); no other page can show it, so a viewer never sees one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.core.errors import InvalidInput
from vigil.events.types import READ_SCOPE, EventType
from vigil.portal.access import portal_requires, services_of
from vigil.portal.forms import one, read_form
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute
from vigil.tenancy.models import App
from vigil.webhooks.endpoints import WithSecret
from vigil.webhooks.models import Attempt
from vigil.webhooks.trust import MAX_BUNDLE_BYTES

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
HooksRead = Annotated[Actor, Depends(portal_requires(Scope.WEBHOOKS_READ))]
HooksWrite = Annotated[Actor, Depends(portal_requires(Scope.WEBHOOKS_WRITE))]
# A pasted PEM bundle, URL-encoded (line breaks and base64's + / = grow by a factor of three at
# worst), plus the other fields.
CaWrite = Annotated[
    Actor,
    Depends(portal_requires(Scope.WEBHOOKS_WRITE, max_body=3 * MAX_BUNDLE_BYTES + 4096)),
]
BASE = "/portal/webhooks"


def _apps(request: Request, actor: Actor) -> dict[str, App]:
    return {a.id: a for a in services_of(request).apps.list(actor.tenant)}


def _event_types(app: App | None) -> list[str]:
    """The types an endpoint of `app` may subscribe to (every type, before an app is chosen)."""
    return [t.value for t in EventType if app is None or READ_SCOPE[t] in app.scopes]


def _list_page(request: Request, actor: Actor, status: int = 200, **extra: Any) -> Response:
    svc = services_of(request)
    only = request.query_params.get("app", "")[:40] or None
    apps = _apps(request, actor)
    page = svc.webhooks.endpoints.list(actor, limit=200)
    endpoints = [e for e in page.items if only is None or e.app_id == only]
    health = {e.id: svc.webhooks.messages.health(actor, e.id) for e in endpoints}
    groups = [(a, [e for e in endpoints if e.app_id == a.id]) for a in apps.values()]
    groups = [(a, items) for a, items in groups if items or only in (None, a.id)]
    return render(
        request,
        "webhooks.html",
        status,
        groups=groups,
        health=health,
        apps=list(apps.values()),
        only=only,
        event_types=_event_types(None),
        more=page.next_cursor is not None,
        **extra,
    )


@router.get(BASE)
def list_endpoints(request: Request, actor: HooksRead) -> Response:
    return _list_page(request, actor)


def _secret_page(request: Request, created: WithSecret, what: str) -> Response:
    endpoint = created.endpoint
    return render(
        request,
        "secret.html",
        heading=f"Signing secret {what} for {endpoint.url}",
        label="Signing secret",
        token=created.secret.value,
        back=f"{BASE}/{endpoint.id}",
        overlap=endpoint.secret_rotating_until,
    )


@router.post(BASE)
async def create_endpoint(request: Request, actor: HooksWrite) -> Response:
    form = await read_form(request)
    fields = {
        "app_id": one(form, "app_id", 40),
        "url": one(form, "url", 2000),
        "description": one(form, "description", 500),
        "event_types": form.get("event_types", []),
    }
    if not fields["app_id"]:
        error = "Choose the app whose events the endpoint receives."
        return _list_page(request, actor, 422, error=error, entered=fields)
    try:
        created = services_of(request).webhooks.endpoints.create(
            actor,
            app_id=str(fields["app_id"]),
            url=str(fields["url"]),
            event_types=list(fields["event_types"]),
            description=str(fields["description"]) or None,
        )
    except InvalidInput as error:
        return _list_page(request, actor, 422, error=error.detail, entered=fields)
    return _secret_page(request, created, "created")


def _detail_page(
    request: Request, actor: Actor, endpoint_id: str, status: int = 200, **extra: Any
) -> Response:
    svc = services_of(request)
    endpoint = svc.webhooks.endpoints.get(actor, endpoint_id)
    messages = svc.webhooks.messages.list(actor, endpoint_id, limit=25).items
    attempts: dict[str, list[Attempt]] = {}
    for attempt in svc.webhooks.messages.attempts(actor, endpoint_id, limit=200).items:
        attempts.setdefault(attempt.message_id, []).append(attempt)
    app = _apps(request, actor).get(endpoint.app_id)
    return render(
        request,
        "webhook.html",
        status,
        endpoint=endpoint,
        app=app,
        health=svc.webhooks.messages.health(actor, endpoint_id),
        messages=messages,
        attempts=attempts,
        ca_requests=svc.webhooks.endpoints.ca_requests_of(actor, endpoint_id),
        event_types=_event_types(app),
        now=svc.clock.now(),
        **extra,
    )


@router.get(BASE + "/{endpoint_id}")
def endpoint_detail(request: Request, endpoint_id: str, actor: HooksRead) -> Response:
    return _detail_page(request, actor, endpoint_id)


def _or_page(
    request: Request, actor: Actor, endpoint_id: str, change: Callable[[], object]
) -> Response:
    """Apply `change`; a refused value is shown on the endpoint's page, next to its form."""
    try:
        change()
    except InvalidInput as error:
        return _detail_page(request, actor, endpoint_id, 422, error=error.detail)
    return RedirectResponse(f"{BASE}/{endpoint_id}", 303)


@router.post(BASE + "/{endpoint_id}")
async def edit_endpoint(request: Request, endpoint_id: str, actor: HooksWrite) -> Response:
    form = await read_form(request)
    version = one(form, "version", 10)
    changes = {
        "url": one(form, "url", 2000),
        "description": one(form, "description", 500) or None,
        "event_types": form.get("event_types", []),
    }
    return _or_page(
        request,
        actor,
        endpoint_id,
        lambda: services_of(request).webhooks.endpoints.update(
            actor, endpoint_id, changes, int(version) if version.isdigit() else None
        ),
    )


@router.post(BASE + "/{endpoint_id}/enabled")
async def set_enabled(request: Request, endpoint_id: str, actor: HooksWrite) -> Response:
    enabled = one(await read_form(request), "enabled", 5) == "true"
    return _or_page(
        request,
        actor,
        endpoint_id,
        lambda: services_of(request).webhooks.endpoints.update(
            actor, endpoint_id, {"enabled": enabled}, None
        ),
    )


@router.post(BASE + "/{endpoint_id}/rotate-secret")
async def rotate_secret(request: Request, endpoint_id: str, actor: HooksWrite) -> Response:
    hours = one(await read_form(request), "overlap_hours", 4) or "24"
    if not hours.isdigit():
        raise InvalidInput("The overlap is a whole number of hours (0 to 168).")
    overlap = timedelta(hours=int(hours))
    rotated = services_of(request).webhooks.endpoints.rotate_secret(actor, endpoint_id, overlap)
    return _secret_page(request, rotated, "rotated")


@router.post(BASE + "/{endpoint_id}/ca-requests")
async def request_ca(request: Request, endpoint_id: str, actor: CaWrite) -> Response:
    form = await read_form(request, 3 * MAX_BUNDLE_BYTES + 4096)
    bundle = one(form, "ca_bundle", 3 * MAX_BUNDLE_BYTES)
    reason = one(form, "reason", 500) or None
    return _or_page(
        request,
        actor,
        endpoint_id,
        lambda: services_of(request).webhooks.endpoints.request_ca(
            actor, endpoint_id, bundle, reason
        ),
    )


@router.post(BASE + "/{endpoint_id}/test")
def send_test(request: Request, endpoint_id: str, actor: HooksWrite) -> Response:
    services_of(request).webhooks.messages.send_test(actor, endpoint_id)
    return RedirectResponse(f"{BASE}/{endpoint_id}", 303)


@router.post(BASE + "/messages/{message_id}/replay")
def replay(request: Request, message_id: str, actor: HooksWrite) -> Response:
    message = services_of(request).webhooks.messages.replay(actor, message_id)
    return RedirectResponse(f"{BASE}/{message.endpoint_id}", 303)
