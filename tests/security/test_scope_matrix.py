"""S12: for every scoped route, a credential without the scope is refused before the handler
runs, and one holding only that scope gets through. Every credential kind is tried: an API key,
a user's OAuth access token and a partner's assertion-derived token pass exactly the same
checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import pytest
import trustme
from fastapi.routing import APIRoute
from sqlalchemy import func, select, update
from tests.support import factories, oauth
from tests.support.server import VigilServer

from vigil.app import create_api
from vigil.auth.actor import Actor
from vigil.auth.oauth.clients import AuthMethod, ClientType
from vigil.auth.scopes import Scope
from vigil.edge.authorization import RequiredScope
from vigil.monitoring.alarm_models import AlarmType, NewAlarm
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
    webhook_ca_requests,
    webhook_endpoints,
    webhook_messages,
)
from vigil.tenancy.models import Dealer

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
    content: bytes | None = None  # a raw body instead of JSON (uploads)
    content_type: str = "application/json"
    # Creates something owned by the calling app: a partner's token (no app) is refused with
    # 403 even though it holds the scope.
    app_only: bool = False

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
    Case("GET", HOOKS, lambda w: HOOKS),
    Case("POST", HOOKS, lambda w: HOOKS, lambda w: {"url": MATRIX_HOOK}, app_only=True),
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
    case.path(world), case.body(world)  # create the objects the route names, then snapshot
    before = snapshot(services, dealer.id)
    with server.client(token) as client:
        response = case.send(client, world)
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
    case.path(world), case.body(world)
    before = snapshot(services, dealer.id)
    with server.client(token) as client:
        response = case.send(client, world)
    if case.app_only and kind == "assertion_access_token":
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "forbidden"
        assert snapshot(services, dealer.id) == before
        return
    assert response.status_code in (200, 201), response.text
    if case.method == "POST":
        assert snapshot(services, dealer.id) != before
