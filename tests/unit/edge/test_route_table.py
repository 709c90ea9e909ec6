"""The edge authorizes the route the router will run: `RouteTable` must pick the same one."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from vigil.auth.actor import Actor
from vigil.auth.scopes import Scope
from vigil.edge.authorization import PublicRoute, RequiredScope, public, requires
from vigil.edge.routes import RouteTable, requirement


def build() -> FastAPI:
    """Routes that shadow one another: order decides, as in Starlette's router."""
    app = FastAPI()
    router = APIRouter()

    @router.get("/v1/things/{thing_id}")
    async def one_thing(thing_id: str) -> dict[str, str]:
        return {"hit": "one_thing"}

    @router.get("/v1/things/special")  # shadowed by the route above for GET
    async def special_get() -> dict[str, str]:
        return {"hit": "special_get"}

    @router.post("/v1/things/special")
    async def special_post() -> dict[str, str]:
        return {"hit": "special_post"}

    @router.get("/v1/plain")
    async def plain(actor: Annotated[Actor, Depends(requires(Scope.SITES_READ))]) -> Any:
        return {"hit": "plain"}

    @router.get("/v1/open", dependencies=[Depends(public("documented public route for the test"))])
    async def open_route() -> dict[str, str]:
        return {"hit": "open_route"}

    app.router.routes.extend(router.routes)
    return app


def scope_for(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


async def call(app: FastAPI, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
        return await client.request(method, path)


REQUESTS = [
    ("GET", "/v1/things/special"),
    ("POST", "/v1/things/special"),
    ("GET", "/v1/things/42"),
    ("GET", "/v1/open"),
    ("POST", "/v1/things/42"),
    ("PUT", "/v1/things/special"),
    ("GET", "/v1/nothing"),
]


@pytest.mark.parametrize(("method", "path"), REQUESTS)
def test_the_table_finds_the_route_the_router_runs(method: str, path: str) -> None:
    app = build()
    table = RouteTable(app.router.routes)
    found = table.resolve(scope_for(method, path))
    response = asyncio.run(call(app, method, path))
    if response.status_code in (404, 405):
        assert found is None
    else:
        assert found is not None
        assert response.json()["hit"] == getattr(found[0], "endpoint").__name__  # noqa: B009


def test_requirements_are_read_from_the_declarations() -> None:
    app = build()
    table = RouteTable(app.router.routes)
    found = table.resolve(scope_for("GET", "/v1/plain"))
    assert found is not None
    assert table.requirement(found[0]) == RequiredScope(Scope.SITES_READ)
    found = table.resolve(scope_for("GET", "/v1/open"))
    assert found is not None
    assert isinstance(table.requirement(found[0]), PublicRoute)
    found = table.resolve(scope_for("GET", "/v1/things/7"))
    assert found is not None
    assert requirement(found[0]) is None
    assert found[1]["path_params"] == {"thing_id": "7"}


def test_routes_added_later_are_seen() -> None:
    app = build()
    table = RouteTable(app.router.routes)
    assert table.resolve(scope_for("GET", "/v1/late")) is None

    @app.get("/v1/late")
    async def late() -> None:
        return None

    found = table.resolve(scope_for("GET", "/v1/late"))
    assert found is not None
    assert found[0].path == "/v1/late"  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE"])
def test_the_cached_answer_for_plain_paths_is_what_the_routes_own_matching_gives(
    method: str,
) -> None:
    """Paths without parameters skip `matches` after the first look: same route, same child."""
    from starlette.routing import Match

    app = build()
    table = RouteTable(app.router.routes)
    for path in ("/v1/things/special", "/v1/open", "/v1/plain"):
        scope = scope_for(method, path)
        expected = next(
            (
                (route, child)
                for route in app.router.routes
                for match, child in [route.matches(scope)]
                if match is Match.FULL
            ),
            None,
        )
        for _ in range(2):  # computed, then cached
            assert table.resolve(scope) == expected
