"""CSRF for the forms shown before a session exists (sign-in): the OAuth page's signed
double-submit token, with the portal's own `__Host-` cookie. After sign-in every form carries
the session's own token instead (access.check_csrf)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vigil.auth.oauth.csrf import CsrfTokens

COOKIE = "__Host-vigil_portal_csrf"


def issue(request: Request, tokens: CsrfTokens) -> tuple[str, str]:
    """(nonce for the cookie, token for the form); an existing nonce is kept so two open
    tabs both work."""
    nonce = request.cookies.get(COOKIE)
    if not nonce or len(nonce) > 100:
        nonce = tokens.new_nonce()
    return nonce, tokens.token_for(nonce)


def set_cookie(response: Response, nonce: str) -> None:
    response.headers.append(
        "set-cookie", f"{COOKIE}={nonce}; Path=/; Secure; HttpOnly; SameSite=Strict"
    )


def valid(request: Request, tokens: CsrfTokens, token: str) -> bool:
    return tokens.valid(request.cookies.get(COOKIE), token)
