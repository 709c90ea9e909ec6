"""An unhandled error inside a route is a 500 problem+json, audited, with no internals: the HTTPS
edge is the application's outermost layer, and Starlette's last-resort page renders Vigil's
problem document instead of its plain-text page."""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
from fastapi import Depends
from sqlalchemy import select
from tests.support import factories

from vigil.app import create_api
from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.edge.authorization import requires
from vigil.services import Services
from vigil.storage.tables import audit_events


def test_a_route_that_raises_answers_500_problem_json_and_is_audited(services: Services) -> None:
    app = create_api(services)

    @app.get("/v1/boom")
    def boom(actor: Annotated[Actor, Depends(requires(Scope.SITES_READ))]) -> None:
        raise RuntimeError("secret internals")

    cred = factories.credential(services, scopes=[Scope.SITES_READ])

    async def call() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            headers = {"authorization": f"Bearer {cred.token}"}
            return await client.get("/v1/boom", headers=headers), await client.get(
                "/v1/me", headers=headers
            )

    response, me = asyncio.run(call())
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "internal_error"
    assert "secret internals" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"  # the edge's headers
    request_id = response.headers["x-request-id"]
    assert response.json()["request_id"] == request_id
    with services.db.read() as conn:
        results = conn.execute(
            select(audit_events.c.result, audit_events.c.route).where(
                audit_events.c.request_id == request_id
            )
        ).all()
    assert [tuple(r) for r in results] == [("500", "/v1/boom")]
    assert me.status_code == 200  # the same application keeps serving
