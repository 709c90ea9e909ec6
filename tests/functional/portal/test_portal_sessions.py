"""Session lifetimes, second-factor replay and lockout expiry, on a clock the tests move."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from tests.support import factories
from tests.support.portal import PASSWORD, operator

from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType, Environment
from vigil.config import Settings
from vigil.core.clock import FrozenClock
from vigil.portal.sessions import ABSOLUTE, IDLE, SessionStore
from vigil.services import Services
from vigil.tenancy.operators import LOCKOUT, MAX_FAILURES, SignInRefused
from vigil.tenancy.roles import PortalRole

ANON = Actor(type=ActorType.ANONYMOUS, id="portal-sign-in", via="portal")


@pytest.fixture(scope="module")
def clocked(
    tmp_path_factory: pytest.TempPathFactory, new_database: object
) -> Iterator[tuple[Services, FrozenClock]]:
    home: Path = tmp_path_factory.mktemp("portal-clock")
    url = new_database(home)  # type: ignore[operator]
    owner_url = new_database.owner_url(url)  # type: ignore[attr-defined]
    clock = FrozenClock()
    svc = Services.build(
        Settings(home=home, database_url=url, database_owner_url=owner_url), clock=clock
    )
    yield svc, clock
    svc.close()


def store_of(svc: Services, clock: FrozenClock) -> SessionStore:
    return SessionStore(svc.db, svc.audit, clock)


def test_idle_session_ends_after_thirty_minutes(clocked: tuple[Services, FrozenClock]) -> None:
    svc, clock = clocked
    store = store_of(svc, clock)
    op = operator(svc, factories.dealer(svc).id, PortalRole.VIEWER)
    session = store.open(op.user_id, op.dealer_id, Environment.PRODUCTION, mfa_pending=False)
    clock.advance(IDLE - timedelta(minutes=1))
    assert store.load(session.token) is not None  # activity moves the idle window
    clock.advance(IDLE - timedelta(minutes=1))
    assert store.load(session.token) is not None
    clock.advance(IDLE + timedelta(seconds=1))
    assert store.load(session.token) is None


def test_active_session_still_ends_after_twelve_hours(
    clocked: tuple[Services, FrozenClock],
) -> None:
    svc, clock = clocked
    store = store_of(svc, clock)
    op = operator(svc, factories.dealer(svc).id, PortalRole.VIEWER)
    session = store.open(op.user_id, op.dealer_id, Environment.PRODUCTION, mfa_pending=False)
    elapsed = timedelta(0)
    while elapsed < ABSOLUTE - timedelta(minutes=20):
        clock.advance(timedelta(minutes=20))
        elapsed += timedelta(minutes=20)
        assert store.load(session.token) is not None
        session = store.renew(session)  # renewing never extends the absolute limit
    clock.advance(timedelta(minutes=21))
    assert store.load(session.token) is None


def test_a_totp_code_works_once(clocked: tuple[Services, FrozenClock]) -> None:
    svc, clock = clocked
    op = operator(svc, factories.dealer(svc).id, PortalRole.OWNER)
    account = svc.operators.account(op.user_id)
    assert op.totp_secret is not None
    code = pyotp.TOTP(op.totp_secret).at(clock.now() + timedelta(seconds=30))
    assert svc.operators.second_factor(ANON, account, code)
    assert not svc.operators.second_factor(ANON, account, code)


def test_lockout_lifts_after_fifteen_minutes(clocked: tuple[Services, FrozenClock]) -> None:
    svc, clock = clocked
    op = operator(svc, factories.dealer(svc).id, PortalRole.VIEWER)
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRefused):
            svc.operators.sign_in(ANON, op.dealer_id, op.email, "not the password")
    with pytest.raises(SignInRefused):
        svc.operators.sign_in(ANON, op.dealer_id, op.email, PASSWORD)
    clock.advance(LOCKOUT + timedelta(seconds=1))
    assert svc.operators.sign_in(ANON, op.dealer_id, op.email, PASSWORD).user.id == op.user_id


def test_a_recovery_code_works_once(clocked: tuple[Services, FrozenClock]) -> None:
    svc, clock = clocked
    op = operator(svc, factories.dealer(svc).id, PortalRole.ADMIN, mfa=False)
    account = svc.operators.account(op.user_id)
    secret = svc.operators.new_totp_secret()
    codes = svc.operators.enroll(ANON, account, secret, pyotp.TOTP(secret).at(clock.now()))
    account = svc.operators.account(op.user_id)
    assert svc.operators.second_factor(ANON, account, codes[3])
    assert not svc.operators.second_factor(ANON, account, codes[3])
