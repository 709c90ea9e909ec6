"""Composition root: the HTTPS application and the plain-HTTP guard, built from the services.

The HTTPS edge is one middleware, `HttpsEdge`, running DESIGN.md's request flow in order:
request id -> client IP -> authenticate -> rate limit -> authorize (the route's declaration) ->
route, with the audit step and the security headers around every response it lets out, failed
authentication included. Inside it, `IdempotencyMiddleware` handles `Idempotency-Key` on
authorized POSTs before the router runs the handler.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from fastapi import FastAPI

from vigil import __version__
from vigil.api import errors, oauth, openapi, wellknown
from vigil.api.v1 import (
    alarms,
    apps,
    audit,
    devices,
    grants,
    me,
    oauth_clients,
    sites,
    snapshots,
    telemetry,
    webhooks,
)
from vigil.auth.actor import Actor
from vigil.auth.oauth.clients import basic_credentials
from vigil.auth.oauth.errors import OAuthError
from vigil.auth.principal import ActorType
from vigil.edge.asgi import ASGIApp, Scope, header, state
from vigil.edge.audit import AuditMiddleware
from vigil.edge.authentication import Authenticator
from vigil.edge.client_ip import ClientIpMiddleware
from vigil.edge.credentials import is_basic
from vigil.edge.http_guard import PlainHttpGuard
from vigil.edge.https import HttpsEdge
from vigil.edge.idempotency import IdempotencyMiddleware
from vigil.edge.rate_limit import TokenBuckets
from vigil.edge.request_id import RequestIdMiddleware
from vigil.portal import install as install_portal
from vigil.services import Services

# Routes FastAPI adds itself, outside our routers: public by design, listed so the route
# coverage test can tell a deliberate exception from a forgotten declaration.
PUBLIC_FRAMEWORK_PATHS = {
    "/openapi.json": "the API description is public documentation",
    "/docs": "interactive documentation page",
    "/docs/oauth2-redirect": "part of the documentation page",
    "/redoc": "alternative documentation page",
}


class EdgeFirst(FastAPI):
    """FastAPI with the HTTPS edge as its outermost layer, outside FastAPI's own middlewares.

    `add_middleware` would put the edge inside Starlette's error page, FastAPI's telemetry and
    body-limit layers, which every request then crossed before the edge could answer it. The
    edge refuses, audits and answers its direct routes itself, so those layers only matter for
    what it passes on; unhandled errors still become problem+json (`api.errors.internal_error`).
    """

    edge: Callable[[ASGIApp], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        inner: ASGIApp = super().build_middleware_stack()
        return inner if self.edge is None else self.edge(inner)


def create_api(services: Services) -> FastAPI:
    app = EdgeFirst(
        title="Vigil API",
        version=__version__,
        description=(
            "Video-verified alarm monitoring. Every call is authenticated, scoped and audited."
        ),
        # FastAPI's native OpenTelemetry is off: Vigil configures no OpenTelemetry provider (its
        # record of every call is the audit trail), and with it on FastAPI looks up the global
        # tracer, meter and logger providers on every request to find out that none is set.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    # Failed sign-ins per client address, shared by every place a person signs in (portal and
    # OAuth consent): one address guessing across accounts, or across the two forms, is slowed
    # alike without locking any account.
    app.state.sign_in_failures = TokenBuckets(
        services.settings.auth_failure_per_second, services.settings.auth_failure_burst
    )
    errors.install(app)
    openapi.install(app)
    routers = (
        me.router,
        # Early: the router tries routes in order, and the token endpoint is a hot path; no
        # `/oauth` or `/.well-known` path overlaps another router's.
        wellknown.router,
        oauth.router,
        apps.router,
        audit.router,
        sites.router,
        devices.router,
        telemetry.router,
        alarms.router,
        snapshots.router,
        webhooks.router,
        oauth_clients.router,
        grants.router,
    )
    for router in routers:
        # Mounted flat (not `include_router`) so `app.routes` lists every APIRoute with its
        # declared requirement: the route-coverage test reads exactly what serves requests.
        app.router.routes.extend(router.routes)
    install_portal(app, services)
    settings = services.settings
    app.add_middleware(IdempotencyMiddleware, store=services.idempotency, clock=services.clock)
    app.edge = partial(
        HttpsEdge,
        routes=app.router.routes,
        authenticator=Authenticator(
            services.credentials.verify,
            TokenBuckets(settings.auth_failure_per_second, settings.auth_failure_burst),
        ),
        buckets=TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst),
        append=services.audit.append,
        clock=services.clock,
        trusted_proxies=settings.trusted_proxies,
    )
    return app


def create_http_guard(services: Services) -> ASGIApp:
    """The plain-HTTP listener's whole application: redirect or refuse, audited."""
    settings = services.settings

    def guard_actor(scope: Scope) -> Actor:
        st = state(scope)
        return Actor(
            type=ActorType.SYSTEM,
            id="http-guard",
            via="http",
            request_id=st.get("request_id"),
            source_ip=st.get("client_ip"),
            user_agent=header(scope, b"user-agent"),
        )

    async def expose(credential: str, scope: Scope) -> None:
        st = state(scope)
        actor = guard_actor(scope)
        if is_basic(credential):  # OAuth client authentication: id and secret
            try:
                basic = basic_credentials(credential)
            except OAuthError:
                return
            if basic is not None:
                services.oauth_clients.mark_exposed(actor, basic.client_id, basic.secret)
            return
        key = services.keys.mark_exposed(actor, credential)
        if key is not None:
            st["exposed_key"] = key
        else:
            services.oauth.mark_exposed(actor, credential)

    async def expose_client_secret(client_id: str, secret: str, scope: Scope) -> None:
        services.oauth_clients.mark_exposed(guard_actor(scope), client_id, secret)

    guard = PlainHttpGuard(settings.https_port, settings.public_host, expose, expose_client_secret)
    audited = AuditMiddleware(guard, services.audit.append, services.clock)
    return RequestIdMiddleware(ClientIpMiddleware(audited, settings.trusted_proxies))
