"""`/v1/audit-events`: the dealer's own records, filtered and paginated; a provable export
that verifies offline with the published keys."""

from __future__ import annotations

import json

from tests.support import factories
from tests.support.server import VigilServer

from vigil.audit.offline import verify_export
from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.services import Services


def test_filter_by_request_id_finds_exactly_that_call(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, scopes=[Scope.AUDIT_READ])
    with server.client(cred.token) as client:
        first = client.get("/v1/me")
        rid = first.headers["x-request-id"]
        found = client.get("/v1/audit-events", params={"request_id": rid}).json()["data"]
    assert [e["request_id"] for e in found] == [rid]
    assert found[0]["route"] == "/v1/me"
    assert found[0]["result"] == "200"
    assert found[0]["credential_id"] == cred.key_id


def test_pagination_walks_every_record_once(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services, scopes=[Scope.AUDIT_READ])
    with server.client(cred.token) as client:
        for _ in range(7):
            client.get("/v1/me")
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 3, "action": "api.request"} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/audit-events", params=params).json()
            seen += [e["id"] for e in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bad = client.get("/v1/audit-events", params={"cursor": "garbage"})
    assert len(seen) == len(set(seen)) >= 7
    assert bad.status_code == 422


def test_other_dealers_and_other_environments_are_invisible(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    sandbox = factories.credential(services, owner=dealer, scopes=[Scope.AUDIT_READ])
    production = factories.credential(
        services, owner=dealer, environment=Environment.PRODUCTION, scopes=[Scope.AUDIT_READ]
    )
    stranger = factories.credential(services, scopes=[Scope.AUDIT_READ])
    with server.client(production.token) as client:
        prod_rid = client.get("/v1/me").headers["x-request-id"]
    with server.client(stranger.token) as client:
        assert client.get("/v1/audit-events", params={"request_id": prod_rid}).json()["data"] == []
    with server.client(sandbox.token) as client:
        events = client.get("/v1/audit-events", params={"limit": 200}).json()["data"]
        assert client.get("/v1/audit-events", params={"request_id": prod_rid}).json()["data"] == []
    assert events
    assert {e["environment"] for e in events} == {"sandbox"}
    assert {e["dealer_id"] for e in events} == {dealer.id}


def test_naive_times_are_rejected(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services, scopes=[Scope.AUDIT_READ])
    with server.client(cred.token) as client:
        response = client.get("/v1/audit-events", params={"since": "2026-01-01T00:00:00"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_api_export_verifies_offline_with_the_published_keys(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(
        services, environment=Environment.PRODUCTION, scopes=[Scope.AUDIT_READ]
    )
    with server.client(cred.token) as client:
        for _ in range(3):
            client.get("/v1/me")
        export = client.get("/v1/audit-events/export")
        keys = client.get("/.well-known/vigil-audit-keys.json").json()
    assert export.status_code == 200
    lines = export.text.splitlines()
    report = verify_export(lines, keys)
    assert report.ok, str(report.first_problem())
    assert report.records >= 4
    records = [json.loads(x) for x in lines if '"type":"record"' in x]
    assert {r["dealer_id"] for r in records} == {cred.dealer.id}
    assert {c.chain_id for c in report.chains} == {f"{cred.dealer.id}/production"}
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" for k in keys["keys"])
    # A flipped byte anywhere in a record is caught.
    tampered = [x.replace('"result":"200"', '"result":"201"', 1) for x in lines]
    assert not verify_export(tampered, keys).ok
