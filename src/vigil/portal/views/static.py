"""The portal's own CSS and JavaScript, served from a fixed list (no directory walking)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.responses import FileResponse, Response

from vigil.core.errors import NotFound
from vigil.edge.authorization import public
from vigil.portal.pages import STATIC, secure
from vigil.portal.routing import PortalRoute

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
ASSETS = {"portal.css": "text/css", "portal.js": "text/javascript"}


@router.get(
    "/portal/static/{name}",
    dependencies=[Depends(public("the portal's stylesheet and script: public, no data"))],
)
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound("No such file.")
    response = FileResponse(STATIC / name, media_type=ASSETS[name])
    response.headers["cache-control"] = "public, max-age=3600"
    return secure(response)
