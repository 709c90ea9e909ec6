"""OAuth 2.0 endpoints (S10, S11): authorize, token, revoke, introspect, server metadata.

All are public at the edge: clients authenticate in the request body (RFC 6749 section 2.3),
users through the sign-in form, partners through their signed assertion. Errors follow RFC 6749
section 5.2 (`{"error", "error_description"}`), the documented exception to problem+json, and
the authorization endpoint shows errors it may not redirect on an HTML page.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from vigil.api import oauth_page
from vigil.api.deps import services
from vigil.api.lean import LeanRoute
from vigil.audit.actions import AuditAction
from vigil.auth.oauth import authorization as authz
from vigil.auth.oauth import metadata as meta
from vigil.auth.oauth.context import Call
from vigil.auth.oauth.csrf import COOKIE
from vigil.auth.oauth.errors import InvalidRequest, OAuthError
from vigil.auth.oauth.jwt_bearer import GRANT_TYPE as JWT_BEARER
from vigil.auth.principal import ActorType
from vigil.edge.authorization import public
from vigil.edge.rate_limit import TokenBuckets
from vigil.services import Services
from vigil.tenancy.users import Role, User

router = APIRouter(tags=["oauth"])
Svc = Annotated[Services, Depends(services)]
MAX_FORM = 16 * 1024
MAX_FIELDS = 30
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
CLIENT_AUTH = "clients authenticate in the request body (RFC 6749 section 2.3), not at the edge"


def _failures(request: Request) -> TokenBuckets:
    """Failed sign-ins per client address (a burst of 10, then one per 5 s): each costs an
    argon2 verification, and guessing passwords must stay slow."""
    buckets: TokenBuckets | None = getattr(request.app.state, "sign_in_failures", None)
    if buckets is None:
        buckets = request.app.state.sign_in_failures = TokenBuckets(0.2, 10)
    return buckets


def _call(request: Request) -> Call:
    st = request.state
    return Call(
        getattr(st, "request_id", None),
        getattr(st, "client_ip", None),
        (request.headers.get("user-agent") or "")[:300] or None,
    )


def _single(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """RFC 6749 section 3.1: a parameter sent twice is an error, never first-or-last wins."""
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise InvalidRequest(f"The parameter '{key[:40]}' appears more than once.")
        form[key] = value
    return form


async def read_form(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidRequest("Send the parameters as application/x-www-form-urlencoded.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise InvalidRequest("The request body is too large.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The form is not valid UTF-8 urlencoded data.") from None
    return _single(pairs)


def oauth_error(request: Request, error: OAuthError) -> JSONResponse:
    request.state.error = error.error
    return JSONResponse(error.as_json(), status_code=error.status, headers=NO_STORE)


@router.get(
    meta.WELL_KNOWN,
    dependencies=[Depends(public("RFC 8414: clients configure themselves before any account"))],
    summary="Authorization server metadata (RFC 8414)",
)
def get_metadata(svc: Svc) -> dict[str, Any]:
    return meta.metadata(svc.settings.issuer)


async def _consent(
    request: Request, svc: Svc, req: authz.AuthorizationRequest, message: str | None = None
) -> Response:
    csrf = svc.oauth.csrf
    nonce = request.cookies.get(COOKIE)
    if not nonce or len(nonce) > 100:
        nonce = csrf.new_nonce()
    app = req.client.app
    dealer = await run_in_threadpool(svc.dealers.get, app.dealer_id)
    page = oauth_page.consent(
        app_name=app.name,
        dealer_name=dealer.name,
        environment=app.environment.value,
        scopes=req.scopes,
        fields=req.fields(),
        csrf=csrf.token_for(nonce),
        message=message,
    )
    page.set_cookie(COOKIE, nonce, path="/", secure=True, httponly=True, samesite="strict")
    return page


def _redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers={"cache-control": "no-store"})


@router.get(
    meta.AUTHORIZE,
    dependencies=[Depends(public("the user signs in here; the app has no credential for them"))],
    include_in_schema=False,
)
async def authorize_page(request: Request, svc: Svc) -> Response:
    try:
        params = _single(list(request.query_params.multi_items()))
        req = await run_in_threadpool(authz.parse_request, svc.oauth.ctx, params)
    except (authz.UnsafeRequest, InvalidRequest) as exc:
        request.state.error = "invalid_request"
        return oauth_page.refusal(str(exc))
    except authz.RedirectedError as exc:
        request.state.error = exc.error.error
        return _redirect(exc.location)
    return await _consent(request, svc, req)


@router.post(
    meta.AUTHORIZE,
    dependencies=[Depends(public("the sign-in and consent form; CSRF-protected, no bearer"))],
    include_in_schema=False,
)
async def authorize_submit(request: Request, svc: Svc) -> Response:
    ctx, call = svc.oauth.ctx, _call(request)
    try:
        form = await read_form(request)
        if not svc.oauth.csrf.valid(request.cookies.get(COOKIE), form.get("csrf")):
            request.state.error = "csrf"
            return oauth_page.refusal("The form expired or did not come from this site.", 403)
        req = await run_in_threadpool(authz.parse_request, ctx, form)
        if form.get("decision") != "approve":
            return _redirect(await run_in_threadpool(authz.deny, ctx, req, None, call))
        ip_key = f"ip:{call.source_ip}"
        if _failures(request).wait(ip_key) > 0:
            request.state.error = "rate_limited"
            return oauth_page.refusal("Too many failed sign-ins; wait a minute.", 429)
        user = await run_in_threadpool(
            ctx.users.authenticate,
            req.client.app.dealer_id,
            form.get("email", ""),
            form.get("password", ""),
        )
        if user is None:
            _failures(request).take(ip_key)
            await _sign_in_failed(svc, req, call)
            return await _consent(request, svc, req, "Wrong e-mail or password.")
        code = form.get("code", "")
        if not await run_in_threadpool(_second_factor, svc, user, code, call):
            _failures(request).take(ip_key)
            message = "Enter the current code from your authenticator app."
            return await _consent(request, svc, req, message)
        return _redirect(await run_in_threadpool(authz.approve, ctx, req, user, call))
    except (authz.UnsafeRequest, InvalidRequest) as exc:
        request.state.error = "invalid_request"
        return oauth_page.refusal(str(exc))
    except authz.RedirectedError as exc:
        request.state.error = exc.error.error
        return _redirect(exc.location)


def _second_factor(svc: Services, user: User, code: str, call: Call) -> bool:
    """An operator who has set up TOTP in the portal gives a code here too: a password alone
    must not grant an app what the portal would not (wrong codes count toward the lockout)."""
    if user.role is not Role.OPERATOR:
        return True
    account = svc.operators.account(user.id)
    if not account.mfa_enrolled:
        return True
    return svc.operators.second_factor(call.actor(ActorType.USER, user.id), account, code)


async def _sign_in_failed(svc: Services, req: authz.AuthorizationRequest, call: Call) -> None:
    app = req.client.app
    record = call.actor(ActorType.ANONYMOUS, "-").record(
        svc.clock.now(),
        AuditAction.USER_SIGN_IN_FAILED,
        target_type="app",
        target_id=app.id,
        dealer_id=app.dealer_id,
        environment=app.environment.value,
        result="refused",
    )
    await svc.audit.append(record)


async def token(request: Request, svc: Svc) -> Response:
    try:
        form = await read_form(request)
        if form.get("grant_type") == JWT_BEARER:  # batched: see jwt_bearer.BatchedGrants
            body = await svc.oauth.assertion_token(form, _call(request))
        else:
            body = await run_in_threadpool(svc.oauth.token, form, _call(request))
    except OAuthError as error:
        return oauth_error(request, error)
    return JSONResponse(body, headers=NO_STORE)


# The hot one of the protocol endpoints (partners' JWT-bearer grants): see api/lean.py.
router.add_api_route(
    meta.TOKEN,
    token,
    methods=["POST"],
    dependencies=[Depends(public(CLIENT_AUTH))],
    include_in_schema=False,
    route_class_override=LeanRoute,
)


@router.post(
    meta.REVOKE,
    dependencies=[Depends(public(CLIENT_AUTH))],
    include_in_schema=False,
)
async def revoke(request: Request, svc: Svc) -> Response:
    try:
        form = await read_form(request)
        await run_in_threadpool(svc.oauth.revoke, form, _call(request))
    except OAuthError as error:
        return oauth_error(request, error)
    return JSONResponse({}, headers=NO_STORE)


@router.post(
    meta.INTROSPECT,
    dependencies=[Depends(public(CLIENT_AUTH + "; confidential clients only"))],
    include_in_schema=False,
)
async def introspect(request: Request, svc: Svc) -> Response:
    try:
        form = await read_form(request)
        body = await run_in_threadpool(svc.oauth.introspect, form, _call(request))
    except OAuthError as error:
        return oauth_error(request, error)
    return JSONResponse(body, headers=NO_STORE)
