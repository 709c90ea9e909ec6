"""S11: taking trust back from a partner takes its tokens with it, on the next request. A
dealer withdrawing or narrowing its authorization revokes the partner's tokens for that dealer
(only); disabling a partner revokes all of its tokens and refuses new assertions. Audited."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from tests.support import factories, oauth
from tests.support.audit_trail import opened_rows
from tests.support.server import VigilServer

from vigil.audit.actions import AuditAction
from vigil.auth.scopes import Scope
from vigil.services import Services
from vigil.storage.tables import audit_events

READ = {Scope.SITES_READ, Scope.ALARMS_READ}


def exchange(server: VigilServer, p: oauth.PartnerKeys, dealer_id: str) -> httpx.Response:
    with server.client() as http:
        return http.post(
            "/oauth/token",
            data={
                "grant_type": oauth.GRANT_TYPE,
                "assertion": p.assertion(server.base_url, dealer_id),
            },
        )


def token(server: VigilServer, p: oauth.PartnerKeys, dealer_id: str) -> dict[str, Any]:
    issued = exchange(server, p, dealer_id)
    assert issued.status_code == 200, issued.text
    body: dict[str, Any] = issued.json()
    return body


def me(server: VigilServer, access: str) -> int:
    with server.client(access) as api:
        return api.get("/v1/me").status_code


def last_record(services: Services, action: AuditAction, target: str) -> dict[str, Any]:
    rows = opened_rows(
        services,
        select(audit_events)
        .where(audit_events.c.action == action.value, audit_events.c.target_id == target)
        .order_by(audit_events.c.occurred_at.desc())
        .limit(1),
    )
    assert rows
    return rows[0]


def test_withdrawn_authorization_revokes_the_partners_tokens_at_once(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    p = oauth.partner(services, scopes=READ, authorize={dealer.id: READ})
    old = token(server, p, dealer.id)["access_token"]
    assert me(server, old) == 200
    services.partners.authorize(factories.OPERATOR, p.partner.id, dealer.id, ())
    assert me(server, old) == 401
    refused = exchange(server, p, dealer.id)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    record = last_record(services, AuditAction.PARTNER_AUTHORIZED, p.partner.id)
    assert record["details"]["tokens_revoked"] == 1
    assert record["dealer_id"] == dealer.id
    # Authorized again: a fresh assertion works; the revoked token stays revoked.
    services.partners.authorize(factories.OPERATOR, p.partner.id, dealer.id, READ)
    assert me(server, token(server, p, dealer.id)["access_token"]) == 200
    assert me(server, old) == 401


def test_narrowed_authorization_revokes_and_fresh_tokens_carry_the_narrower_scopes(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    p = oauth.partner(services, scopes=READ, authorize={dealer.id: READ})
    old = token(server, p, dealer.id)
    assert set(old["scope"].split()) == {"sites:read", "alarms:read"}
    services.partners.authorize(factories.OPERATOR, p.partner.id, dealer.id, {Scope.SITES_READ})
    assert me(server, old["access_token"]) == 401
    fresh = token(server, p, dealer.id)
    assert fresh["scope"] == "sites:read"
    assert me(server, fresh["access_token"]) == 200
    record = last_record(services, AuditAction.PARTNER_AUTHORIZED, p.partner.id)
    assert record["details"]["withdrawn"] == "alarms:read"


def test_widening_an_authorization_leaves_tokens_alone(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    p = oauth.partner(services, scopes=READ, authorize={dealer.id: {Scope.SITES_READ}})
    old = token(server, p, dealer.id)["access_token"]
    services.partners.authorize(factories.OPERATOR, p.partner.id, dealer.id, READ)
    assert me(server, old) == 200


def test_one_dealers_withdrawal_leaves_the_partners_tokens_for_other_dealers(
    server: VigilServer, services: Services
) -> None:
    a, b = factories.dealer(services), factories.dealer(services)
    p = oauth.partner(services, scopes=READ, authorize={a.id: READ, b.id: READ})
    for_a = token(server, p, a.id)["access_token"]
    for_b = token(server, p, b.id)["access_token"]
    services.partners.authorize(factories.OPERATOR, p.partner.id, a.id, ())
    assert me(server, for_a) == 401
    assert me(server, for_b) == 200


def test_disabled_partner_loses_every_token_and_cannot_get_another(
    server: VigilServer, services: Services
) -> None:
    a, b = factories.dealer(services), factories.dealer(services)
    p = oauth.partner(services, scopes=READ, authorize={a.id: READ, b.id: READ})
    tokens = [token(server, p, a.id)["access_token"], token(server, p, b.id)["access_token"]]
    assert services.partners.set_disabled(factories.OPERATOR, p.partner.id, True) == 2
    assert [me(server, t) for t in tokens] == [401, 401]
    assert exchange(server, p, a.id).status_code == 400
    record = last_record(services, AuditAction.PARTNER_DISABLED, p.partner.id)
    assert record["details"]["tokens_revoked"] == 2
    services.partners.set_disabled(factories.OPERATOR, p.partner.id, False)
    assert me(server, token(server, p, a.id)["access_token"]) == 200
    assert [me(server, t) for t in tokens] == [401, 401]


def test_partner_disable_and_enable_through_the_cli(
    server: VigilServer, services: Services
) -> None:
    dealer = factories.dealer(services)
    p = oauth.partner(services, scopes=READ, authorize={dealer.id: READ})
    old = token(server, p, dealer.id)["access_token"]
    out = server.run_cli("partners", "disable", "--partner", p.partner.id)
    assert "1 token(s) revoked" in out.stdout
    assert me(server, old) == 401
    server.run_cli("partners", "enable", "--partner", p.partner.id)
    assert exchange(server, p, dealer.id).status_code == 200
