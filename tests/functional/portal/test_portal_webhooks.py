"""Webhook screens in the portal, over real TLS (issue 8): endpoints per app with their health,
the API's URL policy with its refusals shown, the secret shown once at creation and rotation,
deliveries with their attempts, replay, internal-CA requests; `webhooks:read` to see,
`webhooks:write` to change, another dealer's ids 404, CSRF, and every change audited as the
operator's own action."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
import trustme
from sqlalchemy import insert, select
from tests.support import factories
from tests.support.portal import Operator, csrf_of, operator, sign_in
from tests.support.server import VigilServer

from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.core.ids import new_id
from vigil.services import Services
from vigil.storage.tables import audit_events, webhook_attempts, webhook_endpoints, webhook_messages
from vigil.tenancy.roles import PortalRole
from vigil.webhooks.sealing import message_payload_binding

PUBLIC = "https://93.184.215.14/hook"
SECRET = re.compile(r'value="(whsec_[^"]+)"')
ANY_SECRET = re.compile(r"whsec_[A-Za-z0-9]")


@dataclass(frozen=True)
class World:
    owner: Operator
    operator: Operator
    viewer: Operator
    app_id: str
    narrow_app_id: str
    foreign_app_id: str
    foreign_endpoint_id: str
    foreign_message_id: str


def _foreign_endpoint(services: Services) -> tuple[str, str, str]:
    cred = factories.credential(services, environment=Environment.PRODUCTION)
    actor = factories.actor_of(services, cred)
    created = services.webhooks.endpoints.create(actor, url=PUBLIC, event_types=[])
    message = services.webhooks.messages.send_test(actor, created.endpoint.id)
    return cred.app.id, created.endpoint.id, message.id


@pytest.fixture(scope="module")
def world(services: Services) -> World:
    dealer = factories.dealer(services)
    app = factories.app(services, dealer, Environment.PRODUCTION)
    narrow = factories.app(services, dealer, Environment.PRODUCTION, [Scope.SITES_READ])
    foreign_app, foreign_endpoint, foreign_message = _foreign_endpoint(services)
    return World(
        owner=operator(services, dealer.id, PortalRole.OWNER),
        operator=operator(services, dealer.id, PortalRole.OPERATOR),
        viewer=operator(services, dealer.id, PortalRole.VIEWER),
        app_id=app.id,
        narrow_app_id=narrow.id,
        foreign_app_id=foreign_app,
        foreign_endpoint_id=foreign_endpoint,
        foreign_message_id=foreign_message,
    )


@pytest.fixture(scope="module")
def owner(server: VigilServer, world: World) -> Iterator[httpx.Client]:
    with server.client() as c:
        sign_in(c, world.owner)
        yield c


@pytest.fixture(scope="module")
def op(server: VigilServer, world: World) -> Iterator[httpx.Client]:
    with server.client() as c:
        sign_in(c, world.operator)
        yield c


def _csrf(client: httpx.Client) -> str:
    return csrf_of(client.get("/portal/account").text)


def create(client: httpx.Client, app_id: str, url: str = PUBLIC, **extra: object) -> httpx.Response:
    data = {"csrf": _csrf(client), "app_id": app_id, "url": url, **extra}
    return client.post("/portal/webhooks", data=data)


def endpoint_of(services: Services, app_id: str) -> str:
    with services.db.read() as conn:
        ids = conn.execute(
            select(webhook_endpoints.c.id)
            .where(webhook_endpoints.c.app_id == app_id)
            .order_by(webhook_endpoints.c.seq.desc())
        ).all()
    return str(ids[0][0])


def audited(services: Services, action: str, target_id: str) -> list[dict[str, object]]:
    with services.db.read() as conn:
        rows = conn.execute(
            select(audit_events).where(
                audit_events.c.action == action, audit_events.c.target_id == target_id
            )
        ).mappings()
        return [dict(r) for r in rows]


def test_owner_creates_an_endpoint_and_sees_its_secret_once(
    owner: httpx.Client, world: World, services: Services
) -> None:
    answer = create(owner, world.app_id, description="Dispatch board", event_types="site.armed")
    assert answer.status_code == 200
    secret = SECRET.search(answer.text)
    assert secret is not None, answer.text
    assert "only time it is shown" in answer.text
    endpoint_id = endpoint_of(services, world.app_id)
    listing = owner.get("/portal/webhooks")
    detail = owner.get(f"/portal/webhooks/{endpoint_id}")
    assert PUBLIC in listing.text
    assert "site.armed" in detail.text
    assert "no attempts yet" in detail.text
    for page in (listing, detail):
        assert secret.group(1) not in page.text
        assert not ANY_SECRET.search(page.text)
    [record] = audited(services, "webhook_endpoint.created", endpoint_id)
    assert record["actor_type"] == "operator"
    assert record["actor_id"] == world.owner.user_id
    assert secret.group(1) not in str(record)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://93.184.215.14/hook", "must use https://"),
        ("https://169.254.169.254/latest", "address, which deliveries may not reach"),
        ("https://user:pw@93.184.215.14/hook", "cannot carry credentials"),
    ],
)
def test_the_api_url_policy_refuses_with_its_reason_on_the_page(
    owner: httpx.Client, world: World, services: Services, url: str, message: str
) -> None:
    with services.db.read() as conn:
        before = conn.execute(select(webhook_endpoints.c.id)).all()
    answer = create(owner, world.app_id, url=url)
    assert answer.status_code == 422
    assert message in answer.text
    assert 'role="alert"' in answer.text
    assert f'value="{url}"' in answer.text  # what was typed stays in the form
    with services.db.read() as conn:
        assert conn.execute(select(webhook_endpoints.c.id)).all() == before


def test_event_types_are_bounded_by_the_apps_scopes(owner: httpx.Client, world: World) -> None:
    refused = create(owner, world.narrow_app_id, event_types="alarm.created")
    allowed = create(owner, world.narrow_app_id, event_types="site.armed")
    assert refused.status_code == 422
    assert "alarms:read" in refused.text
    assert allowed.status_code == 200


def test_edit_disable_enable_and_rotate(
    owner: httpx.Client, world: World, services: Services
) -> None:
    create(owner, world.app_id)
    endpoint_id = endpoint_of(services, world.app_id)
    base = f"/portal/webhooks/{endpoint_id}"
    csrf = _csrf(owner)
    bad = owner.post(base, data={"csrf": csrf, "url": "http://x.example/", "version": "1"})
    assert bad.status_code == 422
    assert "must use https://" in bad.text
    edited = owner.post(
        base,
        data={
            "csrf": csrf,
            "url": "https://93.184.215.14/other",
            "description": "Renamed",
            "event_types": ["alarm.created", "site.armed"],
            "version": "1",
        },
    )
    assert edited.status_code == 303
    page = owner.get(base).text
    assert "https://93.184.215.14/other" in page
    assert "alarm.created" in page
    stale = owner.post(base, data={"csrf": csrf, "url": PUBLIC, "version": "1"})
    assert stale.status_code == 412  # someone changed it since this form was read

    assert owner.post(base + "/enabled", data={"csrf": csrf, "enabled": "false"}).status_code == 303
    assert ">disabled<" in owner.get(base).text
    assert owner.post(base + "/enabled", data={"csrf": csrf, "enabled": "true"}).status_code == 303
    assert ">enabled<" in owner.get(base).text

    first = SECRET.search(owner.post(base + "/rotate-secret", data={"csrf": csrf}).text)
    rotated = owner.post(base + "/rotate-secret", data={"csrf": csrf, "overlap_hours": "2"})
    second = SECRET.search(rotated.text)
    assert first is not None
    assert second is not None
    assert first.group(1) != second.group(1)
    assert "keeps signing alongside it until" in rotated.text
    assert "rotating: the previous one also signs" in owner.get(base).text
    actions = [
        "webhook_endpoint.updated",
        "webhook_secret.rotated",
    ]
    for action in actions:
        records = audited(services, action, endpoint_id)
        assert records, action
        assert all(r["actor_id"] == world.owner.user_id for r in records)


def _failed_delivery(services: Services, endpoint_id: str, dealer_id: str) -> str:
    """A message whose every attempt failed, as the worker records it."""
    now = services.clock.now()
    message_id = new_id("msg")
    tenant = {"dealer_id": dealer_id, "environment": "production"}
    # Sealed like every stored payload (S6), before the transaction as the services do.
    binding = message_payload_binding(dealer_id, "production", None, message_id)
    sealed = services.encryption.records.seal(binding, b'{"data":{},"type":"site.armed"}')
    with services.db.transaction() as conn:
        conn.execute(
            insert(webhook_messages).values(
                id=message_id,
                **tenant,
                endpoint_id=endpoint_id,
                event_id=None,
                event_type="site.armed",
                payload_sealed=sealed,
                status="failed",
                attempts=2,
                next_attempt_at=None,
                exhausted=1,
                last_status_code=503,
                version=1,
                created_at=now - timedelta(minutes=5),
                updated_at=now,
            )
        )
        for n, (reason, code) in enumerate(
            [("certificate_verify_failed", None), ("http_5xx", 503)], 1
        ):
            conn.execute(
                insert(webhook_attempts).values(
                    id=new_id("att"),
                    **tenant,
                    endpoint_id=endpoint_id,
                    message_id=message_id,
                    attempt=n,
                    result="failure",
                    reason=reason,
                    status_code=code,
                    latency_ms=120 * n,
                    tls=None,
                    address=None,
                    response_body=None,
                    attempted_at=now - timedelta(minutes=5 - n),
                )
            )
    return message_id


def test_deliveries_show_attempts_and_health_and_can_be_replayed(
    owner: httpx.Client, op: httpx.Client, world: World, services: Services
) -> None:
    create(owner, world.app_id)
    endpoint_id = endpoint_of(services, world.app_id)
    message_id = _failed_delivery(services, endpoint_id, world.owner.dealer_id)
    page = op.get(f"/portal/webhooks/{endpoint_id}")  # an operator reads, without forms
    assert page.status_code == 200
    for shown in (message_id, "retries exhausted", "certificate_verify_failed", "503", "240 ms"):
        assert shown in page.text
    assert "0% of the last 2 attempts" in page.text
    assert "Replay" not in page.text
    assert "Rotate secret" not in page.text
    listing = owner.get(f"/portal/webhooks?app={world.app_id}")
    assert "http_5xx" in listing.text  # the last failure's reason, on the list too

    refused = op.post(f"/portal/webhooks/messages/{message_id}/replay", data={"csrf": _csrf(op)})
    assert refused.status_code == 403
    replayed = owner.post(
        f"/portal/webhooks/messages/{message_id}/replay", data={"csrf": _csrf(owner)}
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"] == f"/portal/webhooks/{endpoint_id}"
    [record] = audited(services, "webhook_message.replayed", message_id)
    assert record["actor_id"] == world.owner.user_id
    with services.db.read() as conn:
        exhausted = conn.execute(
            select(webhook_messages.c.exhausted).where(webhook_messages.c.id == message_id)
        ).scalar_one()
    assert exhausted == 0


def test_custom_ca_request_is_pending_until_the_administrator_approves(
    owner: httpx.Client, world: World, services: Services
) -> None:
    create(owner, world.app_id)
    endpoint_id = endpoint_of(services, world.app_id)
    base = f"/portal/webhooks/{endpoint_id}"
    ca = trustme.CA()
    leaf = ca.issue_cert("hooks.example.com").cert_chain_pems[0].bytes().decode()
    csrf = _csrf(owner)
    not_ca = owner.post(base + "/ca-requests", data={"csrf": csrf, "ca_bundle": leaf})
    assert not_ca.status_code == 422
    assert "must be a CA certificate" in not_ca.text
    pem = ca.cert_pem.bytes().decode()
    sent = owner.post(base + "/ca-requests", data={"csrf": csrf, "ca_bundle": pem, "reason": "PKI"})
    assert sent.status_code == 303
    page = owner.get(base).text
    assert ">pending<" in page
    assert "internal CA" not in page.split("Internal certificate authority")[0]
    [request] = services.webhooks.endpoints.ca_requests("pending")[-1:]
    assert request.endpoint_id == endpoint_id
    services.webhooks.endpoints.approve_ca(factories.OPERATOR, request.id)
    page = owner.get(base).text
    assert ">approved<" in page
    assert "internal CA" in page


def test_viewer_and_operator_are_confined_by_scope(
    server: VigilServer, op: httpx.Client, world: World, services: Services
) -> None:
    create(op, world.app_id)  # an operator holds webhooks:read only
    assert op.get("/portal/webhooks").status_code == 200
    assert create(op, world.app_id).status_code == 403
    assert "Add an endpoint" not in op.get("/portal/webhooks").text
    with server.client() as viewer:
        sign_in(viewer, world.viewer)
        assert viewer.get("/portal/webhooks").status_code == 403
        assert 'href="/portal/webhooks"' not in viewer.get("/portal/").text
    assert 'href="/portal/webhooks"' in op.get("/portal/").text


def test_another_dealers_ids_are_404(owner: httpx.Client, world: World) -> None:
    csrf = _csrf(owner)
    theirs = f"/portal/webhooks/{world.foreign_endpoint_id}"
    assert owner.get(theirs).status_code == 404
    for path in ("", "/enabled", "/rotate-secret", "/test"):
        answer = owner.post(theirs + path, data={"csrf": csrf, "url": PUBLIC, "enabled": "false"})
        assert answer.status_code == 404, path
        assert not ANY_SECRET.search(answer.text)
    replay = f"/portal/webhooks/messages/{world.foreign_message_id}/replay"
    assert owner.post(replay, data={"csrf": csrf}).status_code == 404
    assert create(owner, world.foreign_app_id).status_code == 404


def test_forms_without_the_csrf_token_change_nothing(
    owner: httpx.Client, world: World, services: Services
) -> None:
    create(owner, world.app_id)
    endpoint_id = endpoint_of(services, world.app_id)
    for path in ("/portal/webhooks", f"/portal/webhooks/{endpoint_id}/rotate-secret"):
        for data in ({"app_id": world.app_id, "url": PUBLIC}, {"csrf": "forged"}):
            answer = owner.post(path, data=data)
            assert answer.status_code == 403
            assert not ANY_SECRET.search(answer.text)
    assert not audited(services, "webhook_secret.rotated", endpoint_id)
