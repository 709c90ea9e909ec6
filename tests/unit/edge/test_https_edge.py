"""The fused HTTPS edge on a tiny inline app: order of the steps, headers, audit before release,
and routes it answers itself (`DirectRoute`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel

from vigil.audit.record import AuditRecord
from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType, Environment, Principal
from vigil.auth.scopes import Scope
from vigil.core.clock import FrozenClock
from vigil.core.errors import AuthenticationFailed, NotFound
from vigil.edge.audit import build_record, recorded_in_transaction
from vigil.edge.authentication import Authenticator
from vigil.edge.authorization import public, requires
from vigil.edge.direct import DirectRoute, EdgeServedRoute
from vigil.edge.headers import HSTS_VALUE
from vigil.edge.https import HttpsEdge
from vigil.edge.rate_limit import TokenBuckets

GOOD = "good-token"
PRINCIPAL = Principal(
    actor_type=ActorType.APP,
    actor_id="app_1",
    dealer_id="dlr_1",
    environment=Environment.SANDBOX,
    scopes=frozenset({Scope.SITES_READ}),
    credential_id="key_1",
    credential_kind="api_key",
    app_id="app_1",
)


class Who(BaseModel):
    dealer_id: str
    scope: str | None


class World:
    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.calls: list[str] = []
        self.events: list[str] = []

    def verify(self, token: str, client_ip: str | None) -> Principal:
        if token != GOOD:
            raise AuthenticationFailed("The API key is not valid.")
        return PRINCIPAL

    async def append(self, record: AuditRecord) -> None:
        self.events.append("audit")
        self.records.append(record)

    def app(self) -> HttpsEdge:
        router = APIRouter(route_class=DirectRoute)
        calls = self.calls

        @router.get("/who", response_model=Who)
        async def who(actor: Annotated[Actor, Depends(requires(Scope.SITES_READ))]) -> Who:
            calls.append("who")
            assert actor.principal is not None
            return Who(dealer_id=actor.principal.dealer_id, scope=actor.scope)

        @router.get("/alarms", response_model=Who)
        async def alarms(actor: Annotated[Actor, Depends(requires(Scope.ALARMS_READ))]) -> Who:
            calls.append("alarms")
            return Who(dealer_id="never", scope=None)

        @router.get("/gone", response_model=Who)
        async def gone(actor: Annotated[Actor, Depends(requires(None))]) -> Who:
            raise NotFound("No such thing.")

        @router.get("/boom", response_model=Who)
        async def boom(actor: Annotated[Actor, Depends(requires(None))]) -> Who:
            raise RuntimeError("secret internals")

        return self.edge(router)

    def edge(self, router: APIRouter) -> HttpsEdge:
        """The edge in front of a FastAPI app serving `router`'s routes."""
        api = FastAPI()
        api.router.routes.extend(router.routes)
        return HttpsEdge(
            api,
            routes=api.router.routes,
            authenticator=Authenticator(self.verify, TokenBuckets(100, 100)),
            buckets=TokenBuckets(100, 100),
            append=self.append,
            clock=FrozenClock(datetime(2026, 1, 1, tzinfo=UTC)),
            trusted_proxies=[],
        )

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        app = self.app()
        events = self.events

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            async def spy(message: Any) -> None:
                if message["type"] == "http.response.start":
                    events.append("response")
                await send(message)

            await app(scope, receive, spy)

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=asgi)
            headers = {"authorization": f"Bearer {token}"} if token else {}
            async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
                return await client.get(path, headers=headers)

        return asyncio.run(call())


@pytest.fixture
def world() -> World:
    return World()


def test_direct_route_answers_with_the_model_and_every_edge_header(world: World) -> None:
    response = world.get("/who", GOOD)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"dealer_id": "dlr_1", "scope": "sites:read"}
    assert response.headers["strict-transport-security"] == HSTS_VALUE.decode()
    assert response.headers["x-content-type-options"] == "nosniff"
    request_id = response.headers["x-request-id"]
    assert world.events == ["audit", "response"]
    (record,) = world.records
    assert (record.request_id, record.route, record.result) == (request_id, "/who", "200")
    assert (record.scope, record.credential_id) == ("sites:read", "key_1")


