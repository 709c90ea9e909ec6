"""Rendering portal pages: Jinja2 with autoescaping, and the headers every portal page carries.

The Content-Security-Policy allows scripts and styles from the portal's own origin only (no
inline script, no `eval`), forbids framing (clickjacking), plugins and foreign form targets.
HSTS and nosniff come from the edge for every HTTPS response; they are repeated nowhere here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

_env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def secure(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    view = getattr(request.state, "portal", None)
    html = _env.get_template(template).render(view=view, path=request.url.path, **context)
    return secure(HTMLResponse(html, status_code=status))
