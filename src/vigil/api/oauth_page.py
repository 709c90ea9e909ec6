"""The server-rendered sign-in and consent page of the authorization endpoint.

Deliberately minimal and dependency-free: every value is escaped, the page cannot be framed
(clickjacking a consent button is the classic attack on this page), loads nothing but the
portal's own stylesheet (no script at all) and is never cached. No `form-action` directive:
after consent the browser follows a redirect to the client's registered URI.
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

from vigil.auth.scopes import DESCRIPTIONS, Scope

HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='stylesheet' href='/portal/static/portal.css'>"
        f"<title>{escape(title)}</title></head><body><main id='main'>"
        f"<section class='card consent'><p class='brand big'><span class='mark' aria-hidden='true'>"
        f"◉</span> Vigil</p>{body}</section></main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def consent(
    *,
    app_name: str,
    dealer_name: str,
    environment: str,
    scopes: frozenset[Scope],
    fields: dict[str, str],
    csrf: str,
    message: str | None = None,
) -> HTMLResponse:
    items = "".join(
        f"<li><code class='tag'>{escape(s.value)}</code> {escape(DESCRIPTIONS[s])}</li>"
        for s in sorted(scopes, key=lambda s: s.value)
    )
    hidden = "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>" for k, v in fields.items()
    )
    notice = f"<p class='alert' role='alert'>{escape(message)}</p>" if message else ""
    body = (
        f"<h1>Sign in to allow {escape(app_name)}</h1>"
        f"<p><strong>{escape(app_name)}</strong>, an app of <strong>{escape(dealer_name)}</strong>"
        f" ({escape(environment)}), asks to act for you with these permissions:</p>"
        f"<ul class='scopes'>{items}</ul>"
        "<p class='hint'>Site users grant only read access to their own sites.</p>"
        f"{notice}"
        "<form method='post' action='/oauth/authorize'>"
        f"{hidden}<input type='hidden' name='csrf' value='{escape(csrf)}'>"
        "<label for='email'>E-mail</label>"
        "<input id='email' name='email' type='email' autocomplete='username' required>"
        "<label for='password'>Password</label>"
        "<input id='password' name='password' type='password' "
        "autocomplete='current-password' required>"
        "<label for='code'>Authenticator code <span class='muted'>(if your account uses "
        "two-step verification)</span></label>"
        "<input id='code' name='code' inputmode='numeric' autocomplete='one-time-code' "
        "maxlength='20'>"
        "<div class='buttons'><button class='primary' name='decision' value='approve'>Allow"
        "</button> <button name='decision' value='deny' formnovalidate>Deny</button></div>"
        "</form>"
    )
    return _page(f"Allow {app_name}", body)


def refusal(message: str, status: int = 400) -> HTMLResponse:
    """Errors that must not be redirected to an unverified client (RFC 6749 4.1.2.1)."""
    return _page("Cannot continue", f"<h1>Cannot continue</h1><p>{escape(message)}</p>", status)
