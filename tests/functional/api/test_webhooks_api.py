"""Webhook endpoints over the real server: S4 (https only, sandbox and production alike), SSRF
refusals as problems, the secret shown once, event types bounded by the app's scopes, and no
way for one app to redirect another's events."""

from __future__ import annotations

import pytest
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.services import Services

HOOKS = "/v1/webhooks/endpoints"
PUBLIC = "https://93.184.215.14/hook"


@pytest.mark.parametrize("environment", [Environment.SANDBOX, Environment.PRODUCTION])
def test_plain_http_is_refused_with_a_clear_problem(
    server: VigilServer, services: Services, environment: Environment
) -> None:
    cred = factories.credential(services, environment=environment)
    with server.client(cred.token) as client:
        response = client.post(HOOKS, json={"url": "http://93.184.215.14/hook"})
        listed = client.get(HOOKS).json()["data"]
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == "https_required"
    assert "https://" in response.json()["detail"]
    assert listed == []


@pytest.mark.parametrize(
    "host",
    [
        "127.1",
        "0x7f000001",
        "2130706433",
        "[::ffff:127.0.0.1]",
        "169.254.169.254",
        "[fd00:ec2::254]",
    ],
)
def test_ssrf_hosts_are_refused_through_the_api(
    server: VigilServer, services: Services, host: str
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        response = client.post(HOOKS, json={"url": f"https://{host}/hook"})
    assert response.status_code == 422
    assert response.json()["reason"] == "address_not_allowed"


def test_secret_is_shown_once_and_rotation_returns_a_new_one(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        created = client.post(HOOKS, json={"url": PUBLIC, "event_types": ["site.armed"]})
        endpoint_id = created.json()["id"]
        read = client.get(f"{HOOKS}/{endpoint_id}")
        listed = client.get(HOOKS)
        rotated = client.post(f"{HOOKS}/{endpoint_id}/rotate-secret", json={})
    secret = created.json()["secret"]
    assert created.status_code == 201
    assert secret.startswith("whsec_")
    assert secret not in read.text
    assert secret not in listed.text
    assert "secret" not in read.json()
    assert rotated.json()["secret"] not in (secret, None)
    assert rotated.json()["secret_rotating_until"] is not None
    from sqlalchemy import select
    from tests.support.audit_trail import opened_rows

    from vigil.storage.tables import audit_events

    # The secret is in no audit record either, sealed or opened.
    rows = opened_rows(
        services,
        select(audit_events.c.id, audit_events.c.details).where(
            audit_events.c.target_id == endpoint_id
        ),
    )
    details = [r["details"] for r in rows]
    assert details
    assert not any(secret in str(d) or rotated.json()["secret"] in str(d) for d in details)


def test_event_types_are_bounded_by_the_apps_read_scopes(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, scopes={Scope.WEBHOOKS_WRITE, Scope.SITES_READ})
    with server.client(cred.token) as client:
        alarms = client.post(HOOKS, json={"url": PUBLIC, "event_types": ["alarm.created"]})
        unknown = client.post(HOOKS, json={"url": PUBLIC, "event_types": ["alarm.exploded"]})
        sites = client.post(HOOKS, json={"url": PUBLIC, "event_types": ["site.armed"]})
    assert alarms.status_code == 422
    assert "alarms:read" in alarms.json()["detail"]
    assert unknown.status_code == 422
    assert sites.status_code == 201


def test_an_app_cannot_redirect_a_more_privileged_apps_endpoint(
    server: VigilServer, services: Services
) -> None:
    owner = factories.credential(services)
    weaker = factories.credential(
        services, owner=owner.dealer, scopes={Scope.WEBHOOKS_READ, Scope.WEBHOOKS_WRITE}
    )
    with server.client(owner.token) as client:
        endpoint_id = client.post(HOOKS, json={"url": PUBLIC}).json()["id"]
    with server.client(weaker.token) as client:
        moved = client.patch(f"{HOOKS}/{endpoint_id}", json={"url": "https://93.184.215.15/x"})
        secret = client.post(f"{HOOKS}/{endpoint_id}/rotate-secret", json={})
        seen = client.get(f"{HOOKS}/{endpoint_id}")
    assert moved.status_code == 403
    assert secret.status_code == 403
    assert seen.json()["url"] == PUBLIC


def test_test_message_replay_and_listings(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        endpoint_id = client.post(HOOKS, json={"url": PUBLIC}).json()["id"]
        sent = client.post(f"{HOOKS}/{endpoint_id}/test")
        replayed = client.post(f"/v1/webhooks/messages/{sent.json()['id']}/replay")
        messages = client.get(f"{HOOKS}/{endpoint_id}/messages", params={"status": "pending"})
        attempts = client.get(f"{HOOKS}/{endpoint_id}/attempts")
        bulk = client.post(f"{HOOKS}/{endpoint_id}/replay", json={"since": "2020-01-01T00:00:00Z"})
        naive = client.post(f"{HOOKS}/{endpoint_id}/replay", json={"since": "2020-01-01T00:00:00"})
        disabled = client.patch(f"{HOOKS}/{endpoint_id}", json={"enabled": False})
    assert sent.status_code == 201
    assert sent.json()["event_type"] == "webhook.test"
    assert replayed.json()["id"] == sent.json()["id"]
    assert [m["id"] for m in messages.json()["data"]] == [sent.json()["id"]]
    assert messages.json()["data"][0]["exhausted"] is False
    assert attempts.json() == {"data": [], "next_cursor": None}
    assert bulk.json() == {"replayed": 0}
    assert naive.status_code == 422
    assert disabled.json()["enabled"] is False
    assert disabled.json()["disabled_reason"] == "disabled_by_user"


def test_ca_request_accepts_only_ca_certificates(server: VigilServer, services: Services) -> None:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("hooks.example.com").cert_chain_pems[0].bytes().decode()
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        endpoint_id = client.post(HOOKS, json={"url": PUBLIC}).json()["id"]
        good = client.post(
            f"{HOOKS}/{endpoint_id}/ca-requests",
            json={"ca_bundle": ca.cert_pem.bytes().decode(), "reason": "internal PKI"},
        )
        not_ca = client.post(f"{HOOKS}/{endpoint_id}/ca-requests", json={"ca_bundle": leaf})
        garbage = client.post(f"{HOOKS}/{endpoint_id}/ca-requests", json={"ca_bundle": "x"})
        endpoint = client.get(f"{HOOKS}/{endpoint_id}")
    assert good.status_code == 201
    assert good.json()["status"] == "pending"
    assert len(good.json()["fingerprints"][0]) == 64
    assert not_ca.status_code == 422
    assert garbage.status_code == 422
    assert endpoint.json()["internal_ca"] is False  # nothing changes until an admin approves
