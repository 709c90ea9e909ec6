"""`GET /v1/me` and the basic shape of every response."""

from __future__ import annotations

from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.services import Services


def test_me_describes_the_calling_key(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services, scopes=[Scope.SITES_READ, Scope.ALARMS_READ])
    with server.client(cred.token) as client:
        response = client.get("/v1/me")
    assert response.status_code == 200
    assert response.json() == {
        "dealer_id": cred.dealer.id,
        "app_id": cred.app.id,
        "environment": "sandbox",
        "scopes": ["alarms:read", "sites:read"],
        "credential_id": cred.key_id,
        "credential_kind": "api_key",
        "expires_at": None,
    }
    assert response.headers["x-request-id"].startswith("req_")


def test_production_key_reports_production(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services, environment=Environment.PRODUCTION)
    assert cred.token.startswith("vgl_live_")
    with server.client(cred.token) as client:
        assert client.get("/v1/me").json()["environment"] == "production"


def test_missing_credential_is_401_problem_with_challenge(server: VigilServer) -> None:
    with server.client() as client:
        response = client.get("/v1/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401
    assert body["request_id"] == response.headers["x-request-id"]


def test_unknown_route_is_a_problem_document(server: VigilServer) -> None:
    with server.client() as client:
        response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"
