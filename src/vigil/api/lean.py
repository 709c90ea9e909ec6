"""Public routes served without FastAPI's per-request machinery.

The OAuth token endpoint parses its own form and builds its own response; per request, FastAPI
only solved its two dependencies (the `public(...)` declaration, a no-op the edge has already
enforced, and `services`), opened two exit stacks and called it. For a JWT-bearer grant that
cost more CPU than verifying the assertion's signature (bench/RESULTS.md, "OAuth after
s3-oauthperf"). A `LeanRoute` keeps the declaration where the edge and the route-coverage test
read it (the route's dependency tree) and calls the endpoint with the request and the services.
The HTTPS edge serves it itself (`EdgeServedRoute`): Starlette's error page, FastAPI's telemetry
and body-limit layers, the idempotency middleware (a public route has no principal to key on), the
router and FastAPI's exit stacks cost ~200 us of CPU per grant and did nothing for this route.
The endpoint bounds what it reads of the body itself (api/oauth.py `read_form`).

Only for public routes: a route that requires a scope keeps its `requires(...)` dependency,
which checks the caller a second time before the handler.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from vigil.api.deps import services
from vigil.edge.asgi import Receive, Scope, Send
from vigil.edge.authorization import PublicRoute
from vigil.edge.direct import EdgeServedRoute

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class LeanRoute(EdgeServedRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        where = f"LeanRoute {path}"
        if list(inspect.signature(endpoint).parameters) != ["request", "svc"]:
            raise TypeError(f"{where}: the endpoint takes exactly (request, svc)")
        if not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"{where}: the endpoint must be `async def`")
        calls = [d.call for d in self.dependant.dependencies]
        if (
            len(calls) != 2
            or services not in calls
            or not any(isinstance(c, PublicRoute) for c in calls)
        ):
            raise TypeError(f"{where}: only public routes depending on nothing but `services`")

    def get_route_handler(self) -> Handler:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            response: Response = await endpoint(request, await services(request))
            return response

        return handler

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        response: Response = await self.endpoint(request, await services(request))
        await response(scope, receive, send)
