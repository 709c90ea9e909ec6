"""OAuth 2.0 endpoints (S10, S11): authorize, token, revoke, introspect, server metadata.

All are public at the edge: clients authenticate with HTTP Basic or in the request body (RFC
6749 section 2.3; the edge leaves a Basic header on these three routes to the OAuth server),
users through the sign-in form, partners through their signed assertion. Errors follow RFC 6749
section 5.2 (`{"error", "error_description"}`), the documented exception to problem+json, and
the authorization endpoint shows errors it may not redirect on an HTML page.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response

from vigil.api import oauth_page
from vigil.api.deps import services
from vigil.api.lean import LeanRoute
from vigil.auth.oauth import authorization as authz
from vigil.auth.oauth import metadata as meta
from vigil.auth.oauth.context import Call
from vigil.auth.oauth.csrf import COOKIE
from vigil.auth.oauth.errors import InvalidRequest, OAuthError
from vigil.auth.oauth.jwt_bearer import GRANT_TYPE as JWT_BEARER
from vigil.auth.principal import ActorType
from vigil.edge.audit import build_record, recorded_in_transaction
from vigil.edge.authorization import public
from vigil.edge.rate_limit import TokenBuckets
from vigil.services import Services
from vigil.tenancy.operators import REFUSED, UNAVAILABLE, Account, SignInRefused
from vigil.tenancy.roles import PortalRole

router = APIRouter(tags=["oauth"])
Svc = Annotated[Services, Depends(services)]
MAX_FORM = 16 * 1024
MAX_FIELDS = 30
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
CLIENT_AUTH = "clients authenticate by HTTP Basic or the body (RFC 6749 2.3), not at the edge"
# RFC 7235 section 3.1: a 401 names the scheme to use; Basic is the one clients send here.
CLIENT_CHALLENGE = {"www-authenticate": 'Basic realm="vigil-oauth", charset="UTF-8"'}


def _failures(request: Request) -> TokenBuckets:
    """Failed sign-ins per client address: the portal's bucket (app.py), so guessing through
    the consent form and through the portal's sign-in draws on one budget."""
    buckets: TokenBuckets = request.app.state.sign_in_failures
    return buckets


def _call(request: Request) -> Call:
    st = request.state
    return Call(
        getattr(st, "request_id", None),
        getattr(st, "client_ip", None),
        (request.headers.get("user-agent") or "")[:300] or None,
    )


def _authorization(request: Request) -> str | None:
    """The Authorization header, for HTTP Basic client authentication (the edge let it pass)."""
    return request.headers.get("authorization")


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


def _client_throttle(request: Request) -> JSONResponse | None:
    """Failed client authentications per address draw on the sign-in failure budget: a client
    secret cannot be guessed at the token, revocation or introspection endpoints faster than a
    password at the sign-in forms. 429 with Retry-After once it is spent."""
    wait = _failures(request).wait(f"ip:{getattr(request.state, 'client_ip', None)}")
    if wait <= 0:
        return None
    request.state.error = "rate_limited"
    seconds = max(1, math.ceil(wait))
    body = {
        "error": "invalid_request",
        "error_description": f"Too many failed client authentications; retry after {seconds} s.",
    }
    return JSONResponse(body, status_code=429, headers=NO_STORE | {"retry-after": str(seconds)})


def _client_failed(request: Request, error: OAuthError) -> JSONResponse:
    if error.error == "invalid_client":
        _failures(request).take(f"ip:{getattr(request.state, 'client_ip', None)}")
    return oauth_error(request, error)


def oauth_error(request: Request, error: OAuthError) -> JSONResponse:
    request.state.error = error.error
    headers = NO_STORE | CLIENT_CHALLENGE if error.status == 401 else NO_STORE
    return JSONResponse(error.as_json(), status_code=error.status, headers=headers)


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
        account, message = await run_in_threadpool(_sign_in, svc, req, form, call)
        if account is None:
            if message is not SECOND_FACTOR_NOT_SET_UP:
                _failures(request).take(ip_key)
            return await _consent(request, svc, req, message)
        user = account.user
        return _redirect(await run_in_threadpool(authz.approve, ctx, req, user, call))
    except (authz.UnsafeRequest, InvalidRequest) as exc:
        request.state.error = "invalid_request"
        return oauth_page.refusal(str(exc))
    except authz.RedirectedError as exc:
        request.state.error = exc.error.error
        return _redirect(exc.location)


WRONG_CODE = "Enter the current code from your authenticator app."
SECOND_FACTOR_NOT_SET_UP = (
    "Your role needs two-step verification: sign in to the dealer portal once to set it up, "
    "then allow the app here."
)


def _sign_in(
    svc: Services, req: authz.AuthorizationRequest, form: dict[str, str], call: Call
) -> tuple[Account | None, str]:
    """The portal's sign-in rules, through the same code (S10): the password check with the
    shared lockout counter, then TOTP where the portal requires it or the person has set it up.
    An owner or admin without a second factor cannot consent: a password alone must not grant
    an app what the portal would not. Every failure is audited by the accounts service."""
    accounts = svc.operators
    where = {"front": "oauth_consent", "app_id": req.client.app.id}
    actor = call.actor(ActorType.ANONYMOUS, "-")
    try:
        account = accounts.sign_in(
            actor, req.client.app.dealer_id, form.get("email", ""), form.get("password", ""), where
        )
    except SignInRefused:
        return None, REFUSED
    kind = ActorType.USER if account.role is PortalRole.SITE_USER else ActorType.OPERATOR
    person = call.actor(kind, account.user.id)
    if account.mfa_required and not account.mfa_enrolled:
        accounts.refuse_without_second_factor(person, account, where)
        return None, SECOND_FACTOR_NOT_SET_UP
    if account.mfa_enrolled:
        verdict = accounts.second_factor(person, account, form.get("code", ""), where)
        if not verdict.ok:
            # A seed that no longer opens fails like a wrong code, with its own message.
            return None, UNAVAILABLE if verdict.unavailable else WRONG_CODE
    return account, ""


async def token(request: Request, svc: Svc) -> Response:
    if (throttled := _client_throttle(request)) is not None:
        return throttled
    try:
        form = await read_form(request)
        if form.get("grant_type") == JWT_BEARER:  # batched: see jwt_bearer.BatchedGrants
            # The request's own record commits with the grant (one durable commit, not two);
            # the edge records any other outcome itself.
            answered = build_record(
                request.scope, 200, svc.clock.now(), request.headers.get("user-agent")
            )
            body = await svc.oauth.assertion_token(form, _call(request), answered)
            recorded_in_transaction(request.scope, answered)
        else:
            body = await run_in_threadpool(
                svc.oauth.token, form, _call(request), _authorization(request)
            )
    except OAuthError as error:
        return _client_failed(request, error)
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
    if (throttled := _client_throttle(request)) is not None:
        return throttled
    try:
        form = await read_form(request)
        await run_in_threadpool(svc.oauth.revoke, form, _call(request), _authorization(request))
    except OAuthError as error:
        return _client_failed(request, error)
    return JSONResponse({}, headers=NO_STORE)


@router.post(
    meta.INTROSPECT,
    dependencies=[Depends(public(CLIENT_AUTH + "; confidential clients only"))],
    include_in_schema=False,
)
async def introspect(request: Request, svc: Svc) -> Response:
    if (throttled := _client_throttle(request)) is not None:
        return throttled
    try:
        form = await read_form(request)
        body = await run_in_threadpool(
            svc.oauth.introspect, form, _call(request), _authorization(request)
        )
    except OAuthError as error:
        return _client_failed(request, error)
    return JSONResponse(body, headers=NO_STORE)
