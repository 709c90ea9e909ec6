"""The portal's own CSS and JavaScript, served from a fixed list (no directory walking)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.responses import FileResponse, Response

from vigil.core.errors import NotFound
from vigil.edge.authorization import public
from vigil.portal.pages import STATIC, secure
from vigil.portal.routing import PortalRoute

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
# htmx is vendored (docs/portal.md records its version and SHA-256). Its name carries the
# version, so its bytes never change under that name: browsers may keep it for a year.
HTMX = "htmx-2.0.11.min.js"
HTMX_INTEGRITY = "sha384-2OatzQy1H+Zd/IIrjr1TcuDGqLXeHhbooAyJY1KdQMKnr4LZ22k31GBLdYKHmVjg"
ASSETS = {"portal.css": "text/css", "portal.js": "text/javascript", HTMX: "text/javascript"}


@router.get(
    "/portal/static/{name}",
    dependencies=[Depends(public("the portal's stylesheet and script: public, no data"))],
)
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound("No such file.")
    response = FileResponse(STATIC / name, media_type=ASSETS[name])
    long = name == HTMX
    response.headers["cache-control"] = (
        "public, max-age=31536000, immutable" if long else "public, max-age=3600"
    )
    return secure(response)
