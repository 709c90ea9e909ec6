"""S12: for every scoped route, a key without the scope is refused before the handler runs,
and a key holding only that scope gets through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

import pytest
import trustme
from fastapi.routing import APIRoute
from sqlalchemy import func, select, update
from tests.support import factories
from tests.support.server import VigilServer

from vigil.app import create_api
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.edge.authorization import RequiredScope
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
    webhook_ca_requests,
    webhook_endpoints,
    webhook_messages,
)

# A public address literal: registration needs no DNS, and no worker delivers in these tests.
MATRIX_HOOK = "https://93.184.215.14/matrix"
HOOKS = "/v1/webhooks/endpoints"
MATRIX_CA = trustme.CA().cert_pem.bytes().decode()


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
    def site_id(self) -> str:
        return self.services.sites.create(self.actor, {"name": "matrix site"}).id

    @cached_property
    def endpoint_id(self) -> str:
        hooks = self.services.webhooks.endpoints
        return hooks.create(self.actor, url=MATRIX_HOOK, event_types=[]).endpoint.id

    @cached_property
    def message_id(self) -> str:
        return self.services.webhooks.messages.send_test(self.actor, self.endpoint_id).id

    @cached_property
    def failed_since(self) -> str:
        """A failed message on the world's endpoint, so a bulk replay has one to requeue."""
        message = self.services.webhooks.messages.send_test(self.actor, self.endpoint_id)
        with self.services.db.transaction() as conn:
            conn.execute(
                update(webhook_messages)
                .where(webhook_messages.c.id == message.id)
                .values(status="failed", exhausted=1)
            )
        return (message.created_at - timedelta(seconds=1)).isoformat()


def replay_path(w: World) -> str:
    w.failed_since  # noqa: B018 (created before the snapshot, not inside the request body)
    return f"{HOOKS}/{w.endpoint_id}/replay"


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
    Case("GET", HOOKS, lambda w: HOOKS),
    Case("POST", HOOKS, lambda w: HOOKS, lambda w: {"url": MATRIX_HOOK}),
    Case("GET", HOOKS + "/{endpoint_id}", lambda w: f"{HOOKS}/{w.endpoint_id}"),
    Case(
        "PATCH",
        HOOKS + "/{endpoint_id}",
        lambda w: f"{HOOKS}/{w.endpoint_id}",
        lambda w: {"description": "x"},
    ),
    Case(
        "POST",
        HOOKS + "/{endpoint_id}/rotate-secret",
        lambda w: f"{HOOKS}/{w.endpoint_id}/rotate-secret",
        lambda w: {"overlap_seconds": 60},
    ),
    Case(
        "POST",
        HOOKS + "/{endpoint_id}/ca-requests",
        lambda w: f"{HOOKS}/{w.endpoint_id}/ca-requests",
        lambda w: {"ca_bundle": MATRIX_CA},
    ),
    Case("POST", HOOKS + "/{endpoint_id}/test", lambda w: f"{HOOKS}/{w.endpoint_id}/test"),
    Case(
        "POST",
        HOOKS + "/{endpoint_id}/replay",
        replay_path,
        lambda w: {"since": w.failed_since},
    ),
    Case("GET", HOOKS + "/{endpoint_id}/messages", lambda w: f"{HOOKS}/{w.endpoint_id}/messages"),
    Case("GET", HOOKS + "/{endpoint_id}/attempts", lambda w: f"{HOOKS}/{w.endpoint_id}/attempts"),
    Case(
        "POST",
        "/v1/webhooks/messages/{message_id}/replay",
        lambda w: f"/v1/webhooks/messages/{w.message_id}/replay",
    ),
]

# Tenant tables whose rows or versions any scoped route could change.
MONITORING = (
    sites,
    devices,
    telemetry,
    alarms,
    alarm_timeline,
    snapshots,
    outbox_events,
    webhook_endpoints,
    webhook_messages,
    webhook_ca_requests,
)


def scoped_routes(services: Services) -> dict[tuple[str, str], Scope]:
    found = {}
    for route in create_api(services).routes:
        if not isinstance(route, APIRoute):
            continue
        for dep in route.dependant.dependencies:
            for call in (dep.call, *(d.call for d in dep.dependencies)):
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


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.template}")
def test_missing_scope_is_403_with_no_side_effect(
    case: Case, server: VigilServer, services: Services
) -> None:
    needed = scoped_routes(services)[(case.method, case.template)]
    dealer = factories.dealer(services)
    world = World(services, factories.credential(services, owner=dealer))
    if case.template == "/v1/apps/{app_id}/keys":
        services.keys.revoke(factories.OPERATOR, world.target.key_id)
    caller = factories.credential(services, owner=dealer, scopes=set(Scope) - {needed})
    case.path(world)  # create the objects the route names before taking the snapshot
    before = snapshot(services, dealer.id)
    with server.client(caller.token) as client:
        response = client.request(case.method, case.path(world), json=case.body(world))
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "insufficient_scope"
    assert response.json()["scope"] == needed.value
    assert f'scope="{needed.value}"' in response.headers["www-authenticate"]
    assert snapshot(services, dealer.id) == before


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.template}")
def test_holding_only_the_scope_is_enough(
    case: Case, server: VigilServer, services: Services
) -> None:
    needed = scoped_routes(services)[(case.method, case.template)]
    dealer = factories.dealer(services)
    # The target holds no more than the caller, so managing it is not an escalation.
    world = World(services, factories.credential(services, owner=dealer, scopes={needed}))
    if case.template == "/v1/apps/{app_id}/keys":
        services.keys.revoke(factories.OPERATOR, world.target.key_id)
    caller = factories.credential(services, owner=dealer, scopes={needed})
    case.path(world)
    before = snapshot(services, dealer.id)
    with server.client(caller.token) as client:
        response = client.request(case.method, case.path(world), json=case.body(world))
    assert response.status_code in (200, 201), response.text
    if case.method == "POST":
        assert snapshot(services, dealer.id) != before
