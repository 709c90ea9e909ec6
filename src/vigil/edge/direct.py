"""Routes the HTTPS edge answers itself, without FastAPI's per-request machinery.

A GET route whose endpoint needs nothing from the request but the authorized caller (no path,
query, header, cookie or body parameters, no other dependency) gains nothing from FastAPI's request
handling: dependency solving, two exit stacks, a `Request` object, response validation through
`jsonable_encoder`. Together those cost more CPU per call than the rest of the edge (bench/
RESULTS.md). For such a route the edge, which has already authenticated the caller and checked
the route's declared requirement, calls the endpoint with the `Actor` and serialises the returned
model with the route's own response model (pydantic's compiled serializer).

Use it with `APIRouter(route_class=DirectRoute)`. It is still an `APIRoute`: the declaration is
the same `Depends(requires(...))` dependency, the OpenAPI document and the route-coverage test
read it as before, and FastAPI can still serve the route normally. A route that does not fit is
refused when it is declared, not silently served differently.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from fastapi.datastructures import DefaultPlaceholder
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter

from vigil.auth.actor import Actor
from vigil.edge.asgi import Receive, Scope, Send
from vigil.edge.authorization import RequiredScope

JSON_CONTENT_TYPE = b"application/json"


class DirectRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        where = f"DirectRoute {path}"
        dependant = self.dependant
        if (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.request_param_name
            or dependant.response_param_name
            or dependant.background_tasks_param_name
        ):
            raise TypeError(f"{where}: the endpoint may take nothing but the actor")
        if not self.methods or not self.methods <= {"GET", "HEAD"}:
            # Safe methods only: no body to read, and nothing for middlewares that act on
            # writes (idempotency keys) to miss when the edge answers.
            raise TypeError(f"{where}: only GET routes can be answered by the edge")
        deps = dependant.dependencies
        if len(deps) != 1 or not isinstance(deps[0].call, RequiredScope) or not deps[0].name:
            raise TypeError(f"{where}: needs exactly one parameter, `Depends(requires(...))`")
        if not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"{where}: the endpoint must be `async def`")
        model = self.response_model
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"{where}: needs a pydantic response model")
        response_class = self.response_class
        if isinstance(response_class, DefaultPlaceholder):
            response_class = response_class.value
        if (
            response_class is not JSONResponse
            or self.response_model_include is not None
            or self.response_model_exclude is not None
            or not self.response_model_by_alias
            or self.response_model_exclude_unset
            or self.response_model_exclude_defaults
            or self.response_model_exclude_none
        ):
            raise TypeError(f"{where}: only the default JSON response is supported")
        self.requirement: RequiredScope = deps[0].call
        self.success_status: int = self.status_code or 200
        self._endpoint = endpoint
        self._actor_param = deps[0].name
        self._adapter: TypeAdapter[Any] = TypeAdapter(model)

    async def respond(self, actor: Actor) -> bytes:
        """The JSON body of a successful call (exceptions propagate to the edge)."""
        result = await self._endpoint(**{self._actor_param: actor})
        # Validated against the response model as FastAPI would (a no-op for an instance of
        # it), then serialised by pydantic-core in one step.
        return self._adapter.dump_json(self._adapter.validate_python(result))


class EdgeServedRoute(APIRoute, ABC):
    """A public route whose endpoint takes the raw request and builds its own response (a
    front's `LeanRoute`): the edge, once it has refused, rate-limited and resolved the request,
    calls `serve` with it, outside the middlewares and router FastAPI would otherwise run
    before and after it (their work for such a route is none: no principal for idempotency,
    no dependency exit stack, the body bounded by the endpoint). The edge still audits the
    response and renders a `VigilError` (or any other exception) as problem+json."""

    @abstractmethod
    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request on `send`."""
