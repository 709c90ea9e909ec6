"""The OAuth purge: expired tokens, spent codes and expired `jti` entries are deleted, by
`vigil serve` on its own and by `vigil oauth purge`, and never so early that a replay would get
through. Driven on a clock the tests move, through the real services."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import insert, select
from tests.support import factories, oauth
from tests.support.audit_trail import opened_rows
from tests.support.server import VigilServer

from vigil.audit.actions import AuditAction
from vigil.auth.actor import Actor
from vigil.auth.oauth import authorization as authz
from vigil.auth.oauth import token_store
from vigil.auth.oauth.context import Call
from vigil.auth.oauth.errors import InvalidGrant
from vigil.auth.principal import ActorType, Environment
from vigil.auth.scopes import Scope
from vigil.config import Settings
from vigil.core.clock import FrozenClock
from vigil.core.ids import new_id
from vigil.services import Services
from vigil.storage.tables import assertion_jtis, audit_events, oauth_codes, oauth_tokens

SYSTEM = Actor(type=ActorType.SYSTEM, id="oauth-purge", via="test")
READ = {Scope.SITES_READ}


@dataclass
class World:
    svc: Services
    clock: FrozenClock

    def purge(self) -> dict[str, Any]:
        return self.svc.oauth.purge(SYSTEM).as_json()

    def rows(self, table: Any, ids: list[str]) -> set[str]:
        with self.svc.db.read() as conn:
            return set(conn.execute(select(table.c.id).where(table.c.id.in_(ids))).scalars())

    def code(self, c: oauth.Client, user_id: str) -> tuple[str, str]:
        """A fresh authorization code (and its verifier), as the consent page would issue."""
        verifier, challenge = oauth.pkce_pair()
        req = authz.parse_request(self.svc.oauth.ctx, oauth.authorize_params(c, challenge))
        location = authz.approve(self.svc.oauth.ctx, req, self.svc.users.get(user_id), Call())
        return parse_qs(urlsplit(location).query)["code"][0], verifier

    def redeem(self, c: oauth.Client, code: str, verifier: str) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": oauth.REDIRECT,
            "code_verifier": verifier,
            "client_id": c.id,
        }
        body: dict[str, Any] = self.svc.oauth.token(form, Call())
        return body


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, new_database: Any) -> Iterator[World]:
    home: Path = tmp_path_factory.mktemp("oauth-purge")
    url = new_database(home)
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    settings = Settings(
        home=home,
        database_url=url,
        database_owner_url=new_database.owner_url(url),
        oauth_issuer="https://vigil.test",
    )
    svc = Services.build(settings, clock=clock)
    yield World(svc, clock)
    svc.close()


def token_id(value: str) -> str:
    return value.split("_")[1] + "_" + value.split("_")[2]


def test_a_replayed_assertion_fails_after_every_purge_inside_its_window(world: World) -> None:
    svc, clock = world.svc, world.clock
    dealer = factories.dealer(svc)
    p = oauth.partner(svc, scopes=READ, authorize={dealer.id: READ})
    t0 = int(clock.now().timestamp())
    assertion = p.assertion("https://vigil.test", dealer.id, iat=t0, exp=t0 + 120)
    form = {"grant_type": oauth.GRANT_TYPE, "assertion": assertion}
    assert svc.oauth.token(form, Call())["access_token"].startswith("vgl_at_")
    # The verifier accepts this exp until exp + 60 s skew: at every moment up to then, after a
    # purge, the jti row is still there and the replay is refused *as a replay*.
    for moment in (1, 120, 150, 179):
        clock.advance(timedelta(seconds=t0 + moment - clock.now().timestamp()))
        world.purge()
        with pytest.raises(InvalidGrant, match="jti has been used"):
            svc.oauth.token(form, Call())
    clock.advance(timedelta(seconds=t0 + 241 - clock.now().timestamp()))
    assert world.purge()["jtis"] >= 1
    with svc.db.read() as conn:
        kept = conn.execute(
            select(assertion_jtis.c.jti).where(assertion_jtis.c.issuer == p.partner.id)
        ).all()
    assert kept == []
    with pytest.raises(InvalidGrant, match="expired"):  # the exp check alone refuses it now
        svc.oauth.token(form, Call())


def test_a_replayed_code_still_revokes_its_tokens_after_a_purge(world: World) -> None:
    svc, clock = world.svc, world.clock
    c = oauth.client(svc)
    user = oauth.user(svc, c.cred.dealer.id)
    code, verifier = world.code(c, user.id)
    issued = world.redeem(c, code, verifier)
    clock.advance(timedelta(minutes=5))  # the code expired 4 minutes ago
    world.purge()
    with pytest.raises(InvalidGrant):
        world.redeem(c, code, verifier)
    with svc.db.read() as conn:
        revoked = conn.execute(
            select(oauth_tokens.c.revoked_at).where(
                oauth_tokens.c.id == token_id(issued["refresh_token"])
            )
        ).scalar_one()
    assert revoked is not None


def test_expired_tokens_and_spent_codes_are_deleted_and_live_ones_kept(world: World) -> None:
    svc, clock = world.svc, world.clock
    c = oauth.client(svc)
    user = oauth.user(svc, c.cred.dealer.id)
    used, verifier = world.code(c, user.id)
    issued = world.redeem(c, used, verifier)
    unused, _ = world.code(c, user.id)
    code_ids = [token_id(used), token_id(unused)]
    access, refresh = token_id(issued["access_token"]), token_id(issued["refresh_token"])

    clock.advance(timedelta(minutes=2))
    world.purge()
    assert world.rows(oauth_codes, code_ids) == set(code_ids)  # inside the replay window
    assert world.rows(oauth_tokens, [access, refresh]) == {access, refresh}

    clock.advance(timedelta(hours=2))  # past the access token's hour and the codes' window
    done = world.purge()
    assert done["codes"] >= 2
    assert done["tokens"] >= 1
    assert world.rows(oauth_codes, code_ids) == set()
    assert world.rows(oauth_tokens, [access, refresh]) == {refresh}  # the family lives on
    renewed = svc.oauth.token(
        {
            "grant_type": "refresh_token",
            "refresh_token": issued["refresh_token"],
            "client_id": c.id,
        },
        Call(),
    )
    with pytest.raises(InvalidGrant):  # reuse is still detected: the used row is kept
        svc.oauth.token(
            {
                "grant_type": "refresh_token",
                "refresh_token": issued["refresh_token"],
                "client_id": c.id,
            },
            Call(),
        )

    clock.advance(timedelta(days=31))  # past the family's absolute end
    world.purge()
    later = [refresh, token_id(renewed["refresh_token"]), token_id(renewed["access_token"])]
    assert world.rows(oauth_tokens, later) == set()
    purges = opened_rows(
        svc,
        select(audit_events)
        .where(audit_events.c.action == AuditAction.OAUTH_PURGED.value)
        .order_by(audit_events.c.occurred_at.desc())
        .limit(1),
    )
    assert purges
    record = purges[0]
    assert (record["actor_type"], record["actor_id"]) == ("system", "oauth-purge")
    assert record["details"]["tokens"] >= 2


def test_a_purge_with_nothing_to_delete_writes_no_record(world: World) -> None:
    world.purge()
    with world.svc.db.read() as conn:
        before = conn.execute(select(audit_events.c.id)).all()
    assert world.purge() == {
        "tokens": 0,
        "codes": 0,
        "jtis": 0,
        "cutoff": world.clock.now().isoformat(),
    }
    with world.svc.db.read() as conn:
        assert conn.execute(select(audit_events.c.id)).all() == before


# --- the two ways it runs: vigil serve on its own, and the CLI ----------------------------------


def expired_rows(svc: Services, dealer_id: str) -> tuple[str, str]:
    """An access token that expired an hour ago and a `jti` whose window closed an hour ago."""
    subject = token_store.Subject(
        ActorType.USER, "usr_x", dealer_id, Environment.SANDBOX, frozenset(READ)
    )
    now = svc.clock.now()
    with svc.db.transaction() as conn:
        issued = token_store.issue(
            conn,
            subject,
            family_id=new_id("fam"),
            now=now - timedelta(hours=2),
            access_ttl=timedelta(hours=1),
            refresh_until=None,
        )
        jti = new_id("jti")
        conn.execute(
            insert(assertion_jtis).values(
                issuer="ptn_x", jti=jti, expires_at=now - timedelta(hours=1)
            )
        )
    return issued.access.id, jti


def gone(svc: Services, token: str, jti: str) -> bool:
    with svc.db.read() as conn:
        t = conn.execute(select(oauth_tokens.c.id).where(oauth_tokens.c.id == token)).first()
        j = conn.execute(select(assertion_jtis.c.jti).where(assertion_jtis.c.jti == jti)).first()
    return t is None and j is None


def test_vigil_oauth_purge_deletes_expired_rows(server: VigilServer, services: Services) -> None:
    token, jti = expired_rows(services, factories.dealer(services).id)
    out = server.run_cli("oauth", "purge", "--json")
    assert '"tokens"' in out.stdout
    assert gone(services, token, jti)


def test_vigil_serve_purges_on_its_own(tmp_path: Path, new_database: Any) -> None:
    srv = new_database.server(tmp_path / "home", oauth_purge_seconds=1, webhook_worker="false")
    srv.start()
    svc = srv.services()
    try:
        token, jti = expired_rows(svc, factories.dealer(svc).id)
        deadline = time.monotonic() + 30
        while not gone(svc, token, jti) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert gone(svc, token, jti)
        with svc.db.read() as conn:
            actors = set(
                conn.execute(
                    select(audit_events.c.actor_id).where(
                        audit_events.c.action == AuditAction.OAUTH_PURGED.value
                    )
                ).scalars()
            )
        assert actors == {"oauth-purge"}
    finally:
        svc.close()
        srv.stop()
