"""Dependencies shared by handlers."""

from __future__ import annotations

from starlette.requests import Request

from vigil.services import Services


async def services(request: Request) -> Services:
    # async on purpose: a sync dependency costs a thread-pool hop per request.
    svc: Services = request.app.state.services
    return svc
