"""S12: for every scoped route, a credential without the scope is refused before the handler
runs, and one holding only that scope gets through. Every credential kind is tried: an API key,
a user's OAuth access token and a partner's assertion-derived token pass exactly the same
checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from tests.support import factories, oauth
from tests.support.server import VigilServer

from vigil.app import create_api
from vigil.auth.actor import Actor
from vigil.auth.oauth.clients import AuthMethod, ClientType
from vigil.auth.scopes import Scope
from vigil.edge.authorization import RequiredScope
from vigil.portal.access import PortalScope
from vigil.services import Services
from vigil.storage.tables import (
    alarm_timeline,
    alarms,
    api_keys,
    apps,
    devices,
    outbox_events,
    sites,
    snapshots,
    telemetry,
)
from vigil.tenancy.models import Dealer


@dataclass
class World:
    """One dealer's target app with a key, plus the caller under test, and monitoring objects
    of the same tenant, each created on first use."""

    services: Services
    target: factories.Credential

    @cached_property
    def actor(self) -> Actor:
        return factories.actor_of(self.services, self.target)

    @cached_property
    def oauth_client(self) -> str:
        """The target app, registered as a public OAuth client."""
        self.services.oauth_clients.register(
            factories.OPERATOR,
            self.target.app.id,
            client_type=ClientType.PUBLIC,
            auth_method=AuthMethod.NONE,
            redirect_uris=["https://app.example/cb"],
        )
        return f"/v1/apps/{self.target.app.id}/oauth-client"

    @cached_property
    def site_id(self) -> str:
        return self.services.sites.create(self.actor, {"name": "matrix site"}).id


@dataclass(frozen=True)
class Case:
    method: str
    template: str
    path: Callable[[World], str]
    body: Callable[[World], dict[str, Any] | None] = lambda w: None


CASES = [
    Case("GET", "/v1/apps", lambda w: "/v1/apps"),
    Case("GET", "/v1/apps/{app_id}", lambda w: f"/v1/apps/{w.target.app.id}"),
    Case("GET", "/v1/apps/{app_id}/keys", lambda w: f"/v1/apps/{w.target.app.id}/keys"),
    Case(
        "POST",
        "/v1/apps",
        lambda w: "/v1/apps",
        lambda w: {"name": "matrix", "scopes": ["apps:write"]},
    ),
    Case("POST", "/v1/apps/{app_id}/keys", lambda w: f"/v1/apps/{w.target.app.id}/keys"),
    Case(
        "POST",
        "/v1/apps/{app_id}/keys/rotate",
        lambda w: f"/v1/apps/{w.target.app.id}/keys/rotate",
        lambda w: {"grace_seconds": 60},
    ),
    Case("POST", "/v1/keys/{key_id}/revoke", lambda w: f"/v1/keys/{w.target.key_id}/revoke"),
    Case(
        "PUT",
        "/v1/apps/{app_id}/oauth-client",
        lambda w: f"/v1/apps/{w.target.app.id}/oauth-client",
        lambda w: {
            "client_type": "public",
            "token_endpoint_auth_method": "none",
            "redirect_uris": ["http://127.0.0.1/cb"],
        },
    ),
    Case("GET", "/v1/apps/{app_id}/oauth-client", lambda w: w.oauth_client),
    Case("GET", "/v1/audit-events", lambda w: "/v1/audit-events"),
    Case("GET", "/v1/audit-events/export", lambda w: "/v1/audit-events/export"),
    Case("GET", "/v1/sites", lambda w: "/v1/sites"),
    Case("POST", "/v1/sites", lambda w: "/v1/sites", lambda w: {"name": "matrix"}),
    Case("GET", "/v1/sites/{site_id}", lambda w: f"/v1/sites/{w.site_id}"),
    Case(
        "PATCH", "/v1/sites/{site_id}", lambda w: f"/v1/sites/{w.site_id}", lambda w: {"name": "x"}
    ),
    Case(
        "POST",
        "/v1/sites/{site_id}/arming-state",
        lambda w: f"/v1/sites/{w.site_id}/arming-state",
        lambda w: {"state": "armed_away"},
    ),
    Case(
        "GET",
        "/v1/sites/{site_id}/arming-history",
        lambda w: f"/v1/sites/{w.site_id}/arming-history",
    ),
]

# Tenant tables whose rows or versions any scoped route could change.
MONITORING = (sites, devices, telemetry, alarms, alarm_timeline, snapshots, outbox_events)


def scoped_routes(services: Services) -> dict[tuple[str, str], Scope]:
    found = {}
    for route in create_api(services).routes:
        if not isinstance(route, APIRoute):
            continue
        for dep in route.dependant.dependencies:
            for call in (dep.call, *(d.call for d in dep.dependencies)):
                # Portal routes authenticate by session, not bearer credentials: their matrix is
                # tests/functional/portal/test_portal_roles.py, by role.
                if isinstance(call, PortalScope):
                    continue
                if isinstance(call, RequiredScope) and call.scope is not None:
                    for method in route.methods:
                        found[(method, route.path)] = call.scope
    return found


def snapshot(services: Services, dealer_id: str) -> tuple[Any, ...]:
    """Everything these routes could change for the dealer."""
    with services.db.read() as conn:
        n_apps = conn.execute(
            select(func.count()).select_from(apps).where(apps.c.dealer_id == dealer_id)
        ).scalar_one()
        keys = conn.execute(
            select(api_keys.c.id, api_keys.c.status, api_keys.c.expires_at)
            .where(api_keys.c.dealer_id == dealer_id)
            .order_by(api_keys.c.id)
        ).all()
        monitoring = tuple(
            conn.execute(
                select(func.count(), *([func.sum(t.c.version)] if "version" in t.c else [])).where(
                    t.c.dealer_id == dealer_id
                )
            ).one()
            for t in MONITORING
        )
    return n_apps, tuple(tuple(k) for k in keys), monitoring


def test_every_scoped_route_is_in_the_matrix(services: Services) -> None:
    assert {(c.method, c.template) for c in CASES} == set(scoped_routes(services))


KINDS = ("api_key", "oauth_access_token", "assertion_access_token")


def caller(services: Services, dealer: Dealer, scopes: set[Scope], kind: str) -> str:
    if kind == "api_key":
        return factories.credential(services, owner=dealer, scopes=scopes).token
    return oauth.issued_token(services, dealer.id, scopes, kind=kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.template}")
def test_missing_scope_is_403_with_no_side_effect(
    case: Case, kind: str, server: VigilServer, services: Services
) -> None:
    needed = scoped_routes(services)[(case.method, case.template)]
    dealer = factories.dealer(services)
    world = World(services, factories.credential(services, owner=dealer))
    if case.template == "/v1/apps/{app_id}/keys":
        services.keys.revoke(factories.OPERATOR, world.target.key_id)
    token = caller(services, dealer, set(Scope) - {needed}, kind)
    case.path(world)  # create the objects the route names before taking the snapshot
    before = snapshot(services, dealer.id)
    with server.client(token) as client:
        response = client.request(case.method, case.path(world), json=case.body(world))
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "insufficient_scope"
    assert response.json()["scope"] == needed.value
    assert f'scope="{needed.value}"' in response.headers["www-authenticate"]
    assert snapshot(services, dealer.id) == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.template}")
def test_holding_only_the_scope_is_enough(
    case: Case, kind: str, server: VigilServer, services: Services
) -> None:
    needed = scoped_routes(services)[(case.method, case.template)]
    dealer = factories.dealer(services)
    # The target holds no more than the caller, so managing it is not an escalation.
    world = World(services, factories.credential(services, owner=dealer, scopes={needed}))
    if case.template == "/v1/apps/{app_id}/keys":
        services.keys.revoke(factories.OPERATOR, world.target.key_id)
    token = caller(services, dealer, {needed}, kind)
    case.path(world)
    before = snapshot(services, dealer.id)
    with server.client(token) as client:
        response = client.request(case.method, case.path(world), json=case.body(world))
    assert response.status_code in (200, 201), response.text
    if case.method == "POST":
        assert snapshot(services, dealer.id) != before
