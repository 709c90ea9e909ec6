"""The OpenAPI document, with each operation's declared scope as its security requirement.

The scope comes from the same route declaration the edge enforces, so the document cannot
drift from what the server actually checks.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from vigil.auth.scopes import DESCRIPTIONS
from vigil.edge.authorization import RequiredScope
from vigil.edge.routes import requirement

SCHEME = "vigilBearer"


def install(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        doc.setdefault("components", {})["securitySchemes"] = {
            SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key (`vgl_live_…` / `vgl_test_…`). Scopes: "
                + "; ".join(f"`{s.value}`: {d}" for s, d in DESCRIPTIONS.items()),
            }
        }
        for route in app.routes:
            if not isinstance(route, APIRoute):
                continue
            req = requirement(route)
            for method in route.methods or ():
                op = doc["paths"].get(route.path_format, {}).get(method.lower())
                if op is None:
                    continue
                if isinstance(req, RequiredScope):
                    scopes = [req.scope.value] if req.scope else []
                    op["security"] = [{SCHEME: scopes}]
                    op["x-vigil-scope"] = req.scope.value if req.scope else None
                else:
                    op["security"] = []
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]
