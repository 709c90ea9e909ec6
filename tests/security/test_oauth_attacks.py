"""S10: each attack on the code flow, refresh and revocation is refused, beside the legitimate
case that passes. Driven over real HTTPS against the running server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.support import factories, oauth
from tests.support.audit_trail import opened_rows
from tests.support.server import VigilServer

from vigil.audit.actions import AuditAction
from vigil.core.errors import InvalidInput
from vigil.services import Services
from vigil.storage.tables import audit_events, oauth_tokens


@pytest.fixture
def party(services: Services) -> tuple[oauth.Client, Any]:
    c = oauth.client(services)
    return c, oauth.user(services, c.cred.dealer.id)


def code_request(
    server: VigilServer, c: oauth.Client, email: str, **overrides: str | None
) -> tuple[str, str]:
    verifier, challenge = oauth.pkce_pair()
    with server.client() as http:
        found = oauth.code_from(
            oauth.sign_in(http, oauth.authorize_params(c, challenge, **overrides), email)
        )
    return found["code"], verifier


def redeem(http: httpx.Client, c: oauth.Client, code: str, verifier: str | None, **extra: str):  # type: ignore[no-untyped-def]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": oauth.REDIRECT,
        "client_id": c.id,
    } | extra
    if verifier is not None:
        form["code_verifier"] = verifier
    return http.post("/oauth/token", data=form)


def refresh(http: httpx.Client, c: oauth.Client, token: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": c.id} | extra
    return http.post("/oauth/token", data=form)


def actions(services: Services, action: AuditAction, app_id: str) -> list[Any]:
    with services.db.read() as conn:
        return list(
            conn.execute(
                select(audit_events).where(
                    audit_events.c.action == action.value, audit_events.c.target_id.isnot(None)
                )
            ).mappings()
        )


# --- PKCE ---------------------------------------------------------------------------------


def test_authorization_without_pkce_is_refused_back_to_the_client(
    server: VigilServer, party: tuple[oauth.Client, Any]
) -> None:
    c, _ = party
    with server.client() as http:
        ok = http.get("/oauth/authorize", params=oauth.authorize_params(c, oauth.pkce_pair()[1]))
        assert ok.status_code == 200
        for missing in ({"code_challenge": None}, {"code_challenge_method": "plain"}):
            params = oauth.authorize_params(c, oauth.pkce_pair()[1], **missing)
            refused = http.get("/oauth/authorize", params=params)
            assert refused.status_code == 303
            back = refused.headers["location"]
            assert back.startswith(oauth.REDIRECT + "?")
            assert "error=invalid_request" in back
            assert f"state={params['state']}" in back


def test_token_request_without_verifier_is_invalid_grant(
    server: VigilServer, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    code, verifier = code_request(server, c, u.email)
    with server.client() as http:
        refused = redeem(http, c, code, None)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
        assert redeem(http, c, code, verifier).status_code == 200


def test_wrong_verifier_is_invalid_grant(
    server: VigilServer, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    code, verifier = code_request(server, c, u.email)
    with server.client() as http:
        refused = redeem(http, c, code, oauth.pkce_pair()[0])
        assert refused.json() == {
            "error": "invalid_grant",
            "error_description": "The PKCE code_verifier does not match the code_challenge.",
        }
        assert redeem(http, c, code, verifier).status_code == 200


# --- codes ----------------------------------------------------------------------------------


def test_code_used_twice_fails_and_revokes_the_tokens_from_its_first_use(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    code, verifier = code_request(server, c, u.email)
    with server.client() as http:
        first = redeem(http, c, code, verifier)
        assert first.status_code == 200
        tokens = first.json()
        assert server.client(tokens["access_token"]).get("/v1/me").status_code == 200
        second = redeem(http, c, code, verifier)
        assert second.status_code == 400
        assert second.json()["error"] == "invalid_grant"
        assert server.client(tokens["access_token"]).get("/v1/me").status_code == 401
        assert refresh(http, c, tokens["refresh_token"]).status_code == 400
    reused = actions(services, AuditAction.OAUTH_CODE_REUSED, c.id)
    assert any(
        r["result"] == "security_event" and r["dealer_id"] == c.cred.dealer.id for r in reused
    )


def test_code_of_another_client_is_invalid_grant(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    other = oauth.client(services, factories.credential(services, owner=c.cred.dealer))
    code, verifier = code_request(server, c, u.email)
    with server.client() as http:
        assert redeem(http, other, code, verifier).json()["error"] == "invalid_grant"
        assert redeem(http, c, code, verifier).status_code == 200


def test_code_redeemed_with_another_redirect_uri_is_invalid_grant(
    server: VigilServer, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    code, verifier = code_request(server, c, u.email)
    with server.client() as http:
        wrong = redeem(http, c, code, verifier, redirect_uri=oauth.REDIRECT + "/x")
        assert wrong.json()["error"] == "invalid_grant"
        assert redeem(http, c, code, verifier).status_code == 200


# --- redirect URIs --------------------------------------------------------------------------

VARIANTS = {
    "prefix": "https://app.example/callback/extra",
    "suffix": "https://app.example/callbackx",
    "case": "https://APP.example/callback",
    "path": "https://app.example/other",
    "query": "https://app.example/callback?next=evil",
    "shorter": "https://app.example/callbac",
    "scheme": "http://app.example/callback",
    "host": "https://app.example.evil/callback",
    "port": "https://app.example:8443/callback",
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_redirect_uri_must_match_exactly_and_errors_are_not_redirected(
    variant: str, server: VigilServer, party: tuple[oauth.Client, Any]
) -> None:
    c, _ = party
    challenge = oauth.pkce_pair()[1]
    with server.client() as http:
        assert (
            http.get("/oauth/authorize", params=oauth.authorize_params(c, challenge)).status_code
            == 200
        )
        params = oauth.authorize_params(c, challenge, redirect_uri=VARIANTS[variant])
        refused = http.get("/oauth/authorize", params=params)
    assert refused.status_code == 400
    assert "location" not in refused.headers
    assert "redirect URI is not one this application registered" in refused.text


def test_loopback_redirect_may_vary_only_its_port(server: VigilServer, services: Services) -> None:
    c = oauth.client(services, redirect_uris=["http://127.0.0.1/cb"])
    challenge = oauth.pkce_pair()[1]
    with server.client() as http:
        for uri, status in [
            ("http://127.0.0.1:53121/cb", 200),
            ("http://127.0.0.1/cb", 200),
            ("http://127.0.0.1:53121/cb2", 400),
            ("http://localhost:53121/cb", 400),
            ("http://127.0.0.1:53121/cb?x=1", 400),
        ]:
            params = oauth.authorize_params(c, challenge, redirect_uri=uri)
            assert http.get("/oauth/authorize", params=params).status_code == status, uri


@pytest.mark.parametrize(
    "uri",
    ["http://app.example/cb", "https://app.example/cb#frag", "javascript:alert(1)", "ftp://x/cb"],
)
def test_unsafe_redirect_uris_cannot_be_registered(services: Services, uri: str) -> None:
    with pytest.raises(InvalidInput, match=r"redirect URI|fragment|must be https"):
        oauth.client(services, redirect_uris=[uri])
    assert oauth.client(services, redirect_uris=["https://app.example/cb"]).registration


# --- request shape --------------------------------------------------------------------------


def test_state_is_required(server: VigilServer, party: tuple[oauth.Client, Any]) -> None:
    c, _ = party
    with server.client() as http:
        refused = http.get(
            "/oauth/authorize", params=oauth.authorize_params(c, oauth.pkce_pair()[1], state=None)
        )
    assert refused.status_code == 303
    assert "error=invalid_request" in refused.headers["location"]


def test_implicit_and_password_grants_do_not_exist(
    server: VigilServer, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    with server.client() as http:
        implicit = http.get(
            "/oauth/authorize",
            params=oauth.authorize_params(c, oauth.pkce_pair()[1], response_type="token"),
        )
        assert "error=unsupported_response_type" in implicit.headers["location"]
        password = http.post(
            "/oauth/token",
            data={"grant_type": "password", "username": u.email, "password": oauth.PASSWORD,
                  "client_id": c.id},
        )  # fmt: skip
        assert password.status_code == 400
        assert password.json()["error"] == "unsupported_grant_type"


def test_consent_form_without_csrf_token_is_refused(
    server: VigilServer, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    params = oauth.authorize_params(c, oauth.pkce_pair()[1])
    forged = params | {"email": u.email, "password": oauth.PASSWORD, "decision": "approve"}
    with server.client() as http:
        refused = http.post("/oauth/authorize", data=forged | {"csrf": "0" * 64})
        assert refused.status_code == 403
        assert "location" not in refused.headers
        assert oauth.sign_in(http, params, u.email).status_code == 303


def test_wrong_password_shows_the_form_again_and_is_audited(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    params = oauth.authorize_params(c, oauth.pkce_pair()[1])
    with server.client() as http:
        again = oauth.sign_in(http, params, u.email, password="not the password")
        assert again.status_code == 200
        assert "do not match an account" in again.text
        assert oauth.sign_in(http, params, u.email).status_code == 303
    failed = opened_rows(
        services,
        select(audit_events.c.id, audit_events.c.details).where(
            audit_events.c.action == AuditAction.USER_SIGN_IN_FAILED.value,
            audit_events.c.target_id == u.id,
        ),
    )
    # The record names the user and the app that asked (the portal's sign-in code writes it).
    assert [r["details"]["app_id"] for r in failed] == [c.id]
    assert [r["details"]["front"] for r in failed] == ["oauth_consent"]


def test_user_of_another_dealer_cannot_sign_in_to_the_app(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, _ = party
    stranger = oauth.user(services, factories.dealer(services).id)
    with server.client() as http:
        refused = oauth.sign_in(
            http, oauth.authorize_params(c, oauth.pkce_pair()[1]), stranger.email
        )
    assert refused.status_code == 200
    assert "do not match an account" in refused.text


# --- refresh tokens -------------------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_the_whole_family(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    first = oauth.tokens(server, c, u)
    with server.client() as http:
        rotated = refresh(http, c, first["refresh_token"])
        assert rotated.status_code == 200
        second = rotated.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert server.client(second["access_token"]).get("/v1/me").status_code == 200
        reuse = refresh(http, c, first["refresh_token"])
        assert reuse.status_code == 400
        assert reuse.json()["error"] == "invalid_grant"
        for access in (first["access_token"], second["access_token"]):
            assert server.client(access).get("/v1/me").status_code == 401
        assert refresh(http, c, second["refresh_token"]).status_code == 400
    reused = actions(services, AuditAction.OAUTH_TOKEN_REUSED, c.id)
    assert any(r["target_id"] == _token_id(first["refresh_token"]) for r in reused)


def _token_id(token: str) -> str:
    return "rt_" + token.split("_")[2]


def test_refresh_can_only_narrow_scopes(
    server: VigilServer, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    first = oauth.tokens(server, c, u, scope="sites:read alarms:read")
    with server.client() as http:
        wider = refresh(http, c, first["refresh_token"], scope="sites:read apps:write")
        assert wider.json()["error"] == "invalid_scope"
        narrower = refresh(http, c, first["refresh_token"], scope="alarms:read")
        assert narrower.status_code == 200
        assert narrower.json()["scope"] == "alarms:read"
        again = refresh(http, c, narrower.json()["refresh_token"], scope="sites:read")
        assert again.json()["error"] == "invalid_scope"


def test_refresh_token_of_another_client_is_refused(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    other = oauth.client(services, factories.credential(services, owner=c.cred.dealer))
    first = oauth.tokens(server, c, u)
    with server.client() as http:
        assert refresh(http, other, first["refresh_token"]).json()["error"] == "invalid_grant"
        assert refresh(http, c, first["refresh_token"]).status_code == 200


# --- revocation and introspection -----------------------------------------------------------


def test_revoked_access_token_is_401_on_the_next_request(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    tokens = oauth.tokens(server, c, u)
    with server.client(tokens["access_token"]) as api, server.client() as http:
        assert api.get("/v1/me").status_code == 200
        done = http.post("/oauth/revoke", data={"token": tokens["access_token"], "client_id": c.id})
        assert done.status_code == 200
        refused = api.get("/v1/me")
        assert refused.status_code == 401
        assert "invalid_token" in refused.headers["www-authenticate"]
        assert refresh(http, c, tokens["refresh_token"]).status_code == 200


def test_revoking_a_refresh_token_revokes_its_family(
    server: VigilServer, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    tokens = oauth.tokens(server, c, u)
    with server.client() as http:
        http.post("/oauth/revoke", data={"token": tokens["refresh_token"], "client_id": c.id})
        assert server.client(tokens["access_token"]).get("/v1/me").status_code == 401
        assert refresh(http, c, tokens["refresh_token"]).status_code == 400


def test_another_client_cannot_revoke_a_token(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    other = oauth.client(services, factories.credential(services, owner=c.cred.dealer))
    tokens = oauth.tokens(server, c, u)
    with server.client() as http:
        answer = http.post(
            "/oauth/revoke", data={"token": tokens["access_token"], "client_id": other.id}
        )
        assert answer.status_code == 200  # RFC 7009: no oracle
        assert server.client(tokens["access_token"]).get("/v1/me").status_code == 200


def test_introspection_needs_a_confidential_client_of_the_same_dealer(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    tokens = oauth.tokens(server, c, u)
    rs = oauth.client(
        services, factories.credential(services, owner=c.cred.dealer), confidential=True
    )
    foreign = oauth.client(services, confidential=True)
    with server.client() as http:
        ask = {"token": tokens["access_token"]}
        seen = http.post(
            "/oauth/introspect", data=ask | {"client_id": rs.id, "client_secret": rs.secret}
        )
        assert seen.json()["active"] is True
        assert seen.json()["sub"] == u.id
        assert seen.json()["scope"] == "sites:read"
        public = http.post("/oauth/introspect", data=ask | {"client_id": c.id})
        assert public.status_code == 401
        assert public.json()["error"] == "invalid_client"
        other = http.post(
            "/oauth/introspect",
            data=ask | {"client_id": foreign.id, "client_secret": foreign.secret},
        )
        assert other.json() == {"active": False}


# --- what tokens reach ----------------------------------------------------------------------


def test_site_user_token_reads_its_site_and_gets_404_for_another(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    actor = factories.actor_of(services, c.cred)
    mine = services.sites.create(actor, {"name": "Mine"}).id
    theirs = services.sites.create(actor, {"name": "Neighbour"}).id
    u = oauth.user(services, c.cred.dealer.id, oauth.Role.SITE_USER, [mine])
    tokens = oauth.tokens(server, c, u, scope="sites:read")
    with server.client(tokens["access_token"]) as api:
        assert api.get(f"/v1/sites/{mine}").status_code == 200
        assert api.get(f"/v1/sites/{theirs}").status_code == 404
        listed = {s["id"] for s in api.get("/v1/sites").json()["data"]}
        assert listed == {mine}


def test_site_user_cannot_grant_write_scopes(server: VigilServer, services: Services) -> None:
    c = oauth.client(services)
    site = services.sites.create(factories.actor_of(services, c.cred), {"name": "S"}).id
    u = oauth.user(services, c.cred.dealer.id, oauth.Role.SITE_USER, [site])
    tokens = oauth.tokens(server, c, u, scope="sites:read sites:write")
    assert tokens["scope"] == "sites:read"


def test_dealer_a_token_on_dealer_b_objects_is_404(server: VigilServer, services: Services) -> None:
    a = oauth.client(services)
    b = factories.credential(services)
    b_site = services.sites.create(factories.actor_of(services, b), {"name": "B"}).id
    a_site = services.sites.create(factories.actor_of(services, a.cred), {"name": "A"}).id
    tokens = oauth.tokens(server, a, oauth.user(services, a.cred.dealer.id))
    with server.client(tokens["access_token"]) as api:
        assert api.get(f"/v1/sites/{a_site}").status_code == 200
        assert api.get(f"/v1/sites/{b_site}").status_code == 404
        assert api.get(f"/v1/apps/{b.app.id}").status_code in (403, 404)


def test_narrowing_the_app_narrows_its_tokens_at_once(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    tokens = oauth.tokens(server, c, u, scope="sites:read alarms:read")
    with server.client(tokens["access_token"]) as api:
        assert api.get("/v1/sites").status_code == 200
        services.apps.grant(factories.OPERATOR, c.id, {factories.Scope.ALARMS_READ})
        assert api.get("/v1/sites").status_code == 403
        assert api.get("/v1/me").json()["scopes"] == ["alarms:read"]


# --- grants ---------------------------------------------------------------------------------


def test_user_lists_and_revokes_a_grant_and_its_tokens_die(
    server: VigilServer, services: Services, party: tuple[oauth.Client, Any]
) -> None:
    c, u = party
    first = oauth.tokens(server, c, u)
    second = oauth.tokens(server, c, u)
    with server.client(second["access_token"]) as api:
        listed = api.get("/v1/me/grants").json()["data"]
        assert {g["app_id"] for g in listed} == {c.id}
        assert len(listed) == 2
        with server.client(c.cred.token) as app_key:
            assert app_key.get("/v1/me/grants").status_code == 403
        target = next(
            g["id"] for g in listed if g["id"] != _grant_of(services, second["access_token"])
        )
        assert api.post("/v1/me/grants/grt_not_mine/revoke").status_code == 404
        assert api.post(f"/v1/me/grants/{target}/revoke").status_code == 204
        assert server.client(first["access_token"]).get("/v1/me").status_code == 401
        assert api.get("/v1/me").status_code == 200


def _grant_of(services: Services, access_token: str) -> str:
    with services.db.read() as conn:
        return str(
            conn.execute(
                select(oauth_tokens.c.grant_id).where(
                    oauth_tokens.c.id == "at_" + access_token.split("_")[2]
                )
            ).scalar_one()
        )
