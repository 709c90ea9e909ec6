"""S12: for every scoped route, a key without the scope is refused before the handler runs,
and a key holding only that scope gets through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select
from tests.support import factories
from tests.support.server import VigilServer

from vigil.app import create_api
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.edge.authorization import RequiredScope
from vigil.monitoring.alarm_models import AlarmType, NewAlarm
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
    def device_id(self) -> str:
        fields = {"site_id": self.site_id, "kind": "sensor", "serial": f"M-{self.site_id}"}
        return self.services.devices.create(self.actor, fields | {"name": "matrix sensor"}).id

    @cached_property
    def snapshot_id(self) -> str:
        snapshot = self.services.snapshots.create(
            self.actor, self.device_id, [b"\xff\xd8\xff matrix"], content_type="image/jpeg"
        )
        return snapshot.id

    @cached_property
    def alarm_id(self) -> str:
        """A `new` alarm: it can be acknowledged, resolved and annotated."""
        new = NewAlarm(self.site_id, AlarmType.BURGLARY, datetime.now(UTC))
        return self.services.alarms.create(self.actor, new).id

    @cached_property
    def acknowledged_alarm_id(self) -> str:
        """A fresh alarm acknowledged by the target, so it can be dispatched."""
        new = NewAlarm(self.site_id, AlarmType.FIRE, datetime.now(UTC))
        alarm_id = self.services.alarms.create(self.actor, new).id
        self.services.alarms.acknowledge(self.actor, alarm_id)
        return alarm_id


@dataclass(frozen=True)
class Case:
    method: str
    template: str
    path: Callable[[World], str]
    body: Callable[[World], dict[str, Any] | None] = lambda w: None
    content: bytes | None = None  # a raw body instead of JSON (uploads)
    content_type: str = "application/json"

    def send(self, client: Any, world: World) -> Any:
        if self.content is None:
            return client.request(self.method, self.path(world), json=self.body(world))
        headers = {"Content-Type": self.content_type}
        return client.request(self.method, self.path(world), content=self.content, headers=headers)


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
    Case(
        "POST",
        "/v1/devices/{device_id}/snapshots",
        lambda w: f"/v1/devices/{w.device_id}/snapshots",
        content=b"\xff\xd8\xff matrix",
        content_type="image/jpeg",
    ),
    Case("GET", "/v1/snapshots", lambda w: "/v1/snapshots"),
    Case("GET", "/v1/snapshots/{snapshot_id}", lambda w: f"/v1/snapshots/{w.snapshot_id}"),
    Case(
        "GET",
        "/v1/snapshots/{snapshot_id}/content",
        lambda w: f"/v1/snapshots/{w.snapshot_id}/content",
    ),
    Case("GET", "/v1/alarms", lambda w: "/v1/alarms"),
    Case(
        "POST",
        "/v1/alarms",
        lambda w: "/v1/alarms",
        lambda w: {"site_id": w.site_id, "type": "panic", "occurred_at": "2026-11-27T22:00:00Z"},
    ),
    Case("GET", "/v1/alarms/{alarm_id}", lambda w: f"/v1/alarms/{w.alarm_id}"),
    Case("GET", "/v1/alarms/{alarm_id}/timeline", lambda w: f"/v1/alarms/{w.alarm_id}/timeline"),
    Case(
        "POST",
        "/v1/alarms/{alarm_id}/acknowledge",
        lambda w: f"/v1/alarms/{w.alarm_id}/acknowledge",
    ),
    Case(
        "POST",
        "/v1/alarms/{alarm_id}/dispatch",
        lambda w: f"/v1/alarms/{w.acknowledged_alarm_id}/dispatch",
        lambda w: {"agency": "police"},
    ),
    Case(
        "POST",
        "/v1/alarms/{alarm_id}/resolve",
        lambda w: f"/v1/alarms/{w.alarm_id}/resolve",
        lambda w: {"resolution_code": "false_alarm"},
    ),
    Case(
        "POST",
        "/v1/alarms/{alarm_id}/annotate",
        lambda w: f"/v1/alarms/{w.alarm_id}/annotate",
        lambda w: {"note": "matrix note"},
    ),
    Case("GET", "/v1/devices", lambda w: "/v1/devices"),
    Case(
        "POST",
        "/v1/devices",
        lambda w: "/v1/devices",
        lambda w: {"site_id": w.site_id, "kind": "panel", "serial": "P-1", "name": "panel"},
    ),
    Case("GET", "/v1/devices/{device_id}", lambda w: f"/v1/devices/{w.device_id}"),
    Case(
        "PATCH",
        "/v1/devices/{device_id}",
        lambda w: f"/v1/devices/{w.device_id}",
        lambda w: {"firmware_version": "2.0"},
    ),
    Case(
        "POST",
        "/v1/devices/{device_id}/telemetry",
        lambda w: f"/v1/devices/{w.device_id}/telemetry",
        lambda w: {"readings": [{"metric": "t", "value": 1, "timestamp": "2026-01-01T00:00:00Z"}]},
    ),
    Case(
        "GET",
        "/v1/devices/{device_id}/telemetry",
        lambda w: f"/v1/devices/{w.device_id}/telemetry",
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
    case.path(world), case.body(world)  # create the objects named before the snapshot
    case.path(world), case.body(world)  # create the objects the route names, then snapshot
    before = snapshot(services, dealer.id)
    with server.client(caller.token) as client:
        response = case.send(client, world)
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
    case.path(world), case.body(world)
    before = snapshot(services, dealer.id)
    with server.client(caller.token) as client:
        response = case.send(client, world)
    assert response.status_code in (200, 201), response.text
    if case.method == "POST":
        assert snapshot(services, dealer.id) != before
