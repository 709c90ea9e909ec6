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

# Every error, from the edge or a handler, is one of these (RFC 9457; vigil.edge.problem).
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Stable machine-readable slug"},
        "request_id": {"type": "string"},
    },
    "additionalProperties": True,
}
PROBLEM_RESPONSE: dict[str, Any] = {
    "description": "An RFC 9457 problem document",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}

# Honoured on every authenticated POST by the edge (vigil.edge.idempotency), so declared on each.
IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the same key and request within 24 h returns the first "
    "response (`Idempotent-Replayed: true`); the same key with a different request is 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}


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
        doc["components"].setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        doc["components"]["schemas"].pop("HTTPValidationError", None)
        doc["components"]["schemas"].pop("ValidationError", None)
        for route in app.routes:
            if not isinstance(route, APIRoute):
                continue
            req = requirement(route)
            for method in route.methods or ():
                op = doc["paths"].get(route.path_format, {}).get(method.lower())
                if op is None:
                    continue
                responses = op.setdefault("responses", {})
                responses["422"] = PROBLEM_RESPONSE | {"description": "Invalid input"}
                responses["4XX"] = PROBLEM_RESPONSE
                responses["503"] = PROBLEM_RESPONSE | {
                    "description": "The audit record could not be made durable; nothing changed"
                }
                if method == "POST" and isinstance(req, RequiredScope):
                    op.setdefault("parameters", []).append(IDEMPOTENCY_KEY)
                if isinstance(req, RequiredScope):
                    scopes = [req.scope.value] if req.scope else []
                    op["security"] = [{SCHEME: scopes}]
                    op["x-vigil-scope"] = req.scope.value if req.scope else None
                else:
                    op["security"] = []
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]