def test_missing_scope_is_refused_before_the_endpoint_runs(world: World) -> None:
    response = world.get("/alarms", GOOD)
    assert response.status_code == 403
    assert response.json()["code"] == "insufficient_scope"
    assert 'scope="alarms:read"' in response.headers["www-authenticate"]
    assert world.calls == []
    (record,) = world.records
    assert (record.route, record.scope, record.result) == ("/alarms", "alarms:read", "403")


def test_no_credential_and_bad_credential_are_401(world: World) -> None:
    for token in (None, "bad-token"):
        response = world.get("/who", token)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["strict-transport-security"] == HSTS_VALUE.decode()
    assert world.calls == []
    assert [r.result for r in world.records] == ["401", "401"]


def test_endpoint_errors_are_problems_and_audited(world: World) -> None:
    response = world.get("/gone", GOOD)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    response = world.get("/boom", GOOD)
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert response.json()["code"] == "internal_error"
    assert response.headers["x-request-id"]
    assert [r.result for r in world.records] == ["404", "500"]


def test_a_route_that_needs_the_request_cannot_be_direct() -> None:
    router = APIRouter(route_class=DirectRoute)
    with pytest.raises(TypeError, match="nothing but the actor"):

        @router.get("/q", response_model=Who)
        async def with_query(
            actor: Annotated[Actor, Depends(requires(None))], q: str
        ) -> Who:  # pragma: no cover
            raise AssertionError

    with pytest.raises(TypeError, match="only GET"):

        @router.post("/write", response_model=Who)
        async def write(
            actor: Annotated[Actor, Depends(requires(None))],
        ) -> Who:  # pragma: no cover
            raise AssertionError

    with pytest.raises(TypeError, match="async def"):

        @router.get("/sync", response_model=Who)
        def sync(actor: Annotated[Actor, Depends(requires(None))]) -> Who:  # pragma: no cover
            raise AssertionError


def test_no_durable_record_means_503_with_every_edge_header(world: World) -> None:
    async def failing(record: AuditRecord) -> None:
        raise OSError("disk full")

    world.append = failing  # type: ignore[method-assign]
    response = world.get("/who", GOOD)
    assert response.status_code == 503
    assert response.json()["code"] == "audit_unavailable"
    assert "dlr_1" not in response.text
    assert response.headers["retry-after"] == "5"
    assert response.headers["strict-transport-security"] == HSTS_VALUE.decode()
    assert response.json()["request_id"] == response.headers["x-request-id"]


# --- public routes the edge serves itself (`EdgeServedRoute`, the token endpoint's LeanRoute) ---


class Served(EdgeServedRoute):
    """Answers with the status named in the path; `/served/recorded-*` first says its record
    for a 200 committed with its own writes, as the JWT-bearer grant does."""

    async def serve(self, scope: Any, receive: Any, send: Any) -> None:
        status = int(scope["path"].rsplit("-", 1)[1])
        if "recorded" in scope["path"]:
            recorded_in_transaction(scope, build_record(scope, 200, datetime.now(UTC)))
        if status == 404:
            raise NotFound("No such thing.")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


class ServedWorld(World):
    def app(self) -> HttpsEdge:
        router = APIRouter(route_class=Served)

        async def endpoint() -> None:
            raise AssertionError("the edge serves this route itself")

        for path in ("/served-200", "/served/recorded-200", "/served/recorded-500", "/served-404"):
            router.add_api_route(
                path, endpoint, methods=["POST", "GET"], dependencies=[Depends(public("test"))]
            )
        return self.edge(router)


def test_edge_served_route_is_audited_by_the_edge_unless_its_record_committed() -> None:
    world = ServedWorld()
    plain = world.get("/served-200")
    assert plain.status_code == 200
    assert plain.headers["strict-transport-security"] == HSTS_VALUE.decode()
    assert [(r.route, r.result) for r in world.records] == [("/served-200", "200")]
    world.records.clear()
    assert world.get("/served/recorded-200").status_code == 200
    assert world.records == []  # its record committed with the route's own writes
    # The route said "recorded for a 200" but answered otherwise: the edge records that.
    assert world.get("/served/recorded-500").status_code == 500
    assert [r.result for r in world.records] == ["500"]
    world.records.clear()
    missing = world.get("/served-404")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert [(r.result, r.details.get("error")) for r in world.records] == [("404", "not_found")]
