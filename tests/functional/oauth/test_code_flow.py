"""S10: the authorization code + PKCE flow, driven by Authlib's OAuth2Session (a client we did
not write) over real HTTPS, with the sign-in and consent forms submitted over HTTP."""

from __future__ import annotations

import html
import re

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from sqlalchemy import select
from tests.support import oauth
from tests.support.audit_trail import opened_rows
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.storage.tables import audit_events


def _browser_consent(server: VigilServer, url: str, email: str) -> str:
    """What a user's browser does: open the page, sign in, approve; the redirect it lands on."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
    session.verify = str(server.ca_pem)
    page = session.get(url, allow_redirects=False)
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    form = {
        k: html.unescape(v) for k, v in re.findall(r"name='([^']+)' value='([^']*)'", page.text)
    }
    form |= {"email": email, "password": oauth.PASSWORD, "decision": "approve"}
    base = url.split("/oauth/authorize")[0]
    done = session.post(base + "/oauth/authorize", data=form, allow_redirects=False)
    assert done.status_code == 303, done.text
    return str(done.headers["location"])


def test_metadata_is_valid_rfc8414(server: VigilServer) -> None:
    with server.client() as http:
        document = http.get("/.well-known/oauth-authorization-server").json()
    AuthorizationServerMetadata(document).validate()
    assert document["issuer"] == server.base_url
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "password" not in document["grant_types_supported"]
    assert document["response_types_supported"] == ["code"]


def test_authlib_client_completes_the_code_flow_and_calls_the_api(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    u = oauth.user(services, c.cred.dealer.id)
    session = OAuth2Session(
        client_id=c.id,
        redirect_uri=oauth.REDIRECT,
        scope="sites:read alarms:read",
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    session.trust_env = False
    session.verify = str(server.ca_pem)
    verifier = oauth.pkce_pair()[0]
    url, state = session.create_authorization_url(
        server.base_url + "/oauth/authorize", code_verifier=verifier
    )
    landed = _browser_consent(server, url, u.email)
    assert landed.startswith(oauth.REDIRECT + "?")
    assert f"iss={server.base_url}".replace(":", "%3A").replace("/", "%2F") in landed
    token = session.fetch_token(
        server.base_url + "/oauth/token",
        authorization_response=landed,
        state=state,
        code_verifier=verifier,
    )
    assert token["access_token"].startswith("vgl_at_")
    assert token["refresh_token"].startswith("vgl_rt_")
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert set(token["scope"].split()) == {"sites:read", "alarms:read"}
    me = session.get(server.base_url + "/v1/me").json()
    assert me["credential_kind"] == "oauth_access_token"
    assert me["dealer_id"] == c.cred.dealer.id
    assert session.get(server.base_url + "/v1/sites").status_code == 200
    refreshed = session.refresh_token(server.base_url + "/oauth/token")
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert session.get(server.base_url + "/v1/me").status_code == 200


def test_confidential_client_authenticates_with_its_secret(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services, confidential=True)
    assert c.secret is not None
    assert c.secret.startswith("vgl_cs_")
    u = oauth.user(services, c.cred.dealer.id)
    body = oauth.tokens(server, c, u, client_secret=c.secret)
    assert body["access_token"].startswith("vgl_at_")


def test_confidential_client_without_its_secret_is_invalid_client(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services, confidential=True)
    u = oauth.user(services, c.cred.dealer.id)
    verifier, challenge = oauth.pkce_pair()
    with server.client() as http:
        found = oauth.code_from(oauth.sign_in(http, oauth.authorize_params(c, challenge), u.email))
        response = http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": found["code"],
                "redirect_uri": oauth.REDIRECT,
                "code_verifier": verifier,
                "client_id": c.id,
                "client_secret": "vgl_cs_" + "x" * 60,
            },
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["content-type"].startswith("application/json")


def test_no_secret_of_the_flow_reaches_logs_or_the_audit_trail(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services, confidential=True)
    u = oauth.user(services, c.cred.dealer.id)
    verifier, challenge = oauth.pkce_pair()
    with server.client() as http:
        found = oauth.code_from(oauth.sign_in(http, oauth.authorize_params(c, challenge), u.email))
        tokens = http.post(
            "/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": found["code"],
                "redirect_uri": oauth.REDIRECT,
                "code_verifier": verifier,
                "client_id": c.id,
                "client_secret": c.secret,
            },
        ).json()
        http.post(
            "/oauth/revoke",
            data={"token": tokens["refresh_token"], "client_id": c.id, "client_secret": c.secret},
        )
    secrets = [
        found["code"],
        tokens["access_token"],
        tokens["refresh_token"],
        str(c.secret),
        verifier,
        oauth.PASSWORD,
    ]
    # Details opened: a secret must not be in what the dealer reads either.
    trail = "\n".join(str(r) for r in opened_rows(services, select(audit_events)))
    assert tokens["access_token"].split("_")[2] in trail  # token ids are recorded...
    for secret in secrets:  # ...never the tokens themselves
        assert secret not in trail
        assert secret not in server.log()
