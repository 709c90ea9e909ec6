"""The portal's scope matrix, by role (S12): every portal route declares a scope; a signed-in
operator whose role lacks it gets 403 and changes nothing; roles are the documented scope sets."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from tests.support import factories
from tests.support.portal import csrf_of, operator, sign_in
from tests.support.server import VigilServer

from vigil.app import create_api
from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.portal.access import PortalScope
from vigil.services import Services
from vigil.storage.tables import api_keys, apps
from vigil.tenancy.roles import ROLE_SCOPES, PortalRole


def portal_routes(services: Services) -> list[tuple[str, str, Scope | None]]:
    found = []
    for route in create_api(services).routes:
        if isinstance(route, APIRoute) and route.path.startswith("/portal/"):
            for dep in route.dependant.dependencies:
                for call in (dep.call, *(d.call for d in dep.dependencies)):
                    if isinstance(call, PortalScope):
                        found += [(m, route.path, call.scope) for m in route.methods]
    return found


def test_roles_are_the_documented_scope_sets() -> None:
    assert ROLE_SCOPES[PortalRole.OWNER] == frozenset(Scope)
    assert ROLE_SCOPES[PortalRole.ADMIN] == frozenset(Scope)
    viewer, op = ROLE_SCOPES[PortalRole.VIEWER], ROLE_SCOPES[PortalRole.OPERATOR]
    assert not any(s.value.endswith((":write", ":dispatch")) for s in viewer)
    assert Scope.APPS_READ not in viewer | op
    assert op - viewer == {Scope.ALARMS_WRITE, Scope.ALARMS_DISPATCH, Scope.WEBHOOKS_READ}


@pytest.fixture(scope="module")
def viewer(server: VigilServer, services: Services) -> Iterator[tuple[httpx.Client, str, str]]:
    dealer = factories.dealer(services)
    cred = factories.credential(services, owner=dealer, environment=Environment.PRODUCTION)
    with server.client() as c:
        sign_in(c, operator(services, dealer.id, PortalRole.VIEWER))
        yield c, cred.app.id, cred.key_id


def test_viewer_is_refused_every_route_needing_a_scope_it_lacks(
    viewer: tuple[httpx.Client, str, str], services: Services
) -> None:
    client, app_id, key_id = viewer
    lacking = [(m, p, s) for m, p, s in portal_routes(services) if s is not None]
    lacking = [r for r in lacking if r[2] not in ROLE_SCOPES[PortalRole.VIEWER]]
    assert lacking, "the viewer lacks some portal scopes"
    csrf = csrf_of(client.get("/portal/account").text)
    dealer_id = services.apps.get(app_id, None).dealer_id

    def state() -> tuple[object, ...]:
        with services.db.read() as conn:
            n = conn.execute(
                select(func.count()).select_from(apps).where(apps.c.dealer_id == dealer_id)
            ).scalar_one()
            keys = conn.execute(
                select(api_keys.c.id, api_keys.c.status).where(api_keys.c.dealer_id == dealer_id)
            ).all()
        return n, tuple(tuple(k) for k in keys)

    before = state()
    for method, path, scope in lacking:
        url = path.replace("{app_id}", app_id).replace("{key_id}", key_id)
        answer = client.request(
            method, url, data={"csrf": csrf, "name": "x", "scopes": "sites:read"}
        )
        assert answer.status_code == 403, (method, path, scope)
    assert state() == before


def test_every_portal_route_is_declared(services: Services) -> None:
    """Besides the four public sign-in/static routes, every portal route has a PortalScope."""
    declared = {(m, p) for m, p, _ in portal_routes(services)}
    every = {
        (m, r.path)
        for r in create_api(services).routes
        if isinstance(r, APIRoute) and r.path.startswith("/portal/")
        for m in r.methods
    }
    public = {p for _, p in every - declared}
    assert public == {
        "/portal/sign-in",
        "/portal/sign-in/totp",
        "/portal/mfa/enroll",
        "/portal/static/{name}",
    }
