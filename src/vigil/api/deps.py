"""Dependencies shared by handlers."""

from __future__ import annotations

from starlette.requests import Request

from vigil.services import Services


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
