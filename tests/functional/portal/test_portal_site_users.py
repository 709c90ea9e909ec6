"""Site users in the portal (issue 8 §2): they sign in only to see and revoke their connected
apps. They land there, every other portal page is 403 for them, the navigation offers nothing
else, and their sign-in has the same lockout and audit as an operator's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from tests.functional.portal.test_portal_roles import portal_routes
from tests.support import factories, oauth
from tests.support.portal import PASSWORD, csrf_of, operator, sign_in, submit_sign_in
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.core.errors import InvalidInput, NotFound
from vigil.services import Services
from vigil.storage.tables import audit_events, oauth_grants
from vigil.tenancy.operators import MAX_FAILURES
from vigil.tenancy.roles import PortalRole
from vigil.tenancy.users import Role, User

SITE_USER_PAGES = {
    ("GET", "/portal/connected-apps"),
    ("GET", "/portal/account"),
    ("POST", "/portal/account/grants/{grant_id}/revoke"),
    ("POST", "/portal/sign-out"),
    ("POST", "/portal/sign-out-everywhere"),
}


@dataclass(frozen=True)
class World:
    dealer_id: str
    client: oauth.Client
    customer: User
    other_customer: User


def _customer(services: Services, dealer_id: str, site_id: str) -> User:
    return oauth.user(services, dealer_id, Role.SITE_USER, [site_id])


@pytest.fixture(scope="module")
def world(services: Services) -> World:
    dealer = factories.dealer(services)
    cred = factories.credential(services, owner=dealer, environment=Environment.PRODUCTION)
    site_id = factories.site(services, factories.actor_of(services, cred))
    return World(
        dealer.id,
        oauth.client(services, cred),
        _customer(services, dealer.id, site_id),
        _customer(services, dealer.id, site_id),
    )


def consent(server: VigilServer, c: oauth.Client, email: str) -> None:
    """The site user allows the app through the OAuth consent page."""
    _verifier, challenge = oauth.pkce_pair()
    with server.client() as http:
        oauth.code_from(oauth.sign_in(http, oauth.authorize_params(c, challenge), email))


@pytest.fixture(scope="module")
def customer(server: VigilServer, world: World) -> Iterator[httpx.Client]:
    consent(server, world.client, world.customer.email)
    with server.client() as c:
        answer = submit_sign_in(c, world.dealer_id, world.customer.email, PASSWORD)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/portal/connected-apps"
        yield c


def test_a_site_user_lands_on_connected_apps_and_sees_only_that(
    customer: httpx.Client, world: World
) -> None:
    page = customer.get("/portal/connected-apps")
    assert page.status_code == 200
    assert world.client.cred.app.name in page.text
    assert "sites:read" in page.text
    nav = page.text.split('<nav aria-label="Main">')[1].split("</nav>")[0]
    assert 'href="/portal/connected-apps"' in nav
    for hidden in ("/portal/settings", 'href="/portal/"', "/portal/audit", "/portal/sites"):
        assert hidden not in nav
    assert 'action="/portal/environment"' not in page.text


def test_every_other_portal_page_is_403_for_a_site_user(
    customer: httpx.Client, services: Services
) -> None:
    csrf = csrf_of(customer.get("/portal/connected-apps").text)
    refused = [(m, p) for m, p, _ in portal_routes(services) if (m, p) not in SITE_USER_PAGES]
    assert ("GET", "/portal/") in refused
    assert ("POST", "/portal/environment") in refused
    for method, path in refused:
        answer = customer.request(method, path, data={"csrf": csrf, "name": "x"})
        assert answer.status_code == 403, (method, path)
    assert customer.get("/portal/connected-apps").status_code == 200  # still signed in


def test_a_site_user_revokes_a_connected_app_but_not_another_users_grant(
    server: VigilServer, customer: httpx.Client, world: World, services: Services
) -> None:
    consent(server, world.client, world.other_customer.email)
    with services.db.read() as conn:
        grants = {
            row.user_id: row.id
            for row in conn.execute(
                select(oauth_grants.c.id, oauth_grants.c.user_id).where(
                    oauth_grants.c.revoked_at.is_(None)
                )
            )
        }
    csrf = csrf_of(customer.get("/portal/connected-apps").text)
    theirs = grants[world.other_customer.id]
    stolen = customer.post(f"/portal/account/grants/{theirs}/revoke", data={"csrf": csrf})
    assert stolen.status_code == 404
    forged = customer.post(
        f"/portal/account/grants/{grants[world.customer.id]}/revoke", data={"csrf": "forged"}
    )
    assert forged.status_code == 403  # not the session's CSRF token
    mine = customer.post(
        f"/portal/account/grants/{grants[world.customer.id]}/revoke", data={"csrf": csrf}
    )
    assert mine.status_code == 303
    assert "No connected apps." in customer.get("/portal/connected-apps").text
    with services.db.read() as conn:
        record = (
            conn.execute(
                select(audit_events).where(
                    audit_events.c.action == "oauth_grant.revoked",
                    audit_events.c.target_id == grants[world.customer.id],
                )
            )
            .mappings()
            .one()
        )
        still = conn.execute(
            select(oauth_grants.c.revoked_at).where(oauth_grants.c.id == theirs)
        ).scalar()
    assert (record["actor_type"], record["actor_id"]) == ("user", world.customer.id)
    assert still is None


def test_a_site_user_is_locked_out_like_an_operator(
    server: VigilServer, world: World, services: Services
) -> None:
    site_id = next(iter(world.customer.site_ids or ()))
    target = _customer(services, world.dealer_id, site_id)
    with server.client() as c:
        for _ in range(MAX_FAILURES):
            assert submit_sign_in(c, world.dealer_id, target.email, "wrong").status_code == 401
        assert submit_sign_in(c, world.dealer_id, target.email, PASSWORD).status_code == 401
    with services.db.read() as conn:
        actions = [
            r.action
            for r in conn.execute(
                select(audit_events.c.action).where(audit_events.c.target_id == target.id)
            )
        ]
    assert "user.locked_out" in actions
    assert actions.count("user.sign_in_failed") >= MAX_FAILURES


def test_site_users_are_not_operators_to_manage(
    server: VigilServer, world: World, services: Services
) -> None:
    owner = operator(services, world.dealer_id, PortalRole.OWNER)
    with server.client() as c:
        sign_in(c, owner)
        team = c.get("/portal/users")
        assert world.customer.email not in team.text
        assert 'value="site_user"' not in team.text
        csrf = csrf_of(team.text)
        for action, data in (
            ("role", {"role": "operator"}),
            ("reset-mfa", {}),
            ("reset-password", {"password": "another long password"}),
        ):
            answer = c.post(
                f"/portal/users/{world.customer.id}/{action}", data={"csrf": csrf, **data}
            )
            assert answer.status_code == 404, action
        made = c.post(
            f"/portal/users/{owner.user_id}/role", data={"csrf": csrf, "role": "site_user"}
        )
        assert made.status_code == 422
    with pytest.raises(NotFound):
        services.operators.set_role(factories.OPERATOR, world.customer.id, PortalRole.VIEWER)
    with pytest.raises(InvalidInput):
        services.operators.set_role(factories.OPERATOR, owner.user_id, PortalRole.SITE_USER)
