"""S14/S15 (first cut): every request, whatever its outcome, has exactly one audit record,
committed before the response was released."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from tests.support import factories
from tests.support.audit_trail import opened_rows
from tests.support.server import VigilServer

from vigil.auth.scopes import Scope
from vigil.core.clock import SystemClock
from vigil.edge.audit import AuditMiddleware
from vigil.edge.request_id import RequestIdMiddleware
from vigil.services import Services
from vigil.storage.db import Database
from vigil.storage.tables import audit_events


def records_for(services: Services, request_id: str) -> list[Any]:
    with services.db.read() as conn:
        return list(
            conn.execute(select(audit_events).where(audit_events.c.request_id == request_id)).all()
        )


def test_each_outcome_has_one_record_with_the_response_request_id(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, scopes=[Scope.APPS_READ])
    calls = [
        (cred.token, "GET", "/v1/me", 200, "api.request"),
        (None, "GET", "/v1/me", 401, "auth.failed"),
        (factories.mistyped(cred.token), "GET", "/v1/me", 401, "auth.failed"),
        (cred.token, "POST", "/v1/apps", 403, "access.denied"),
        (cred.token, "GET", "/v1/apps/app_nope", 404, "api.request"),
    ]
    for token, method, path, status, action in calls:
        with server.client(token) as client:
            response = client.request(
                method,
                path,
                json={"name": "x", "scopes": ["apps:read"]} if method == "POST" else None,
            )
        assert response.status_code == status
        rows = records_for(services, response.headers["x-request-id"])
        assert len(rows) == 1, (path, status)
        row = rows[0]._mapping
        assert row["result"] == str(status)
        assert row["action"] == action
        assert row["method"] == method
        assert row["source_ip"] == "127.0.0.1"
        assert row["occurred_at"].tzinfo is not None
        if token == cred.token:
            assert row["dealer_id"] == cred.dealer.id
            assert row["app_id"] == cred.app.id
            assert row["credential_id"] == cred.key_id
            assert row["actor_type"] == "app"


def test_record_names_route_template_scope_and_target(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services, scopes=[Scope.APPS_READ])
    with server.client(cred.token, headers={"User-Agent": "audit-test/1"}) as client:
        response = client.get(f"/v1/apps/{cred.app.id}")
    row = records_for(services, response.headers["x-request-id"])[0]._mapping
    assert row["route"] == "/v1/apps/{app_id}"
    assert row["scope"] == "apps:read"
    assert (row["target_type"], row["target_id"]) == ("app", cred.app.id)
    assert row["user_agent"] == "audit-test/1"


def test_plain_http_requests_are_audited_too(server: VigilServer, services: Services) -> None:
    response = httpx.get(server.http_url + "/portal/", follow_redirects=False)
    assert response.status_code == 308
    rows = records_for(services, response.headers["x-request-id"])
    assert len(rows) == 1
    assert rows[0]._mapping["result"] == "308"


def test_cli_mutations_are_audited_with_the_os_user(
    server: VigilServer, services: Services
) -> None:
    out = server.run_cli("dealers", "create", "--name", "Audited Co", "--json")
    import json

    dealer_id = json.loads(out.stdout)["id"]
    rows = opened_rows(
        services,
        select(audit_events).where(
            audit_events.c.action == "dealer.created", audit_events.c.target_id == dealer_id
        ),
    )
    assert len(rows) == 1
    row = rows[0]
    assert row["actor_type"] == "operator"
    assert row["actor_id"].startswith("cli:")
    assert row["details"]["via"] == "cli"


def test_unhandled_error_is_a_500_problem_and_audited(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.migrate()
    audit = factories.audit_log(db, tmp_path)

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("secret internals")

    app = RequestIdMiddleware(AuditMiddleware(broken, audit.append, SystemClock()))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            return await client.get("/boom")

    response = asyncio.run(call())
    audit.close()
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert response.json()["code"] == "internal_error"
    with db.read() as conn:
        rows = conn.execute(select(audit_events)).all()
    assert [r._mapping["result"] for r in rows] == ["500"]
    assert rows[0]._mapping["request_id"] == response.headers["x-request-id"]


def test_response_is_withheld_when_the_record_cannot_be_written(tmp_path: Path) -> None:
    async def hello(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"the answer"})

    async def failing_append(record: Any) -> None:
        raise OSError("disk full")

    app = RequestIdMiddleware(AuditMiddleware(hello, failing_append, SystemClock()))

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            return await client.get("/")

    response = asyncio.run(call())
    assert response.status_code == 503
    assert "the answer" not in response.text
    assert response.json()["code"] == "audit_unavailable"


def test_group_commit_makes_every_concurrent_record_durable(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'g.db'}")
    db.migrate()
    audit = factories.audit_log(db, tmp_path)
    from datetime import UTC, datetime

    from vigil.audit.actions import AuditAction
    from vigil.audit.record import AuditRecord

    async def many() -> None:
        await asyncio.gather(
            *(
                audit.append(
                    AuditRecord(
                        datetime.now(UTC), AuditAction.API_REQUEST, "200", "app", request_id=f"r{i}"
                    )
                )
                for i in range(500)
            )
        )

    asyncio.run(many())
    audit.close()
    with db.read() as conn:
        ids = {r[0] for r in conn.execute(select(audit_events.c.request_id))}
    assert ids == {f"r{i}" for i in range(500)}


def test_oversized_attacker_controlled_values_are_still_audited(
    server: VigilServer, services: Services
) -> None:
    """A 300-character path segment and a huge user agent must not make the record (and the
    batch it shares a commit with) fail: the call is answered and recorded."""
    cred = factories.credential(services, scopes=[Scope.APPS_READ])
    with server.client(cred.token, headers={"User-Agent": "x" * 5000}) as client:
        response = client.get("/v1/apps/" + "a" * 300)
    assert response.status_code == 404
    rows = records_for(services, response.headers["x-request-id"])
    assert len(rows) == 1
    assert len(rows[0]._mapping["target_id"]) == 200
    assert len(rows[0]._mapping["user_agent"]) == 300
