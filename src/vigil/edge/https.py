"""The HTTPS edge: every step of DESIGN.md's request flow, in one pure-ASGI middleware.

Order, as the design gives it: request id -> client IP -> authenticate -> rate limit ->
authorize (the route's declared requirement) -> route, with the audit step and the security
headers wrapped around whatever response comes out, refusals and errors included.

Why one middleware and not one per step: each step is still its own small, separately tested
piece (`request_id`, `client_ip`, `authentication`, `rate_limit`, `routes`/`authorization`,
`audit`, `headers`); only the ASGI plumbing is shared. Six stacked middlewares meant six
coroutine frames and, for four of them, a `send` wrapper each per request, and the headers were
scanned once per step. Here the headers are read in one pass and the response passes through a
single wrapper that adds the request id and security headers and holds the response start until
its audit record is durable. Routes declared as `DirectRoute` are answered here directly.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute

from vigil.auth.actor import Actor
from vigil.auth.principal import Principal
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput, VigilError
from vigil.edge.asgi import ASGIApp, Message, Receive, Scope, Send, state
from vigil.edge.audit import Append, AuditGate
from vigil.edge.authentication import Authenticator
from vigil.edge.authorization import RequiredScope
from vigil.edge.client_ip import IpNetwork, resolve_client_ip
from vigil.edge.direct import JSON_CONTENT_TYPE, DirectRoute, EdgeServedRoute
from vigil.edge.headers import SECURITY_HEADERS
from vigil.edge.problem import send_error
from vigil.edge.rate_limit import TokenBuckets, rate_limit
from vigil.edge.request_id import new_request_id
from vigil.edge.routes import RouteTable


class HttpsEdge:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[BaseRoute],
        authenticator: Authenticator,
        buckets: TokenBuckets,
        append: Append,
        clock: Clock,
        trusted_proxies: Sequence[IpNetwork],
    ) -> None:
        self.app = app
        self.routes = RouteTable(routes)
        self.authenticator = authenticator
        self.buckets = buckets
        self.gate = AuditGate(append, clock)
        self.trusted = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        st = scope.get("state")
        if st is None:
            st = scope["state"] = {}
        request_id = new_request_id()
        st["request_id"] = request_id
        # The few headers the edge reads, in one pass; the first occurrence counts, as in
        # `asgi.header`.
        authorization = agent = forwarded = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == b"user-agent":
                if agent is None:
                    agent = value.decode("latin-1")
            elif name == b"x-forwarded-for" and forwarded is None:
                forwarded = value.decode("latin-1")
        client = scope.get("client")
        client_ip = resolve_client_ip(client[0] if client else None, forwarded, self.trusted)
        st["client_ip"] = client_ip
        headers = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]

        refusal = self.authenticator.authenticate(scope, st, authorization)
        principal = st.get("principal")
        if refusal is None:
            refusal = rate_limit(self.buckets, principal, client_ip)
        route: BaseRoute | None = None
        admitted: Principal | None = None
        if refusal is None and (found := self.routes.resolve(scope)) is not None:
            route, child = found
            requirement = self.routes.requirement(route)
            if isinstance(requirement, RequiredScope):
                if requirement.scope is not None:
                    st["scope_used"] = requirement.scope.value
                if requirement.admitted_at_edge:
                    try:
                        admitted = requirement.admit(principal)
                    except VigilError as error:
                        refusal = error
            query = scope.get("query_string", b"")
            if refusal is None and (why := self.routes.query_refusal(route, query)):
                refusal = InvalidInput(why)
            if refusal is not None or isinstance(route, DirectRoute | EdgeServedRoute):
                # What the router would have recorded: the audit record names the route.
                scope["route"] = route
                scope.update(child)

        started = dropped = False

        async def edge_send(message: Message) -> None:
            nonlocal started, dropped
            if dropped:
                return
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *headers]
                if not await self.gate.durable(scope, message["status"], agent):
                    dropped = True
                    await self.gate.unavailable(send, request_id, headers)
                    return
            await send(message)

        try:
            if refusal is not None:
                st["error"] = refusal
                await send_error(edge_send, refusal, request_id)
            elif isinstance(route, DirectRoute) and admitted is not None:
                # (A DirectRoute always declares a RequiredScope, so `admitted` is set here;
                # were it not, FastAPI would serve the route and its dependency would refuse.)
                actor = Actor.for_principal(
                    admitted,
                    request_id=request_id,
                    source_ip=client_ip,
                    user_agent=agent,
                    scope=route.requirement.scope_used,
                )
                await self._direct(route, actor, st, edge_send)
            elif isinstance(route, EdgeServedRoute):
                await self._served(route, scope, receive, edge_send)
            else:
                await self.app(scope, receive, edge_send)
        except Exception:
            if started:
                raise
            await self.gate.internal_error(scope, send, agent, headers)

    @staticmethod
    async def _served(route: EdgeServedRoute, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await route.serve(scope, receive, send)
        except VigilError as error:  # as api.errors renders it for routes FastAPI serves
            st = state(scope)
            st["error"] = error
            await send_error(send, error, st.get("request_id"))

    @staticmethod
    async def _direct(route: DirectRoute, actor: Actor, st: dict[str, object], send: Send) -> None:
        try:
            body = await route.respond(actor)
        except VigilError as error:
            st["error"] = error
            await send_error(send, error, actor.request_id)
            return
        await send(
            {
                "type": "http.response.start",
                "status": route.success_status,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", JSON_CONTENT_TYPE),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
