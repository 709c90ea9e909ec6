"""S12: no route exists without a declared scope or an explicit, documented public marking."""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from vigil.app import PUBLIC_FRAMEWORK_PATHS, create_api
from vigil.edge.authorization import PublicRoute, RequiredScope
from vigil.services import Services


def declarations(route: APIRoute) -> list[object]:
    return [
        dep.call
        for dep in route.dependant.dependencies
        if isinstance(dep.call, RequiredScope | PublicRoute)
    ] + [
        sub.call
        for dep in route.dependant.dependencies
        for sub in dep.dependencies
        if isinstance(sub.call, RequiredScope | PublicRoute)
    ]


def uncovered(routes: list[BaseRoute]) -> list[str]:
    missing = []
    for route in routes:
        path = getattr(route, "path", repr(route))
        if isinstance(route, APIRoute):
            if len(declarations(route)) != 1:
                missing.append(f"{sorted(route.methods)} {path}")
        elif path not in PUBLIC_FRAMEWORK_PATHS:
            missing.append(path)
    return missing


def test_every_route_declares_a_scope_or_is_public(services: Services) -> None:
    app = create_api(services)
    assert uncovered(app.routes) == []
    api_routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert len(api_routes) >= 8


def test_a_route_without_a_declaration_is_caught(services: Services) -> None:
    app = create_api(services)

    @app.get("/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    assert uncovered(app.routes) == ["['GET'] /v1/forgotten"]


def test_public_routes_are_few_and_reasoned(services: Services) -> None:
    app = create_api(services)
    public = {
        r.path: d.reason
        for r in app.routes
        if isinstance(r, APIRoute)
        for d in declarations(r)
        if isinstance(d, PublicRoute)
    }
    assert set(public) == {
        "/.well-known/security.txt",
        "/.well-known/vigil-audit-keys.json",
        # OAuth (S10, S11): clients, users and partners authenticate inside these requests.
        "/.well-known/oauth-authorization-server",
        "/oauth/authorize",
        "/oauth/token",
        "/oauth/revoke",
        "/oauth/introspect",
        # The portal's sign-in steps and its static CSS/JS (issue 8).
        "/portal/sign-in",
        "/portal/sign-in/totp",
        "/portal/mfa/enroll",
        "/portal/static/{name}",
    }
    assert all(len(reason) > 10 for reason in public.values())
