"""The portal's security properties, over real TLS against `vigil serve` (issue 8)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select, update
from tests.support import factories
from tests.support.audit_trail import opened_rows
from tests.support.portal import PASSWORD, Operator, csrf_of, operator, sign_in, submit_sign_in
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.portal.pages import CSP
from vigil.services import Services
from vigil.storage.tables import audit_events, operator_accounts
from vigil.tenancy.operators import MAX_FAILURES
from vigil.tenancy.roles import PortalRole

COOKIE = "__Host-vigil_session"


@dataclass(frozen=True)
class World:
    owner: Operator
    viewer: Operator
    foreign_app_id: str
    foreign_key_id: str
    own_app_id: str


@pytest.fixture(scope="module")
def world(services: Services) -> World:
    mine, theirs = factories.dealer(services), factories.dealer(services)
    foreign = factories.credential(services, owner=theirs, environment=Environment.PRODUCTION)
    own = factories.app(services, mine, Environment.PRODUCTION)
    return World(
        owner=operator(services, mine.id, PortalRole.OWNER),
        viewer=operator(services, mine.id, PortalRole.VIEWER),
        foreign_app_id=foreign.app.id,
        foreign_key_id=foreign.key_id,
        own_app_id=own.id,
    )


@pytest.fixture
def client(server: VigilServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def owner_client(server: VigilServer, world: World) -> Iterator[httpx.Client]:
    with server.client() as c:
        sign_in(c, world.owner)
        yield c


@pytest.fixture(scope="module")
def viewer_client(server: VigilServer, world: World) -> Iterator[httpx.Client]:
    with server.client() as c:
        sign_in(c, world.viewer)
        yield c


def set_cookie_for(response: httpx.Response, name: str) -> str:
    found = [v for v in response.headers.get_list("set-cookie") if v.startswith(name + "=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def test_logged_out_pages_redirect_to_sign_in(client: httpx.Client) -> None:
    for path in ("/portal/", "/portal/apps", "/portal/audit", "/portal/account"):
        answer = client.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/portal/sign-in?next={path}"


def test_session_cookie_flags_are_exact(server: VigilServer, world: World) -> None:
    with server.client() as c:
        answer = submit_sign_in(c, world.viewer.dealer_id, world.viewer.email, PASSWORD)
        cookie = set_cookie_for(answer, COOKIE)
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    assert len(name_value) > len(COOKIE) + 40
    assert attributes == ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"]  # no Domain, no expiry


def test_session_id_changes_at_sign_in(server: VigilServer, world: World) -> None:
    planted = "attacker-chosen-session-id-0123456789abcdefghijklmnop"
    with server.client() as c:
        c.cookies.set(COOKIE, planted, domain="localhost")
        answer = submit_sign_in(c, world.viewer.dealer_id, world.viewer.email, PASSWORD)
        issued = set_cookie_for(answer, COOKIE).split(";")[0].split("=", 1)[1]
        assert issued != planted
        c.cookies.clear()
        c.cookies.set(COOKIE, planted, domain="localhost")
        assert c.get("/portal/").status_code == 303  # the planted id is worth nothing


def test_password_then_totp_issues_a_second_new_id(server: VigilServer, services: Services) -> None:
    owner = operator(services, factories.dealer(services).id, PortalRole.OWNER)
    with server.client() as c:
        first = submit_sign_in(c, owner.dealer_id, owner.email, PASSWORD)
        pending = set_cookie_for(first, COOKIE).split(";")[0]
        assert c.get("/portal/").status_code == 303  # password alone opens nothing
        page = c.get("/portal/sign-in/totp")
        code = owner.code()
        done = c.post("/portal/sign-in/totp", data={"code": code, "csrf": csrf_of(page.text)})
        assert done.status_code == 303
        assert set_cookie_for(done, COOKIE).split(";")[0] != pending
        assert c.get("/portal/").status_code == 200


def test_wrong_totp_is_refused(server: VigilServer, services: Services) -> None:
    owner = operator(services, factories.dealer(services).id, PortalRole.OWNER)
    with server.client() as c:
        submit_sign_in(c, owner.dealer_id, owner.email, PASSWORD)
        page = c.get("/portal/sign-in/totp")
        answer = c.post("/portal/sign-in/totp", data={"code": "000000", "csrf": csrf_of(page.text)})
        assert answer.status_code == 401
        assert c.get("/portal/").status_code == 303


def test_a_totp_seed_that_does_not_open_fails_like_a_wrong_code_and_counts(
    server: VigilServer, services: Services
) -> None:
    """The sealed seed corrupted in the database (S6): the right code is refused with a clear
    page, not a 500; each try is audited as a security event and counts toward the lockout."""
    owner = operator(services, factories.dealer(services).id, PortalRole.OWNER)
    column = operator_accounts.c.totp_secret_sealed
    where = operator_accounts.c.user_id == owner.user_id
    with services.db.transaction() as conn:
        sealed = bytes(conn.execute(select(column).where(where)).scalar_one())
        flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
        conn.execute(update(operator_accounts).where(where).values(totp_secret_sealed=flipped))
    with server.client() as c:
        assert submit_sign_in(c, owner.dealer_id, owner.email, PASSWORD).status_code == 303
        answers = []
        for _ in range(MAX_FAILURES):
            page = c.get("/portal/sign-in/totp")
            answers.append(
                c.post(
                    "/portal/sign-in/totp", data={"code": owner.code(), "csrf": csrf_of(page.text)}
                )
            )
        assert [a.status_code for a in answers] == [401] * MAX_FAILURES
        assert "cannot be checked" in answers[0].text
        assert "recovery code" in answers[0].text
        assert c.get("/portal/").status_code == 303
    records = opened_rows(
        services,
        select(
            audit_events.c.id, audit_events.c.action, audit_events.c.result, audit_events.c.details
        )
        .where(audit_events.c.target_id == owner.user_id)
        .order_by(audit_events.c.seq),
    )
    with services.db.read() as conn:
        locked_until = conn.execute(
            select(operator_accounts.c.locked_until).where(where)
        ).scalar_one()
    refused = [r for r in records if r["action"] == "user.sign_in_failed"]
    assert len(refused) == MAX_FAILURES - 1
    assert {(r["result"], r["details"]["reason"]) for r in refused} == {
        ("security_event", "second_factor_unavailable")
    }
    assert records[-1]["action"] == "user.locked_out"  # the fifth try locked the account
    assert locked_until is not None

    # Once repaired, the account is still locked for a while: the failures counted.
    with services.db.transaction() as conn:
        conn.execute(update(operator_accounts).where(where).values(totp_secret_sealed=sealed))
    account = services.operators.account(owner.user_id)
    verdict = services.operators.second_factor(factories.OPERATOR, account, owner.code())
    assert not verdict.ok
    assert not verdict.unavailable


def test_form_without_or_with_wrong_csrf_is_refused(
    owner_client: httpx.Client, world: World
) -> None:
    for data in ({"name": "x", "scopes": "sites:read"}, {"name": "x", "csrf": "forged"}):
        answer = owner_client.post("/portal/apps", data={**data, "scopes": "sites:read"})
        assert answer.status_code == 403
        assert "did not come from the portal" in answer.text
    page = owner_client.get("/portal/apps")
    ok = owner_client.post(
        "/portal/apps",
        data={"name": "Via form", "scopes": "sites:read", "csrf": csrf_of(page.text)},
    )
    assert ok.status_code == 303


def test_sign_in_form_needs_its_csrf_token(client: httpx.Client, world: World) -> None:
    client.get("/portal/sign-in")
    answer = client.post(
        "/portal/sign-in",
        data={"dealer": world.viewer.dealer_id, "email": world.viewer.email, "password": PASSWORD},
    )
    assert answer.status_code == 403
    assert COOKIE not in answer.headers.get("set-cookie", "")


def test_every_page_carries_the_security_headers(
    owner_client: httpx.Client, client: httpx.Client, world: World
) -> None:
    pages = [
        (client, "/portal/sign-in"),
        (owner_client, "/portal/"),
        (owner_client, "/portal/apps"),
        (owner_client, f"/portal/apps/{world.own_app_id}"),
        (owner_client, "/portal/audit"),
        (owner_client, "/portal/audit/verify"),
        (owner_client, "/portal/sites"),
        (owner_client, "/portal/account"),
        (owner_client, "/portal/settings"),
        (owner_client, "/portal/users"),
        (owner_client, f"/portal/apps/{world.foreign_app_id}"),  # error pages too
    ]
    for c, path in pages:
        answer = c.get(path)
        assert answer.status_code in (200, 404), path
        h = answer.headers
        assert h["content-security-policy"] == CSP, path
        assert "unsafe-inline" not in h["content-security-policy"]
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "same-origin"
        assert h["strict-transport-security"] == "max-age=63072000; includeSubDomains; preload"
        assert h["cache-control"] == "no-store"


def test_viewer_cannot_reach_key_pages_nor_see_their_links(
    viewer_client: httpx.Client, world: World
) -> None:
    home = viewer_client.get("/portal/")
    assert home.status_code == 200
    assert "/portal/apps" not in home.text
    for path in ("/portal/apps", f"/portal/apps/{world.own_app_id}"):
        assert viewer_client.get(path).status_code == 403
    page = viewer_client.get("/portal/account")
    answer = viewer_client.post(
        f"/portal/apps/{world.own_app_id}/keys", data={"csrf": csrf_of(page.text)}
    )
    assert answer.status_code == 403


def test_another_dealers_ids_are_not_found(owner_client: httpx.Client, world: World) -> None:
    assert owner_client.get(f"/portal/apps/{world.foreign_app_id}").status_code == 404
    csrf = csrf_of(owner_client.get("/portal/apps").text)
    for path in (
        f"/portal/keys/{world.foreign_key_id}/revoke",
        f"/portal/apps/{world.foreign_app_id}/keys/rotate",
    ):
        assert owner_client.post(path, data={"csrf": csrf}).status_code == 404


def test_repeated_failures_lock_the_account(
    server: VigilServer, services: Services, world: World
) -> None:
    dealer = factories.dealer(services)
    victim = operator(services, dealer.id, PortalRole.OPERATOR)
    with server.client() as c:
        for _ in range(MAX_FAILURES):
            assert submit_sign_in(c, dealer.id, victim.email, "wrong password!!").status_code == 401
        locked = submit_sign_in(c, dealer.id, victim.email, PASSWORD)
        assert locked.status_code == 401  # even the right password, for a while
        assert "locked" in locked.text
    with services.db.read() as conn:
        from sqlalchemy import select

        from vigil.storage.tables import audit_events

        actions = [
            r.action
            for r in conn.execute(
                select(audit_events.c.action).where(audit_events.c.target_id == victim.user_id)
            )
        ]
    assert actions.count("user.sign_in_failed") >= MAX_FAILURES
    assert "user.locked_out" in actions


def test_sign_out_everywhere_ends_every_session(server: VigilServer, services: Services) -> None:
    dealer = factories.dealer(services)
    op = operator(services, dealer.id, PortalRole.VIEWER)
    with server.client() as one, server.client() as two:
        sign_in(one, op)
        sign_in(two, op)
        page = one.get("/portal/account")
        answer = one.post("/portal/sign-out-everywhere", data={"csrf": csrf_of(page.text)})
        assert answer.status_code == 303
        assert two.get("/portal/").status_code == 303
        assert one.get("/portal/").status_code == 303


def test_only_owners_and_admins_manage_users(
    owner_client: httpx.Client, viewer_client: httpx.Client, world: World, services: Services
) -> None:
    assert "/portal/users" not in viewer_client.get("/portal/").text
    assert viewer_client.get("/portal/users").status_code == 403
    csrf = csrf_of(viewer_client.get("/portal/account").text)
    refused = viewer_client.post(
        f"/portal/users/{world.viewer.user_id}/role", data={"csrf": csrf, "role": "owner"}
    )
    assert refused.status_code == 403
    assert services.operators.account(world.viewer.user_id).role is PortalRole.VIEWER

    page = owner_client.get("/portal/users")
    assert world.viewer.email in page.text
    stranger = operator(services, factories.dealer(services).id, PortalRole.VIEWER)
    foreign = owner_client.post(
        f"/portal/users/{stranger.user_id}/reset-mfa", data={"csrf": csrf_of(page.text)}
    )
    assert foreign.status_code == 404


def test_admin_resets_a_password_and_the_old_sessions_end(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    admin = operator(services, dealer.id, PortalRole.ADMIN)
    member = operator(services, dealer.id, PortalRole.OPERATOR)
    with server.client() as a, server.client() as m:
        sign_in(a, admin)
        sign_in(m, member)
        page = a.get("/portal/users")
        answer = a.post(
            f"/portal/users/{member.user_id}/reset-password",
            data={"csrf": csrf_of(page.text), "password": "a brand new passphrase"},
        )
        assert answer.status_code == 200
        assert m.get("/portal/").status_code == 303
    with server.client() as m:
        fresh = submit_sign_in(m, dealer.id, member.email, "a brand new passphrase")
        assert fresh.status_code == 303


def test_plain_http_redirects_the_portal_and_refuses_a_session_cookie(
    server: VigilServer,
) -> None:
    with httpx.Client(base_url=server.http_url) as plain:
        answer = plain.get("/portal/apps")
        assert answer.status_code == 308
        assert answer.headers["location"] == f"https://localhost:{server.https_port}/portal/apps"
        carrying = plain.get("/portal/", headers={"cookie": f"{COOKIE}=stolen"})
        assert carrying.status_code == 403


def test_oauth_consent_needs_the_totp_code_of_an_account_that_has_one(
    server: VigilServer, services: Services
) -> None:
    from tests.support import oauth

    dealer = factories.dealer(services)
    cred = factories.credential(services, owner=dealer, environment=Environment.PRODUCTION)
    client_app = oauth.client(services, cred)
    owner = operator(services, dealer.id, PortalRole.OWNER)
    _verifier, challenge = oauth.pkce_pair()
    params = oauth.authorize_params(client_app, challenge)
    with server.client() as http:
        refused = oauth.sign_in(http, params, owner.email)  # password only
        assert refused.status_code == 200
        assert "authenticator" in refused.text
        page = http.get("/oauth/authorize", params=params)
        form = oauth.form_of(page.text) | {
            "email": owner.email,
            "password": PASSWORD,
            "decision": "approve",
            "code": owner.code(),
        }
        granted = http.post("/oauth/authorize", data=form)
    assert "code" in oauth.code_from(granted)
