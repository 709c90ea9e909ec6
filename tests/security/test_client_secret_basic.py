"""S10: `client_secret_basic` (RFC 6749 section 2.3.1). A confidential client registered for it
sends `Authorization: Basic base64(id:secret)` to the token, revocation and introspection
endpoints; the edge leaves that header to the OAuth server there and refuses Basic everywhere
else. Authlib's own OAuth2Client drives the legitimate path over real HTTPS; each attack beside
it is a 401 `invalid_client` with a `WWW-Authenticate: Basic` challenge."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from sqlalchemy import select
from tests.support import oauth
from tests.support.server import VigilServer

from vigil.audit.actions import AuditAction
from vigil.services import Services
from vigil.storage.tables import audit_events

BASIC = oauth.AuthMethod.SECRET_BASIC


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": "Basic " + raw}


def code_grant(server: VigilServer, c: oauth.Client, services: Services) -> dict[str, str]:
    """A fresh code for `c` and the rest of a token request, without client authentication."""
    u = oauth.user(services, c.cred.dealer.id)
    verifier, challenge = oauth.pkce_pair()
    with server.client() as http:
        found = oauth.code_from(oauth.sign_in(http, oauth.authorize_params(c, challenge), u.email))
    return {
        "grant_type": "authorization_code",
        "code": found["code"],
        "redirect_uri": oauth.REDIRECT,
        "code_verifier": verifier,
    }


def post(
    server: VigilServer, path: str, form: dict[str, str], headers: dict[str, str]
) -> httpx.Response:
    with server.client(headers=headers) as http:
        return http.post(path, data=form)


def assert_invalid_client(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert response.headers["cache-control"] == "no-store"


def test_authlib_client_uses_basic_for_token_refresh_revocation_and_introspection(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services, auth_method=BASIC)
    assert c.secret is not None
    u = oauth.user(services, c.cred.dealer.id)
    session = OAuth2Client(
        client_id=c.id,
        client_secret=c.secret,
        token_endpoint_auth_method="client_secret_basic",
        revocation_endpoint_auth_method="client_secret_basic",
        redirect_uri=oauth.REDIRECT,
        scope="sites:read",
        code_challenge_method="S256",
        verify=server.ssl_context(),
        trust_env=False,
    )
    verifier = oauth.pkce_pair()[0]
    url, state = session.create_authorization_url(
        server.base_url + "/oauth/authorize", code_verifier=verifier
    )
    landed = oauth.consent_redirect(server, url, u.email)
    token: dict[str, Any] = session.fetch_token(
        server.base_url + "/oauth/token",
        authorization_response=landed,
        state=state,
        code_verifier=verifier,
    )
    assert token["access_token"].startswith("vgl_at_")
    assert session.get(server.base_url + "/v1/me").status_code == 200
    refreshed = session.refresh_token(server.base_url + "/oauth/token")
    assert refreshed["refresh_token"] != token["refresh_token"]
    seen = session.introspect_token(
        server.base_url + "/oauth/introspect", token=refreshed["access_token"]
    )
    assert seen.status_code == 200
    assert seen.json()["active"] is True
    assert seen.json()["client_id"] == c.id
    done = session.revoke_token(server.base_url + "/oauth/revoke", token=refreshed["refresh_token"])
    assert done.status_code == 200
    with server.client(refreshed["access_token"]) as api:
        assert api.get("/v1/me").status_code == 401  # the family went with the refresh token
    session.close()


def test_metadata_advertises_basic_for_every_authenticated_endpoint(server: VigilServer) -> None:
    with server.client() as http:
        document = http.get("/.well-known/oauth-authorization-server").json()
    for endpoint in ("token", "revocation", "introspection"):
        assert "client_secret_basic" in document[f"{endpoint}_endpoint_auth_methods_supported"]


def test_wrong_secret_is_invalid_client(server: VigilServer, services: Services) -> None:
    c = oauth.client(services, auth_method=BASIC)
    form = code_grant(server, c, services)
    wrong = oauth.client(services, auth_method=BASIC).secret  # well-formed, not this client's
    assert_invalid_client(post(server, "/oauth/token", form, basic(c.id, str(wrong))))
    assert post(server, "/oauth/token", form, basic(c.id, str(c.secret))).status_code == 200


def test_secret_of_another_client_is_invalid_client(
    server: VigilServer, services: Services
) -> None:
    victim = oauth.client(services, auth_method=BASIC)
    attacker = oauth.client(services, auth_method=BASIC)
    form = code_grant(server, victim, services)
    # The attacker's own secret under the victim's id, and the victim's id in the body under
    # the attacker's Basic credentials: neither authenticates as the victim.
    assert_invalid_client(
        post(server, "/oauth/token", form, basic(victim.id, str(attacker.secret)))
    )
    assert_invalid_client(
        post(
            server,
            "/oauth/token",
            form | {"client_id": victim.id},
            basic(attacker.id, str(attacker.secret)),
        )
    )
    assert (
        post(server, "/oauth/token", form, basic(victim.id, str(victim.secret))).status_code == 200
    )


@pytest.mark.parametrize(
    "value",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon-here").decode(),
        "Basic " + base64.b64encode(b":secret-without-id").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic " + "QUFB" * 200,
    ],
)
def test_malformed_basic_credentials_are_invalid_client(
    server: VigilServer, services: Services, value: str
) -> None:
    c = oauth.client(services, auth_method=BASIC)
    form = code_grant(server, c, services)
    assert_invalid_client(post(server, "/oauth/token", form, {"Authorization": value}))
    assert post(server, "/oauth/token", form, basic(c.id, str(c.secret))).status_code == 200


def test_basic_and_body_credentials_together_are_invalid_client(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services, auth_method=BASIC)
    secret = str(c.secret)
    form = code_grant(server, c, services)
    both = form | {"client_id": c.id, "client_secret": secret}
    assert_invalid_client(post(server, "/oauth/token", both, basic(c.id, secret)))
    # A matching client_id in the body is allowed beside Basic (RFC 6749 section 3.2.1).
    alongside = post(server, "/oauth/token", form | {"client_id": c.id}, basic(c.id, secret))
    assert alongside.status_code == 200, alongside.text


def test_a_client_must_use_the_method_it_registered(
    server: VigilServer, services: Services
) -> None:
    basic_client = oauth.client(services, auth_method=BASIC)
    post_client = oauth.client(services, confidential=True)  # client_secret_post
    public = oauth.client(services)
    form = code_grant(server, basic_client, services)
    in_body = form | {"client_id": basic_client.id, "client_secret": str(basic_client.secret)}
    assert_invalid_client(post(server, "/oauth/token", in_body, {}))
    form = code_grant(server, post_client, services)
    assert_invalid_client(
        post(server, "/oauth/token", form, basic(post_client.id, str(post_client.secret)))
    )
    ok = post(
        server,
        "/oauth/token",
        form | {"client_id": post_client.id, "client_secret": str(post_client.secret)},
        {},
    )
    assert ok.status_code == 200, ok.text
    form = code_grant(server, public, services)
    made_up = "vgl_cs_" + "x" * 60
    assert_invalid_client(post(server, "/oauth/token", form, basic(public.id, made_up)))


def test_revocation_and_introspection_refuse_bad_basic_credentials(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services, auth_method=BASIC)
    other = oauth.client(services, auth_method=BASIC)
    issued = post(
        server, "/oauth/token", code_grant(server, c, services), basic(c.id, str(c.secret))
    )
    access = issued.json()["access_token"]
    for path in ("/oauth/introspect", "/oauth/revoke"):
        assert_invalid_client(post(server, path, {"token": access}, basic(c.id, str(other.secret))))
    with server.client(access) as api:
        assert api.get("/v1/me").status_code == 200  # the refused revocation changed nothing


def test_refused_basic_authentication_is_audited_under_the_claimed_client(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services, auth_method=BASIC)
    form = code_grant(server, c, services)
    refused = post(server, "/oauth/token", form, basic(c.id, "vgl_cs_" + "y" * 60))
    assert refused.status_code == 401
    with services.db.read() as conn:
        row = (
            conn.execute(
                select(audit_events).where(
                    audit_events.c.request_id == refused.headers["x-request-id"],
                    audit_events.c.action == AuditAction.OAUTH_TOKEN_REFUSED.value,
                )
            )
            .mappings()
            .one()
        )
    assert (row["actor_id"], row["result"]) == (c.id, "invalid_client")


@pytest.mark.parametrize("path", ["/v1/me", "/v1/sites", "/oauth/authorize"])
def test_basic_is_refused_everywhere_else_with_a_problem_document(
    server: VigilServer, services: Services, path: str
) -> None:
    c = oauth.client(services, auth_method=BASIC)
    with server.client(headers=basic(c.id, str(c.secret))) as http:
        response = http.get(path)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "Basic is only for OAuth client authentication" in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert str(c.secret) not in response.text
