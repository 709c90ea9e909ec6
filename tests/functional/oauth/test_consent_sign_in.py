"""The OAuth consent sign-in follows the portal's sign-in rules (issues 6 and 8), each attack
beside the legitimate path: TOTP where the portal requires it and whenever it is set up, one
lockout counter for both forms (a lockout at one holds at the other), one per-address throttle,
and every failure audited with where it happened."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from tests.support import factories, oauth
from tests.support.audit_trail import opened_rows
from tests.support.portal import PASSWORD, operator, submit_sign_in
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.services import Services
from vigil.storage.tables import audit_events, oauth_grants
from vigil.tenancy.operators import MAX_FAILURES
from vigil.tenancy.roles import PortalRole


def _consent(
    server: VigilServer, c: oauth.Client, email: str, password: str = PASSWORD, code: str = ""
) -> httpx.Response:
    _verifier, challenge = oauth.pkce_pair()
    with server.client() as http:
        return oauth.sign_in(http, oauth.authorize_params(c, challenge), email, password, code)


def _client(services: Services, dealer_id: str) -> oauth.Client:
    dealer = services.dealers.get(dealer_id)
    cred = factories.credential(services, owner=dealer, environment=Environment.PRODUCTION)
    return oauth.client(services, cred)


def _grants(services: Services, user_id: str) -> int:
    with services.db.read() as conn:
        query = select(func.count()).select_from(oauth_grants)
        return int(conn.execute(query.where(oauth_grants.c.user_id == user_id)).scalar_one())


def _failures(services: Services, user_id: str) -> list[dict[str, object]]:
    rows = opened_rows(
        services,
        select(audit_events.c.id, audit_events.c.action, audit_events.c.details)
        .where(
            audit_events.c.target_id == user_id,
            audit_events.c.action.in_(["user.sign_in_failed", "user.locked_out"]),
        )
        .order_by(audit_events.c.occurred_at, audit_events.c.seq),
    )
    return [{"action": r["action"], **dict(r["details"] or {})} for r in rows]


def test_owner_without_a_second_factor_cannot_consent_with_a_password_alone(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    owner = operator(services, dealer.id, PortalRole.OWNER, mfa=False)
    c = _client(services, dealer.id)
    refused = _consent(server, c, owner.email)
    assert refused.status_code == 200  # the consent page again, with the reason
    assert "needs two-step verification" in refused.text
    assert _grants(services, owner.user_id) == 0
    [failure] = _failures(services, owner.user_id)
    assert (failure["action"], failure["reason"], failure["front"]) == (
        "user.sign_in_failed",
        "second_factor_not_set_up",
        "oauth_consent",
    )

    # The legitimate path: an operator (no second factor required) consents with a password.
    plain = operator(services, dealer.id, PortalRole.OPERATOR)
    assert "code" in oauth.code_from(_consent(server, c, plain.email))


def test_an_enrolled_account_must_give_a_current_code(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    admin = operator(services, dealer.id, PortalRole.ADMIN)
    c = _client(services, dealer.id)
    for code in ("", "000000", "not-a-code"):
        answer = _consent(server, c, admin.email, code=code)
        assert answer.status_code == 200
        assert "current code from your authenticator" in answer.text
    assert _grants(services, admin.user_id) == 0
    reasons = [f["reason"] for f in _failures(services, admin.user_id)]
    assert reasons == ["bad_second_factor"] * 3
    assert "code" in oauth.code_from(_consent(server, c, admin.email, code=admin.code()))
    assert _grants(services, admin.user_id) == 1


def test_a_lockout_at_the_consent_form_holds_in_the_portal(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    victim = operator(services, dealer.id, PortalRole.VIEWER)
    c = _client(services, dealer.id)
    for _ in range(MAX_FAILURES):
        assert "code=" not in _consent(server, c, victim.email, "guessed").headers.get(
            "location", ""
        )
    assert _failures(services, victim.user_id)[-1]["action"] == "user.locked_out"
    assert all(f["front"] == "oauth_consent" for f in _failures(services, victim.user_id))
    # Locked: the right password is refused at both forms.
    assert _consent(server, c, victim.email).status_code == 200
    with server.client() as portal:
        assert submit_sign_in(portal, dealer.id, victim.email, PASSWORD).status_code == 401
    assert _grants(services, victim.user_id) == 0


def test_a_lockout_in_the_portal_holds_at_the_consent_form(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    victim = operator(services, dealer.id, PortalRole.OWNER)
    c = _client(services, dealer.id)
    with server.client() as portal:
        for _ in range(MAX_FAILURES):
            assert submit_sign_in(portal, dealer.id, victim.email, "guessed").status_code == 401
    refused = _consent(server, c, victim.email, code=victim.code())
    assert refused.status_code == 200
    assert "locked for a while" in refused.text
    assert _grants(services, victim.user_id) == 0
    last = _failures(services, victim.user_id)[-1]
    assert (last["action"], last["reason"], last["front"]) == (
        "user.sign_in_failed",
        "locked",
        "oauth_consent",
    )


def test_a_success_at_either_form_clears_the_count(server: VigilServer, services: Services) -> None:
    dealer = factories.dealer(services)
    owner = operator(services, dealer.id, PortalRole.OWNER)
    c = _client(services, dealer.id)
    for _ in range(MAX_FAILURES - 1):
        _consent(server, c, owner.email, "guessed")
    assert "code" in oauth.code_from(_consent(server, c, owner.email, code=owner.code()))
    for _ in range(MAX_FAILURES - 1):
        _consent(server, c, owner.email, "guessed")
    with server.client() as portal:  # four more failures, then the right answer: not locked
        answer = submit_sign_in(portal, dealer.id, owner.email, PASSWORD)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/portal/sign-in/totp")


@pytest.fixture
def strict_server(tmp_path: Path, new_database: object) -> Iterator[VigilServer]:
    server = new_database.server(  # type: ignore[attr-defined]
        tmp_path / "home", auth_failure_burst=3, auth_failure_per_second=0.01
    )
    server.start()
    yield server
    server.stop()


def test_one_address_draws_on_one_throttle_at_both_forms(strict_server: VigilServer) -> None:
    svc = strict_server.services()
    try:
        dealer = factories.dealer(svc)
        victims = [operator(svc, dealer.id, PortalRole.VIEWER) for _ in range(3)]
        c = _client(svc, dealer.id)
        with strict_server.client() as portal:
            first = [
                submit_sign_in(portal, dealer.id, v.email, "guess").status_code for v in victims[:2]
            ]
        assert first == [401, 401]
        assert _consent(strict_server, c, victims[2].email, "guess").status_code == 200
        throttled = _consent(strict_server, c, victims[2].email)
        assert throttled.status_code == 429  # even the right password waits
        with strict_server.client() as portal:
            assert submit_sign_in(portal, dealer.id, victims[0].email, PASSWORD).status_code == 429
    finally:
        svc.close()
