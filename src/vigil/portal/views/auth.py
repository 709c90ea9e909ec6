"""Sign-in (password, then TOTP or enrolment), sign-out and sign-out everywhere.

Every step that grants more issues a new session id (no fixation), and every outcome is an
audited operator action committed with the session change it describes.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from vigil.audit.actions import AuditAction
from vigil.audit.record import AuditRecord
from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType, Environment
from vigil.core.errors import InvalidInput
from vigil.edge.authorization import public
from vigil.edge.rate_limit import TokenBuckets
from vigil.portal import signin_csrf
from vigil.portal.access import (
    check_csrf,
    current_session,
    portal_requires,
    services_of,
    sessions_of,
)
from vigil.portal.forms import one, read_form
from vigil.portal.pages import render
from vigil.portal.routing import PortalRoute
from vigil.portal.sessions import COOKIE, Session
from vigil.portal.views.account import CONNECTED_APPS
from vigil.tenancy.operators import UNAVAILABLE, Account, SignInRefused
from vigil.tenancy.roles import PortalRole

router = APIRouter(route_class=PortalRoute, include_in_schema=False)
Anyone = Annotated[Actor, Depends(portal_requires(None, site_users=True))]
SIGN_IN_PUBLIC = public("the sign-in form: operators authenticate inside this request")
SECOND_STEP = public("second sign-in step: needs the pending session the password step opened")


def _safe_next(value: str) -> str:
    """Only a portal path: `next` must never send a signed-in browser elsewhere."""
    ok = value.startswith("/portal/") and not value.startswith("//") and "\\" not in value
    return value if ok and len(value) < 300 else "/portal/"


def _actor(request: Request, user_id: str | None, *, site_user: bool = False) -> Actor:
    kind = ActorType.USER if site_user else ActorType.OPERATOR
    return Actor(
        type=kind if user_id else ActorType.ANONYMOUS,
        id=user_id or "portal-sign-in",
        via="portal",
        request_id=getattr(request.state, "request_id", None),
        source_ip=getattr(request.state, "client_ip", None),
        user_agent=request.headers.get("user-agent"),
    )


def with_session(response: Response, session: Session | None) -> Response:
    """The exact cookie: host-only (`__Host-`), every path, TLS only, no script access, not
    sent on cross-site subrequests; no Max-Age, so it dies with the browser as well."""
    if session is None:
        value = f"{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
    else:
        value = f"{COOKIE}={session.token}; Path=/; Secure; HttpOnly; SameSite=Lax"
    response.headers.append("set-cookie", value)
    return response


def _throttled(request: Request) -> int:
    """Seconds this address must wait before another sign-in attempt (0: go ahead)."""
    failures: TokenBuckets = request.app.state.sign_in_failures
    return math.ceil(failures.wait(f"ip:{getattr(request.state, 'client_ip', None)}"))


def _failed_attempt(request: Request) -> None:
    failures: TokenBuckets = request.app.state.sign_in_failures
    failures.take(f"ip:{getattr(request.state, 'client_ip', None)}")


def _too_many(wait: int) -> str:
    return f"Too many failed sign-ins from this address. Try again in {wait} seconds."


def _sign_in_page(request: Request, status: int = 200, **context: object) -> Response:
    nonce, token = signin_csrf.issue(request, request.app.state.portal_csrf)
    response = render(request, "sign_in.html", status=status, csrf=token, **context)
    signin_csrf.set_cookie(response, nonce)
    return response


@router.get("/portal/sign-in", dependencies=[Depends(SIGN_IN_PUBLIC)])
def sign_in_form(request: Request, next: str = "/portal/") -> Response:
    return _sign_in_page(request, next=_safe_next(next))


@router.post("/portal/sign-in", dependencies=[Depends(SIGN_IN_PUBLIC)])
async def sign_in(request: Request) -> Response:
    form = await read_form(request)
    dealer, email, nxt = one(form, "dealer", 60), one(form, "email", 254), one(form, "next", 300)
    page = {"dealer": dealer, "email": email, "next": _safe_next(nxt)}
    if not signin_csrf.valid(request, request.app.state.portal_csrf, one(form, "csrf", 100)):
        return _sign_in_page(request, 403, error="The form expired; please try again.", **page)
    wait = _throttled(request)
    if wait:
        request.state.error = "rate_limited"
        return _sign_in_page(request, 429, error=_too_many(wait), **page)
    svc, store = services_of(request), sessions_of(request)
    stale = request.cookies.get(COOKIE)
    if stale:
        store.revoke(stale)  # whatever id the browser brought, it never becomes the session
    try:
        account = svc.operators.sign_in(
            _actor(request, None), dealer, email, one(form, "password", 1024)
        )
    except SignInRefused as refused:
        _failed_attempt(request)
        return _sign_in_page(request, 401, error=refused.detail, **page)
    if account.role is PortalRole.SITE_USER:
        page["next"] = CONNECTED_APPS  # the one page a site user may use
    if account.mfa_enrolled or account.mfa_required:
        pending = store.open(account.user.id, dealer, Environment.PRODUCTION, mfa_pending=True)
        step = "/portal/sign-in/totp" if account.mfa_enrolled else "/portal/mfa/enroll"
        return with_session(RedirectResponse(f"{step}?next={page['next']}", 303), pending)
    session = store.open(
        account.user.id,
        dealer,
        Environment.PRODUCTION,
        mfa_pending=False,
        record=_signed_in(request, account, "password"),
    )
    return with_session(RedirectResponse(page["next"], 303), session)


def _signed_in(request: Request, account: Account, factors: str) -> AuditRecord:
    now = services_of(request).clock.now()
    return _account_actor(request, account).record(
        now,
        AuditAction.PORTAL_SIGNED_IN,
        target_type="user",
        target_id=account.user.id,
        dealer_id=account.user.dealer_id,
        details={"factors": factors, "role": account.role.value},
    )


def _account_actor(request: Request, account: Account) -> Actor:
    return _actor(request, account.user.id, site_user=account.role is PortalRole.SITE_USER)


def _pending(request: Request) -> tuple[Session, Account] | None:
    session = current_session(request)
    if session is None or not session.mfa_pending:
        return None
    return session, services_of(request).operators.account(session.user_id)


@router.get("/portal/sign-in/totp", dependencies=[Depends(SECOND_STEP)])
def totp_form(request: Request, next: str = "/portal/") -> Response:
    pending = _pending(request)
    if pending is None:
        return RedirectResponse("/portal/sign-in", 303)
    return render(request, "totp.html", csrf=pending[0].csrf, next=_safe_next(next))


@router.post("/portal/sign-in/totp", dependencies=[Depends(SECOND_STEP)])
async def totp(request: Request) -> Response:
    pending = _pending(request)
    if pending is None:
        return RedirectResponse("/portal/sign-in", 303)
    session, account = pending
    await check_csrf(request, session.csrf)
    form = await read_form(request)
    nxt = _safe_next(one(form, "next", 300))
    svc = services_of(request)
    wait = _throttled(request)
    if wait:
        request.state.error = "rate_limited"
        return render(request, "totp.html", 429, csrf=session.csrf, next=nxt, error=_too_many(wait))
    verdict = svc.operators.second_factor(
        _account_actor(request, account), account, one(form, "code", 40)
    )
    if not verdict.ok:
        _failed_attempt(request)
        error = "That code is not valid (or the account is locked for a while)."
        if verdict.unavailable:
            error = UNAVAILABLE
        return render(request, "totp.html", 401, csrf=session.csrf, next=nxt, error=error)
    fresh = sessions_of(request).renew(session, record=_signed_in(request, account, "totp"))
    return with_session(RedirectResponse(nxt, 303), fresh)


@router.get("/portal/mfa/enroll", dependencies=[Depends(SECOND_STEP)])
def enroll_form(request: Request, next: str = "/portal/") -> Response:
    session = current_session(request)
    if session is None:
        return RedirectResponse("/portal/sign-in", 303)
    svc = services_of(request)
    account = svc.operators.account(session.user_id)
    secret = svc.operators.new_totp_secret()
    uri = svc.operators.provisioning_uri(secret, account.user.email)
    return render(
        request, "enroll.html", csrf=session.csrf, secret=secret, uri=uri, next=_safe_next(next)
    )


@router.post("/portal/mfa/enroll", dependencies=[Depends(SECOND_STEP)])
async def enroll(request: Request) -> Response:
    session = current_session(request)
    if session is None:
        return RedirectResponse("/portal/sign-in", 303)
    await check_csrf(request, session.csrf)
    form = await read_form(request)
    svc = services_of(request)
    account = svc.operators.account(session.user_id)
    secret, nxt = one(form, "secret", 64), _safe_next(one(form, "next", 300))
    if account.mfa_enrolled:
        return RedirectResponse("/portal/account", 303)
    actor = _account_actor(request, account)
    try:
        codes = svc.operators.enroll(actor, account, secret, one(form, "code", 40))
    except InvalidInput as error:
        uri = svc.operators.provisioning_uri(secret, account.user.email)
        return render(
            request,
            "enroll.html",
            422,
            csrf=session.csrf,
            secret=secret,
            uri=uri,
            next=nxt,
            error=error.detail,
        )
    record = _signed_in(request, account, "totp_enrolment") if session.mfa_pending else None
    fresh = sessions_of(request).renew(session, record=record)
    response = render(request, "recovery_codes.html", codes=codes, next=nxt)
    return with_session(response, fresh)


@router.post("/portal/sign-out")
def sign_out(request: Request, actor: Anyone) -> Response:
    session = request.state.portal.session
    now = services_of(request).clock.now()
    record = actor.record(
        now, AuditAction.PORTAL_SIGNED_OUT, target_type="user", target_id=actor.id
    )
    sessions_of(request).revoke(session.token, record)
    return with_session(RedirectResponse("/portal/sign-in", 303), None)


@router.post("/portal/sign-out-everywhere")
def sign_out_everywhere(request: Request, actor: Anyone) -> Response:
    now = services_of(request).clock.now()
    record = actor.record(
        now, AuditAction.PORTAL_SESSIONS_REVOKED, target_type="user", target_id=actor.id
    )
    sessions_of(request).revoke_all(actor.id, record)
    return with_session(RedirectResponse("/portal/sign-in", 303), None)
