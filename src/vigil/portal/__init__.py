"""The dealer portal (issue 8): server-rendered pages for people, over the same services and
the same permission system as the API (S12). Mounted into the HTTPS application by
`install`; the domain never imports it."""

from __future__ import annotations

import copy

from fastapi import FastAPI
from starlette.routing import BaseRoute

from vigil.auth.oauth.csrf import CsrfTokens
from vigil.portal.routing import PortalRoute
from vigil.portal.sessions import SessionStore
from vigil.portal.views import (
    account,
    alarms,
    apps,
    audit,
    auth,
    dashboard,
    devices,
    settings,
    sites,
    static,
    users,
    webhooks,
)
from vigil.services import Services


def install(app: FastAPI, services: Services) -> None:
    app.state.portal_sessions = SessionStore(services.db, services.audit, services.clock)
    app.state.portal_csrf = CsrfTokens(services.db)
    for module in (
        auth,
        dashboard,
        alarms,
        apps,
        webhooks,
        audit,
        sites,
        devices,
        users,
        settings,
        account,
        static,
    ):
        # Flat, like the API's routers, so the route-coverage test sees every portal route.
        app.router.routes.extend(
            _on_host(r, services.settings.portal_host) for r in module.router.routes
        )


def _on_host(route: BaseRoute, host: str | None) -> BaseRoute:
    """`route` restricted to the portal's own host name, when one is configured: a copy, so the
    module's route (shared by every application built in this process) stays as it is."""
    if host is None or not isinstance(route, PortalRoute):
        return route
    bound = copy.copy(route)
    bound.host = host.lower()
    return bound
