"""S12, S13: another dealer's objects answer 404; sandbox keys never see production rows."""

from __future__ import annotations

from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.services import Services


def test_dealer_a_cannot_read_dealer_b_objects(server: VigilServer, services: Services) -> None:
    a = factories.credential(services)
    b = factories.credential(services)
    with server.client(a.token) as client:
        assert client.get(f"/v1/apps/{b.app.id}").status_code == 404
        assert client.get(f"/v1/apps/{b.app.id}/keys").status_code == 404
        assert client.post(f"/v1/apps/{b.app.id}/keys/rotate", json={}).status_code == 404
        assert client.post(f"/v1/keys/{b.key_id}/revoke").status_code == 404
        listed = {x["id"] for x in client.get("/v1/apps").json()["data"]}
        own = client.get(f"/v1/apps/{a.app.id}")
    assert b.app.id not in listed
    assert a.app.id in listed
    assert own.status_code == 200
    assert services.keys.get(b.key_id, None).status.value == "active"


def test_a_foreign_id_and_a_missing_id_look_the_same(
    server: VigilServer, services: Services
) -> None:
    a = factories.credential(services)
    b = factories.credential(services)
    with server.client(a.token) as client:
        foreign = client.get(f"/v1/apps/{b.app.id}").json()
        missing = client.get("/v1/apps/app_doesnotexist").json()
    assert foreign["status"] == missing["status"] == 404
    assert foreign["title"] == missing["title"]


def test_sandbox_key_never_sees_production_rows(server: VigilServer, services: Services) -> None:
    dealer = factories.dealer(services)
    sandbox = factories.credential(services, owner=dealer, environment=Environment.SANDBOX)
    production = factories.credential(services, owner=dealer, environment=Environment.PRODUCTION)
    with server.client(sandbox.token) as client:
        listed = {x["id"] for x in client.get("/v1/apps").json()["data"]}
        assert client.get(f"/v1/apps/{production.app.id}").status_code == 404
        assert client.post(f"/v1/keys/{production.key_id}/revoke").status_code == 404
        created = client.post("/v1/apps", json={"name": "s", "scopes": ["apps:read"]}).json()
    assert production.app.id not in listed
    assert sandbox.app.id in listed
    assert created["environment"] == "sandbox"
    with server.client(production.token) as client:
        prod_listed = {x["id"] for x in client.get("/v1/apps").json()["data"]}
    assert prod_listed == {production.app.id}


def test_app_cannot_create_an_app_with_more_scopes_than_it_holds(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, scopes=[Scope.APPS_WRITE])
    with server.client(cred.token) as client:
        response = client.post(
            "/v1/apps", json={"name": "x", "scopes": ["apps:write", "audit:read"]}
        )
    assert response.status_code == 403
    assert len(services.apps.list(None, dealer_id=cred.dealer.id)) == 1


def test_apps_write_is_no_ladder_to_other_scopes(server: VigilServer, services: Services) -> None:
    """A weak app must not mint or rotate keys for a stronger app of the same dealer."""
    dealer = factories.dealer(services)
    strong = factories.credential(services, owner=dealer)
    weak = factories.credential(services, owner=dealer, scopes=[Scope.APPS_READ, Scope.APPS_WRITE])
    services.keys.revoke(factories.OPERATOR, strong.key_id)
    with server.client(weak.token) as client:
        minted = client.post(f"/v1/apps/{strong.app.id}/keys")
        rotated = client.post(f"/v1/apps/{strong.app.id}/keys/rotate", json={})
        revoked = client.post(f"/v1/keys/{strong.key_id}/revoke")
    assert (minted.status_code, rotated.status_code, revoked.status_code) == (403, 403, 403)
    assert services.keys.list(None, app_id=strong.app.id)[0].id == strong.key_id
    assert len(services.keys.list(None, app_id=strong.app.id)) == 1
    # The same calls on an app no stronger than the caller succeed.
    peer = factories.app(services, dealer, scopes=[Scope.APPS_READ])
    with server.client(weak.token) as client:
        assert client.post(f"/v1/apps/{peer.id}/keys").status_code == 201
