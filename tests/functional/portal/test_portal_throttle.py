"""Failed sign-ins are also limited per client address (429), before any account locks."""

from __future__ import annotations

from pathlib import Path

from tests.support import factories
from tests.support.portal import PASSWORD, operator, submit_sign_in

from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType
from vigil.tenancy.roles import PortalRole

ANON = Actor(type=ActorType.ANONYMOUS, id="portal-sign-in", via="portal")


def test_one_address_guessing_across_accounts_is_slowed(
    tmp_path: Path, new_database: object
) -> None:
    server = new_database.server(  # type: ignore[attr-defined]
        tmp_path / "home", auth_failure_burst=3, auth_failure_per_second=0.01
    )
    server.start()
    svc = server.services()
    try:
        dealer = factories.dealer(svc)
        victims = [operator(svc, dealer.id, PortalRole.VIEWER) for _ in range(4)]
        with server.client() as client:
            answers = [
                submit_sign_in(client, dealer.id, v.email, "guessed password").status_code
                for v in victims
            ]
        assert answers == [401, 401, 401, 429]
        for v in victims:  # one wrong answer each: no account is locked
            assert svc.operators.sign_in(ANON, dealer.id, v.email, PASSWORD).user.id == v.user_id
    finally:
        svc.close()
        server.stop()
