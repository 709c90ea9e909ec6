"""OAuth credentials sent over plain HTTP (S2): refused, and treated as stolen.

An access token is revoked with its refresh family, a refresh token sent in a token request's
form body too, and a client secret (Basic header or `client_secret_post` body) stops
authenticating until the client is re-registered. A made-up secret sent with a real client id
(ids are not secret) changes nothing.
"""

from __future__ import annotations

import base64

import httpx
import pytest
from sqlalchemy import select
from tests.support import factories, oauth
from tests.support.server import VigilServer

from vigil.auth.oauth import tokens
from vigil.auth.oauth.clients import AuthMethod, ClientType
from vigil.services import Services
from vigil.storage.tables import audit_events


def plain(server: VigilServer) -> httpx.Client:
    return httpx.Client(base_url=server.http_url, timeout=20, follow_redirects=False)


def refused_in_clear(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "https_required"


def basic(client_id: str, secret: str) -> dict[str, str]:
    value = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def client_authenticates(server: VigilServer, c: oauth.Client, secret: str) -> int:
    """The status of a revocation request (RFC 7009) authenticated with `secret`: 200 when
    the client authenticates (an unknown token is not an error), 401 when it does not."""
    form = {"token": "vgl_at_unknown"}
    headers: dict[str, str] = {}
    if c.registration.auth_method is AuthMethod.SECRET_BASIC:
        headers = basic(c.id, secret)
    else:
        form |= {"client_id": c.id, "client_secret": secret}
    with server.client() as http:
        return http.post("/oauth/revoke", data=form, headers=headers).status_code


def exposure_records(services: Services, app_id: str) -> list[str]:
    with services.db.read() as conn:
        rows = conn.execute(
            select(audit_events.c.actor_id).where(
                audit_events.c.action == "oauth_client.secret_exposed",
                audit_events.c.target_id == app_id,
            )
        ).all()
    return [r.actor_id for r in rows]


def test_an_access_token_over_plain_http_is_revoked_with_its_family(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    issued = oauth.tokens(server, c, oauth.user(services, c.cred.dealer.id))
    assert server.client(issued["access_token"]).get("/v1/me").status_code == 200
    with plain(server) as http:
        refused_in_clear(
            http.get("/v1/me", headers={"Authorization": f"Bearer {issued['access_token']}"})
        )
    assert server.client(issued["access_token"]).get("/v1/me").status_code == 401
    refreshed = oauth.refresh(server, c, issued["refresh_token"])
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"


def test_a_refresh_token_posted_over_plain_http_is_revoked_with_its_family(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    issued = oauth.tokens(server, c, oauth.user(services, c.cred.dealer.id))
    form = {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    with plain(server) as http:
        refused_in_clear(http.post("/oauth/token", data=form | {"client_id": c.id}))
    assert server.client(issued["access_token"]).get("/v1/me").status_code == 401
    assert oauth.refresh(server, c, issued["refresh_token"]).status_code == 400


@pytest.mark.parametrize("method", [AuthMethod.SECRET_BASIC, AuthMethod.SECRET_POST])
def test_a_client_secret_over_plain_http_stops_authenticating_until_re_registration(
    server: VigilServer, services: Services, method: AuthMethod
) -> None:
    c = oauth.client(services, auth_method=method)
    assert c.secret is not None
    assert client_authenticates(server, c, c.secret) == 200
    form = {"grant_type": "client_credentials"}
    with plain(server) as http:
        if method is AuthMethod.SECRET_BASIC:
            response = http.post("/oauth/token", data=form, headers=basic(c.id, c.secret))
        else:
            response = http.post(
                "/oauth/token", data=form | {"client_id": c.id, "client_secret": c.secret}
            )
    refused_in_clear(response)
    assert c.secret not in response.text

    assert client_authenticates(server, c, c.secret) == 401
    assert exposure_records(services, c.id) == ["http-guard"]

    # The owner re-registers: a new secret, shown once, authenticates again.
    _, fresh = services.oauth_clients.register(
        factories.OPERATOR,
        c.id,
        client_type=ClientType.CONFIDENTIAL,
        auth_method=method,
        redirect_uris=[oauth.REDIRECT],
    )
    assert fresh is not None
    assert client_authenticates(server, c, fresh) == 200


@pytest.mark.parametrize("method", [AuthMethod.SECRET_BASIC, AuthMethod.SECRET_POST])
def test_a_made_up_secret_over_plain_http_cannot_disable_a_client(
    server: VigilServer, services: Services, method: AuthMethod
) -> None:
    c = oauth.client(services, auth_method=method)
    assert c.secret is not None
    forged = tokens.mint(tokens.Kind.CLIENT_SECRET).value
    with plain(server) as http:
        refused_in_clear(http.post("/oauth/token", data={}, headers=basic(c.id, forged)))
        refused_in_clear(
            http.post("/oauth/revoke", data={"client_id": c.id, "client_secret": forged})
        )
    assert client_authenticates(server, c, c.secret) == 200
    assert exposure_records(services, c.id) == []
