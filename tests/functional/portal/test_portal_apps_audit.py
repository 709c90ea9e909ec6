"""Issue 8 §4 screens checked against the code: an app's scopes change in the portal, narrowing
at once and widening only after the operator approves exactly the additions; the audit page
shows the latest integrity verification and who ran it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from tests.support import factories
from tests.support.audit_trail import opened_rows
from tests.support.portal import Operator, csrf_of, operator, sign_in
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.services import Services
from vigil.storage.tables import audit_events
from vigil.tenancy.roles import PortalRole


@dataclass(frozen=True)
class World:
    owner: Operator
    app_id: str
    foreign_app_id: str


@pytest.fixture(scope="module")
def world(services: Services) -> World:
    dealer = factories.dealer(services)
    app = factories.app(
        services, dealer, Environment.PRODUCTION, [Scope.SITES_READ, Scope.ALARMS_READ]
    )
    foreign = factories.app(services, factories.dealer(services), Environment.PRODUCTION)
    return World(operator(services, dealer.id, PortalRole.OWNER), app.id, foreign.id)


@pytest.fixture(scope="module")
def owner(server: VigilServer, world: World) -> Iterator[httpx.Client]:
    with server.client() as c:
        sign_in(c, world.owner)
        yield c


def scopes_of(services: Services, app_id: str) -> set[str]:
    return {s.value for s in services.apps.get(app_id, None).scopes}


def post_scopes(
    client: httpx.Client, app_id: str, scopes: list[str], **extra: str
) -> httpx.Response:
    csrf = csrf_of(client.get(f"/portal/apps/{app_id}").text)
    return client.post(
        f"/portal/apps/{app_id}/scopes", data={"csrf": csrf, "scopes": scopes, **extra}
    )


def test_widening_asks_for_approval_of_exactly_the_additions(
    owner: httpx.Client, world: World, services: Services
) -> None:
    wider = ["sites:read", "alarms:read", "alarms:write"]
    asked = post_scopes(owner, world.app_id, wider)
    assert asked.status_code == 200
    assert "Approve wider scopes" in asked.text
    assert "alarms:write" in asked.text.split("<h2>Added</h2>")[1].split("</ul>")[0]
    assert scopes_of(services, world.app_id) == {"sites:read", "alarms:read"}  # nothing yet

    # An approval for a different set (stale, or altered) asks again rather than granting.
    sneaky = [*wider, "apps:write"]
    again = post_scopes(owner, world.app_id, sneaky, approve_added="alarms:write")
    assert again.status_code == 200
    assert "Approve wider scopes" in again.text
    assert scopes_of(services, world.app_id) == {"sites:read", "alarms:read"}

    approved = post_scopes(owner, world.app_id, wider, approve_added="alarms:write")
    assert approved.status_code == 303
    assert scopes_of(services, world.app_id) == set(wider)
    record = opened_rows(
        services,
        select(audit_events)
        .where(
            audit_events.c.action == "app.scopes_granted",
            audit_events.c.target_id == world.app_id,
        )
        .order_by(audit_events.c.occurred_at, audit_events.c.seq),
    )[-1]
    assert (record["actor_type"], record["actor_id"]) == ("operator", world.owner.user_id)
    assert record["details"]["after"] == "alarms:read alarms:write sites:read"


def test_narrowing_applies_at_once_and_empty_is_refused(
    owner: httpx.Client, world: World, services: Services
) -> None:
    narrowed = post_scopes(owner, world.app_id, ["sites:read"])
    assert narrowed.status_code == 303
    assert scopes_of(services, world.app_id) == {"sites:read"}
    empty = post_scopes(owner, world.app_id, [])
    assert empty.status_code == 422
    assert "at least one scope" in empty.text
    assert scopes_of(services, world.app_id) == {"sites:read"}


def test_another_dealers_app_is_404(owner: httpx.Client, world: World, services: Services) -> None:
    before = scopes_of(services, world.foreign_app_id)
    csrf = csrf_of(owner.get("/portal/account").text)
    answer = owner.post(
        f"/portal/apps/{world.foreign_app_id}/scopes",
        data={"csrf": csrf, "scopes": ["sites:read"]},
    )
    assert answer.status_code == 404
    assert scopes_of(services, world.foreign_app_id) == before


def test_the_audit_page_shows_the_latest_integrity_verification(
    owner: httpx.Client, world: World
) -> None:
    assert "never run" in owner.get("/portal/audit").text
    assert owner.get("/portal/audit/verify").status_code == 200
    page = owner.get("/portal/audit").text
    latest = page.split('id="latest-verification"')[1].split("</p>")[0]
    assert ">verified<" in latest
    assert f'operator:<span class="mono">{world.owner.user_id}</span>' in latest
    assert "records" in latest
