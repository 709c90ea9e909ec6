"""`Idempotency-Key`: a replayed POST returns the first response and creates nothing; the same
key for a different request is refused; keys belong to one caller."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from tests.support import factories
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.storage.idempotency import Owner
from vigil.storage.tables import sites

SITE = {"name": "Depot"}


def count_sites(services: Services, dealer_id: str) -> int:
    with services.db.read() as conn:
        query = select(func.count()).select_from(sites).where(sites.c.dealer_id == dealer_id)
        return int(conn.execute(query).scalar_one())


def test_replayed_post_returns_the_first_response_and_creates_nothing(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    key = {"Idempotency-Key": "create-depot-1"}
    with server.client(cred.token) as client:
        first = client.post("/v1/sites", json=SITE, headers=key)
        again = client.post("/v1/sites", json=SITE, headers=key)
        unkeyed = client.post("/v1/sites", json=SITE)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert unkeyed.json()["id"] != first.json()["id"]
    assert count_sites(services, cred.dealer.id) == 2


def test_same_key_with_a_different_body_is_refused(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    key = {"Idempotency-Key": "k-2"}
    with server.client(cred.token) as client:
        client.post("/v1/sites", json=SITE, headers=key)
        other = client.post("/v1/sites", json={"name": "Other"}, headers=key)
        other_path = client.post(
            "/v1/apps", json={"name": "x", "scopes": ["sites:read"]}, headers=key
        )
    assert other.status_code == 422
    assert "different request" in other.json()["detail"]
    assert other_path.status_code == 422
    assert count_sites(services, cred.dealer.id) == 1


def test_a_failed_first_attempt_is_not_stored(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    key = {"Idempotency-Key": "k-3"}
    with server.client(cred.token) as client:
        bad = client.post("/v1/sites", json={"name": "x", "timezone": "Nowhere/Else"}, headers=key)
        fixed = client.post("/v1/sites", json=SITE, headers=key)
    assert bad.status_code == 422
    assert fixed.status_code == 201
    assert count_sites(services, cred.dealer.id) == 1


def test_keys_belong_to_their_caller(server: VigilServer, services: Services) -> None:
    dealer = factories.dealer(services)
    one = factories.credential(services, owner=dealer)
    two = factories.credential(services, owner=dealer)
    key = {"Idempotency-Key": "shared-name"}
    with server.client(one.token) as client:
        first = client.post("/v1/sites", json=SITE, headers=key)
    with server.client(two.token) as client:
        second = client.post("/v1/sites", json=SITE, headers=key)
    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in second.headers


def test_malformed_key_is_a_clear_error(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        long_key = client.post("/v1/sites", json=SITE, headers={"Idempotency-Key": "k" * 256})
        spaced = client.post("/v1/sites", json=SITE, headers={"Idempotency-Key": "a b"})
    for response in (long_key, spaced):
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
    assert count_sites(services, cred.dealer.id) == 0


def test_a_claim_in_flight_blocks_a_concurrent_copy_until_released(services: Services) -> None:
    owner = Owner("dlr_x", "sandbox", "app_x")
    now = services.clock.now()
    store = services.idempotency
    assert store.claim(owner, "k", now).claimed
    assert store.claim(owner, "k", now).in_flight
    # A claim left behind by a crashed process does not block the key forever.
    assert store.claim(owner, "k", now + timedelta(hours=1)).claimed
    store.release(owner, "k")
    assert store.claim(owner, "k", now).claimed
    store.release(owner, "k")
