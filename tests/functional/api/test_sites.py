"""Sites over the real server: create, read, update with If-Match, arm and disarm with history
and outbox events, pagination and filters."""

from __future__ import annotations

from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.scopes import Scope
from vigil.events.outbox import events_for
from vigil.services import Services

SITE = {"name": "Warehouse 7", "timezone": "Europe/London", "address": {"country": "GB"}}


def test_created_site_reads_back_with_etag(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        created = client.post("/v1/sites", json=SITE | {"external_id": "crm-1"})
        read = client.get(f"/v1/sites/{created.json()['id']}")
    assert created.status_code == 201
    assert read.status_code == 200
    assert read.json() == created.json()
    assert read.json()["arming_state"] == "disarmed"
    assert read.headers["etag"] == '"v1"'


def test_bad_site_input_is_a_problem_not_a_crash(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        unknown_field = client.post("/v1/sites", json=SITE | {"colour": "red"})
        bad_zone = client.post("/v1/sites", json=SITE | {"timezone": "Mars/Olympus"})
        null_name = client.post("/v1/sites", json=SITE)
        site_id = null_name.json()["id"]
        patch_null = client.patch(f"/v1/sites/{site_id}", json={"name": None})
        client.post("/v1/sites", json=SITE | {"external_id": "dup"})
        duplicate = client.post("/v1/sites", json=SITE | {"external_id": "dup"})
    assert unknown_field.status_code == 422
    assert bad_zone.status_code == 422
    assert "IANA" in bad_zone.json()["detail"]
    assert patch_null.status_code == 422
    assert duplicate.status_code == 409
    for response in (unknown_field, bad_zone, patch_null, duplicate):
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["request_id"] == response.headers["x-request-id"]


def test_stale_if_match_loses_and_current_one_wins(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        site = client.post("/v1/sites", json=SITE).json()
        url = f"/v1/sites/{site['id']}"
        first = client.patch(url, json={"name": "A"}, headers={"If-Match": '"v1"'})
        second = client.patch(url, json={"name": "B"}, headers={"If-Match": '"v1"'})
        garbage = client.patch(url, json={"name": "C"}, headers={"If-Match": "v2"})
        final = client.get(url)
    assert first.status_code == 200
    assert first.headers["etag"] == '"v2"'
    assert second.status_code == 412
    assert garbage.status_code == 422
    assert final.json()["name"] == "A"


def test_arming_changes_are_kept_and_announced(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        site = client.post("/v1/sites", json=SITE).json()
        url = f"/v1/sites/{site['id']}"
        armed = client.post(f"{url}/arming-state", json={"state": "armed_away", "reason": "close"})
        again = client.post(f"{url}/arming-state", json={"state": "armed_away"})
        disarmed = client.post(f"{url}/arming-state", json={"state": "disarmed"})
        history = client.get(f"{url}/arming-history").json()["data"]
    assert armed.json()["arming_state"] == "armed_away"
    assert again.json()["version"] == armed.json()["version"]
    assert disarmed.json()["arming_state"] == "disarmed"
    assert [(h["from_state"], h["to_state"]) for h in history] == [
        ("armed_away", "disarmed"),
        ("disarmed", "armed_away"),
    ]
    assert history[1]["actor_id"] == cred.app.id
    assert history[1]["reason"] == "close"
    with services.db.read() as conn:
        tenant = factories.tenant_of(cred)
        events = [e["type"] for e in events_for(conn, tenant, site["id"])]
    assert events == ["site.armed", "site.disarmed"]


def test_listing_pages_through_every_site_once(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services, scopes=[Scope.SITES_READ, Scope.SITES_WRITE])
    with server.client(cred.token) as client:
        ids = {client.post("/v1/sites", json=SITE).json()["id"] for _ in range(5)}
        armed = client.post("/v1/sites", json=SITE).json()["id"]
        client.post(f"/v1/sites/{armed}/arming-state", json={"state": "armed_stay"})
        seen: list[str] = []
        cursor = None
        while True:
            page = client.get(
                "/v1/sites", params={"limit": 2} | ({"cursor": cursor} if cursor else {})
            ).json()
            seen += [s["id"] for s in page["data"]]
            if (cursor := page["next_cursor"]) is None:
                break
        filtered = client.get("/v1/sites", params={"arming_state": "armed_stay"}).json()["data"]
        bad_cursor = client.get("/v1/sites", params={"cursor": "nope"})
    assert sorted(seen) == sorted(ids | {armed})
    assert [s["id"] for s in filtered] == [armed]
    assert bad_cursor.status_code == 422


def test_site_changes_are_audited_with_the_app_identity(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        created = client.post("/v1/sites", json=SITE)
        rid = created.headers["x-request-id"]
        records = client.get("/v1/audit-events", params={"request_id": rid}).json()["data"]
    actions = sorted(r["action"] for r in records)
    assert actions == ["api.request", "site.created"]
    change = next(r for r in records if r["action"] == "site.created")
    assert change["actor_id"] == cred.app.id
    assert change["target_id"] == created.json()["id"]
    assert change["scope"] == "sites:write"
