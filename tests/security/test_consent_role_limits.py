"""An operator cannot hand an app more than their portal role allows them to do themselves:
consent and every refresh are bounded by the role (S10, S12)."""

from __future__ import annotations

from tests.support import factories, oauth
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.tenancy.roles import PortalRole


def test_a_viewer_grants_only_reads_and_an_operator_alarm_handling(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    asked = "sites:read sites:write alarms:read alarms:write"
    viewer = oauth.user(services, c.cred.dealer.id, portal_role=PortalRole.VIEWER)
    granted = oauth.tokens(server, c, viewer, scope=asked)
    assert granted["scope"] == "alarms:read sites:read"
    with server.client(granted["access_token"]) as api:
        assert api.get("/v1/sites").status_code == 200
        assert api.post("/v1/sites", json={"name": "Not mine to make"}).status_code == 403
    operator = oauth.user(services, c.cred.dealer.id, portal_role=PortalRole.OPERATOR)
    assert oauth.tokens(server, c, operator, scope=asked)["scope"] == (
        "alarms:read alarms:write sites:read"
    )


def test_an_operator_granting_nothing_their_role_allows_is_refused(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    viewer = oauth.user(services, c.cred.dealer.id, portal_role=PortalRole.VIEWER)
    _verifier, challenge = oauth.pkce_pair()
    with server.client() as http:
        params = oauth.authorize_params(c, challenge, scope="sites:write")
        refused = oauth.sign_in(http, params, viewer.email)
    assert refused.status_code == 303
    assert "error=access_denied" in refused.headers["location"]


def test_a_refresh_after_a_demotion_carries_only_the_new_roles_scopes(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    person = oauth.user(services, c.cred.dealer.id, portal_role=PortalRole.OPERATOR)
    first = oauth.tokens(server, c, person, scope="sites:read alarms:write")
    assert first["scope"] == "alarms:write sites:read"
    services.operators.set_role(factories.OPERATOR, person.id, PortalRole.VIEWER)
    with server.client() as http:
        renewed = http.post(
            "/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first["refresh_token"],
                "client_id": c.id,
            },
        )
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["scope"] == "sites:read"
