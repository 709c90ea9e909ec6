"""S10: token lifetimes and kinds at the edge, and the user's refusal of consent."""

from __future__ import annotations

from datetime import timedelta

import pydantic
import pytest
from sqlalchemy import select
from tests.support import factories, oauth
from tests.support.server import VigilServer

from vigil.audit.actions import AuditAction
from vigil.auth.oauth import token_store
from vigil.auth.principal import ActorType, Environment
from vigil.auth.scopes import Scope
from vigil.config import Settings
from vigil.core.ids import new_id
from vigil.services import Services
from vigil.storage.tables import audit_events


@pytest.mark.parametrize("seconds", [86401, 10**6])
def test_access_token_lifetime_setting_is_capped_at_24_hours(seconds: int) -> None:
    assert Settings(oauth_access_token_seconds=86400).oauth_access_token_seconds == 86400
    with pytest.raises(pydantic.ValidationError):
        Settings(oauth_access_token_seconds=seconds)
    with pytest.raises(pydantic.ValidationError):
        Settings(oauth_assertion_token_seconds=3601)


def test_store_never_issues_more_than_24_hours(services: Services) -> None:
    cred = factories.credential(services)
    subject = token_store.Subject(
        ActorType.USER, "usr_x", cred.dealer.id, Environment.SANDBOX, frozenset({Scope.SITES_READ})
    )
    now = services.clock.now()
    with services.db.transaction() as conn:
        issued = token_store.issue(
            conn, subject, family_id=new_id("fam"), now=now,
            access_ttl=timedelta(days=30), refresh_until=None,
        )  # fmt: skip
    assert issued.expires_in == 86400


def test_expired_access_token_is_401(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    subject = token_store.Subject(
        ActorType.USER, "usr_x", cred.dealer.id, Environment.SANDBOX, frozenset({Scope.SITES_READ})
    )
    tokens = {}
    with services.db.transaction() as conn:
        for name, ttl in (("live", timedelta(minutes=5)), ("expired", timedelta(seconds=-1))):
            tokens[name] = token_store.issue(
                conn, subject, family_id=new_id("fam"), now=services.clock.now(),
                access_ttl=ttl, refresh_until=None,
            ).access.value  # fmt: skip
    assert server.client(tokens["live"]).get("/v1/me").status_code == 200
    assert server.client(tokens["expired"]).get("/v1/me").status_code == 401


def test_refresh_token_or_code_is_not_an_access_token(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    tokens = oauth.tokens(server, c, oauth.user(services, c.cred.dealer.id))
    assert server.client(tokens["access_token"]).get("/v1/me").status_code == 200
    assert server.client(tokens["refresh_token"]).get("/v1/me").status_code == 401
    forged = factories.mistyped(tokens["access_token"])
    assert server.client(forged).get("/v1/me").status_code == 401


def test_user_who_denies_is_sent_back_with_access_denied(
    server: VigilServer, services: Services
) -> None:
    c = oauth.client(services)
    u = oauth.user(services, c.cred.dealer.id)
    params = oauth.authorize_params(c, oauth.pkce_pair()[1])
    with server.client() as http:
        approved = oauth.sign_in(http, params, u.email)
        assert approved.status_code == 303
        page = http.get("/oauth/authorize", params=params)
        form = oauth.form_of(page.text) | {"decision": "deny"}
        denied = http.post("/oauth/authorize", data=form)
    assert denied.status_code == 303
    assert "error=access_denied" in denied.headers["location"]
    assert f"state={params['state']}" in denied.headers["location"]
    with services.db.read() as conn:
        targets = set(
            conn.execute(
                select(audit_events.c.target_id).where(
                    audit_events.c.action == AuditAction.OAUTH_GRANT_DENIED.value
                )
            ).scalars()
        )
    assert c.id in targets
