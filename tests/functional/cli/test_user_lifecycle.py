"""S10/S14: `vigil users list`, `disable` and `enable`. Disabling a user ends everything that
acts for them on the next request: access and refresh tokens, grants, portal sessions. Each is
an audited operator action; the listing shows no secret."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from tests.support import factories, oauth
from tests.support.audit_trail import opened_rows
from tests.support.portal import operator, sign_in
from tests.support.server import VigilServer

from vigil.audit.actions import AuditAction
from vigil.services import Services
from vigil.storage.tables import audit_events
from vigil.tenancy.roles import PortalRole


def cli_json(server: VigilServer, *args: str) -> Any:
    out = server.run_cli(*args, "--json")
    return json.loads(out.stdout)


def records(services: Services, action: AuditAction, target: str) -> list[dict[str, Any]]:
    return opened_rows(
        services,
        select(audit_events).where(
            audit_events.c.action == action.value, audit_events.c.target_id == target
        ),
    )


def test_users_list_shows_a_dealers_users_and_no_secret(
    server: VigilServer, services: Services
) -> None:
    dealer, other = factories.dealer(services), factories.dealer(services)
    mine = oauth.user(services, dealer.id)
    theirs = oauth.user(services, other.id)
    out = server.run_cli("users", "list", "--dealer", dealer.id, "--json")
    listed = json.loads(out.stdout)
    assert [u["id"] for u in listed] == [mine.id]
    assert listed[0]["email"] == mine.email
    assert listed[0]["disabled_at"] is None
    assert theirs.id not in out.stdout
    for secret in ("argon2", "password", oauth.PASSWORD):
        assert secret not in out.stdout
    table = server.run_cli("users", "list", "--dealer", dealer.id)  # a narrow terminal wraps ids
    assert "Users" in table.stdout
    assert "argon2" not in table.stdout


def test_disabling_a_user_revokes_tokens_grants_and_sessions_at_once(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    dealer_id = c.cred.dealer.id
    op = operator(services, dealer_id, PortalRole.VIEWER)
    user = services.users.get(op.user_id)
    issued = oauth.tokens(server, c, user)
    bystander = oauth.user(services, dealer_id)
    untouched = oauth.tokens(server, c, bystander)["access_token"]
    with server.client() as portal, server.client(issued["access_token"]) as api:
        sign_in(portal, op)
        assert api.get("/v1/me").status_code == 200
        assert portal.get("/portal/").status_code == 200

        done = cli_json(server, "users", "disable", op.user_id)

        assert done["tokens_revoked"] == 2  # the access token and its refresh token
        assert done["grants_revoked"] == 1
        assert done["sessions_revoked"] >= 1
        assert api.get("/v1/me").status_code == 401
        assert portal.get("/portal/").status_code == 303  # back to sign-in
    refreshed = oauth.refresh(server, c, issued["refresh_token"])
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"
    with server.client() as http:
        page = http.get("/oauth/authorize", params=oauth.authorize_params(c, oauth.pkce_pair()[1]))
        form = oauth.form_of(page.text) | {
            "email": user.email,
            "password": oauth.PASSWORD,
            "decision": "approve",
        }
        assert http.post("/oauth/authorize", data=form).status_code == 200  # sign-in refused
    assert services.users.get(op.user_id).disabled_at is not None
    assert server.client(untouched).get("/v1/me").status_code == 200  # another user is unaffected
    (record,) = records(services, AuditAction.USER_DISABLED, op.user_id)
    assert (record["actor_type"], record["dealer_id"]) == ("operator", dealer_id)
    assert record["details"]["tokens_revoked"] == 2


def test_an_enabled_user_signs_in_again_but_old_tokens_stay_dead(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    user = oauth.user(services, c.cred.dealer.id)
    old = oauth.tokens(server, c, user)["access_token"]
    server.run_cli("users", "disable", user.id)
    out = server.run_cli("users", "enable", user.id)
    assert f"Enabled {user.id}" in out.stdout
    assert server.client(old).get("/v1/me").status_code == 401
    fresh = oauth.tokens(server, c, user)["access_token"]  # consent asked and given again
    assert server.client(fresh).get("/v1/me").status_code == 200
    assert len(records(services, AuditAction.USER_ENABLED, user.id)) == 1


def test_disabling_an_unknown_user_is_a_one_line_error(server: VigilServer) -> None:
    out = server.run_cli("users", "disable", "usr_missing", check=False)
    assert out.returncode != 0
    assert "No user 'usr_missing'" in out.stderr
    assert "Traceback" not in out.stderr
