"""Map errors to RFC 9457 problem documents, once for the whole API."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from vigil.core.errors import VigilError
from vigil.edge.problem import error_body, error_headers, problem_body

PROBLEM = "application/problem+json"


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _problem(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM,
        headers={"cache-control": "no-store"} | (headers or {}),
    )


async def vigil_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, VigilError)
    request.state.error = exc
    headers = {k.decode(): v.decode() for k, v in error_headers(exc)}
    return _problem(exc.status, error_body(exc, _request_id(request)), headers)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    request.state.error = "invalid_input"
    errors = [
        {"location": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
        for e in exc.errors()
    ]
    body = problem_body(
        422,
        "Invalid input",
        "The request does not match the documented schema.",
        "invalid_input",
        _request_id(request),
        errors=errors,
    )
    return _problem(422, body)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    request.state.error = code
    detail = exc.detail if isinstance(exc.detail, str) else "Request refused."
    body = problem_body(exc.status_code, detail, detail, code, _request_id(request))
    return _problem(exc.status_code, body, dict(exc.headers or {}))


async def internal_error(request: Request, exc: Exception) -> Response:
    """Starlette's last resort (ServerErrorMiddleware) as problem+json, never its plain-text page
    or a trace: the HTTPS edge sits outside it, so this is what an unhandled error becomes. The
    exception is still raised on after the response, to be logged."""
    request.state.error = "internal_error"
    body = problem_body(
        500,
        "Internal error",
        "Something went wrong on our side; quote the request id to support.",
        "internal_error",
        _request_id(request),
    )
    return _problem(500, body, {})


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(VigilError, vigil_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
