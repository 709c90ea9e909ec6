"""The dealer portal (issue 8): server-rendered pages for people, over the same services and
the same permission system as the API (S12). Mounted into the HTTPS application by
`install`; the domain never imports it."""

from __future__ import annotations

from fastapi import FastAPI

from vigil.auth.oauth.csrf import CsrfTokens
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
        app.router.routes.extend(module.router.routes)
