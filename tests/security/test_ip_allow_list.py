"""S9: an app's IP allow list, with the client address taken from trusted proxies only."""

from __future__ import annotations

from typing import Any

import httpx
from tests.support import factories
from tests.support.server import VigilServer

from vigil.services import Services


def call_from(server: VigilServer, token: str, forwarded_for: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    with server.client(token, headers=headers) as client:
        return client.get("/v1/me").status_code


def test_key_outside_the_allow_list_is_403_inside_is_200(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, ip_allow_list=["203.0.113.0/24", "2001:db8::/32"])
    assert call_from(server, cred.token, "203.0.113.7") == 200
    assert call_from(server, cred.token, "2001:db8::1") == 200
    assert call_from(server, cred.token, "198.51.100.9") == 403
    assert call_from(server, cred.token, "2001:db9::1") == 403


def test_a_client_cannot_spoof_its_address_past_the_proxy(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, ip_allow_list=["203.0.113.0/24"])
    # The trusted proxy (127.0.0.1) appends the real client; a forged left-most hop is ignored.
    assert call_from(server, cred.token, "203.0.113.7, 198.51.100.9") == 403


def test_without_forwarding_the_socket_peer_counts(server: VigilServer, services: Services) -> None:
    inside = factories.credential(services, ip_allow_list=["127.0.0.0/8"])
    outside = factories.credential(services, ip_allow_list=["203.0.113.0/24"])
    assert call_from(server, inside.token, None) == 200
    assert call_from(server, outside.token, None) == 403


def test_refusal_is_a_problem_document(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services, ip_allow_list=["203.0.113.0/24"])
    with server.client(cred.token, headers={"X-Forwarded-For": "192.0.2.1"}) as client:
        response = client.get("/v1/me")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


def refused_and_recorded(
    server: VigilServer, services: Services, token: str
) -> tuple[httpx.Response, Any]:
    """A call from outside the allow list: the response and its audit record."""
    from sqlalchemy import select

    from vigil.storage.tables import audit_events

    with server.client(token, headers={"X-Forwarded-For": "192.0.2.1"}) as client:
        response = client.get("/v1/me")
    with services.db.read() as conn:
        row = (
            conn.execute(
                select(audit_events).where(
                    audit_events.c.request_id == response.headers["x-request-id"]
                )
            )
            .mappings()
            .one()
        )
    assert response.status_code == 403
    assert response.json()["code"] == "address_not_allowed"
    assert row["action"] == "access.denied"
    return response, row


def test_refusal_is_audited_under_the_keys_owner(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services, ip_allow_list=["203.0.113.0/24"])
    _, row = refused_and_recorded(server, services, cred.token)
    assert (row["dealer_id"], row["credential_id"], row["source_ip"]) == (
        cred.dealer.id,
        cred.key_id,
        "192.0.2.1",
    )


def test_user_access_token_is_bound_by_its_apps_allow_list(
    server: VigilServer, services: Services
) -> None:
    from tests.support import oauth

    cred = factories.credential(services, ip_allow_list=["203.0.113.0/24"])
    c = oauth.client(services, cred)
    access = oauth.tokens(server, c, oauth.user(services, cred.dealer.id))["access_token"]
    assert call_from(server, access, "203.0.113.7") == 200
    assert call_from(server, access, "198.51.100.9") == 403
    assert call_from(server, access, "203.0.113.7, 198.51.100.9") == 403  # forged hop ignored
    open_app = oauth.client(services)  # no allow list: the user's device may be anywhere
    anywhere = oauth.tokens(server, open_app, oauth.user(services, open_app.cred.dealer.id))
    assert call_from(server, anywhere["access_token"], "198.51.100.9") == 200


def test_partner_token_is_bound_by_the_partners_allow_list(
    server: VigilServer, services: Services
) -> None:
    from tests.support import oauth

    from vigil.auth.scopes import Scope

    dealer = factories.dealer(services)
    p = oauth.partner(services, authorize={dealer.id: {Scope.SITES_READ}})
    out = server.run_cli(
        "partners", "set-ip-allow-list", "--partner", p.partner.id, "--ip-allow", "2001:db8::/32"
    )
    assert "2001:db8::/32" in out.stdout
    with server.client() as http:
        issued = http.post(
            "/oauth/token",
            data={
                "grant_type": oauth.GRANT_TYPE,
                "assertion": p.assertion(server.base_url, dealer.id),
            },
        )
    access = issued.json()["access_token"]
    assert call_from(server, access, "2001:db8::5") == 200
    assert call_from(server, access, "198.51.100.9") == 403
    services.partners.set_ip_allow_list(factories.OPERATOR, p.partner.id, [])
    assert call_from(server, access, "198.51.100.9") == 200  # cleared: checked on every request


def test_token_refused_for_its_address_is_audited_under_its_owner(
    server: VigilServer, services: Services
) -> None:
    from tests.support import oauth

    cred = factories.credential(services, ip_allow_list=["203.0.113.0/24"])
    u = oauth.user(services, cred.dealer.id)
    access = oauth.tokens(server, oauth.client(services, cred), u)["access_token"]
    _, row = refused_and_recorded(server, services, access)
    assert (row["actor_id"], row["dealer_id"]) == (u.id, cred.dealer.id)
