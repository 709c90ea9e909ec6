"""The authorization endpoint (RFC 6749 section 4.1.1-4.1.2): code flow only, PKCE S256 and
`state` required, exact redirect URI matching, the user's sign-in and consent.

Until the client and its redirect URI are known good, errors are shown to the user and never
redirected (section 4.1.2.1): redirecting an error to an unverified URI would make us an open
redirector. Afterwards they go back to the client with `state`. Responses carry `iss`
(RFC 9207) so a client talking to several servers can detect mix-up attacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import insert, select

from vigil.audit.actions import AuditAction
from vigil.auth.oauth import pkce, redirects, tokens
from vigil.auth.oauth.clients import OAuthClient
from vigil.auth.oauth.context import Call, OAuthContext, parse_scope_param
from vigil.auth.oauth.errors import (
    AccessDenied,
    InvalidRequest,
    InvalidScope,
    OAuthError,
    UnsupportedResponseType,
)
from vigil.auth.principal import ActorType
from vigil.auth.scopes import Scope, encode_scopes
from vigil.core.ids import new_id
from vigil.storage.tables import oauth_codes, oauth_grants, operator_accounts
from vigil.tenancy.roles import ROLE_SCOPES, PortalRole
from vigil.tenancy.users import Role, User

CODE_TTL = timedelta(seconds=60)  # RFC 6749 section 4.1.2 recommends at most 10 minutes
MAX_STATE = 500


class UnsafeRequest(Exception):
    """Cannot be sent back to the client: shown to the user instead."""


class RedirectedError(Exception):
    def __init__(self, location: str, error: OAuthError) -> None:
        super().__init__(error.description)
        self.location, self.error = location, error


def with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit(parts._replace(query=query))


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    client: OAuthClient
    redirect_uri: str
    scopes: frozenset[Scope]
    state: str
    code_challenge: str

    def fields(self) -> dict[str, str]:
        """The parameters, to carry through the sign-in form."""
        return {
            "response_type": "code",
            "client_id": self.client.id,
            "redirect_uri": self.redirect_uri,
            "scope": encode_scopes(self.scopes),
            "state": self.state,
            "code_challenge": self.code_challenge,
            "code_challenge_method": pkce.S256,
        }

    def error(self, ctx: OAuthContext, error: OAuthError) -> RedirectedError:
        params = {"error": error.error, "error_description": error.description}
        params |= {"state": self.state} if self.state else {}
        return RedirectedError(with_query(self.redirect_uri, params | {"iss": ctx.issuer}), error)


def parse_request(ctx: OAuthContext, params: dict[str, str]) -> AuthorizationRequest:
    client_id = params.get("client_id", "")
    client = ctx.clients.get(client_id) if client_id else None
    if client is None:
        raise UnsafeRequest("This application is not registered for OAuth.")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or not redirects.matches(list(client.redirect_uris), redirect_uri):
        raise UnsafeRequest("The redirect URI is not one this application registered.")
    state = params.get("state", "")
    request = AuthorizationRequest(client, redirect_uri, frozenset(), state[:MAX_STATE], "")
    if params.get("response_type") != "code":
        raise request.error(ctx, UnsupportedResponseType("Only response_type=code is offered."))
    if not state or len(state) > MAX_STATE:
        raise request.error(ctx, InvalidRequest(f"state is required (1 to {MAX_STATE} chars)."))
    problem = pkce.valid_challenge(
        params.get("code_challenge"), params.get("code_challenge_method")
    )
    if problem:
        raise request.error(ctx, InvalidRequest(problem))
    try:
        scopes = parse_scope_param(params.get("scope"))
    except OAuthError as exc:
        raise request.error(ctx, exc) from None
    if not scopes:
        raise request.error(ctx, InvalidScope("Ask for at least one scope."))
    if not scopes <= client.app.scopes:
        extra = encode_scopes(scopes - client.app.scopes)
        raise request.error(ctx, InvalidScope(f"The app may not ask for: {extra}."))
    return AuthorizationRequest(client, redirect_uri, scopes, state, params["code_challenge"])


def delegable(ctx: OAuthContext, user: User) -> frozenset[Scope]:
    """What `user` may hand an app: never more than they could do themselves. A site user,
    the site-user scopes; an operator, the scopes of their portal role (a viewer cannot let an
    app write what the viewer cannot); an operator without a portal account, nothing."""
    if user.role is not Role.OPERATOR:
        return user.delegable
    with ctx.db.read() as conn:
        role = conn.execute(
            select(operator_accounts.c.portal_role).where(operator_accounts.c.user_id == user.id)
        ).scalar()
    return user.delegable & ROLE_SCOPES[PortalRole(role)] if role else frozenset()


def approve(ctx: OAuthContext, request: AuthorizationRequest, user: User, call: Call) -> str:
    """Record the user's consent and issue a one-time code; the redirect to send them to."""
    scopes = request.scopes & delegable(ctx, user)
    if not scopes:
        raise request.error(ctx, AccessDenied("This user cannot grant any of those scopes."))
    app = request.client.app
    now = ctx.clock.now()
    code = tokens.mint(tokens.Kind.CODE)
    grant_id = new_id("grt")
    actor = call.actor(ActorType.USER, user.id)
    target = {"target_type": "app", "target_id": app.id, "dealer_id": app.dealer_id}
    with ctx.db.transaction() as conn:
        conn.execute(
            insert(oauth_grants).values(
                id=grant_id,
                user_id=user.id,
                app_id=app.id,
                dealer_id=app.dealer_id,
                environment=app.environment.value,
                scopes=encode_scopes(scopes),
                created_at=now,
            )
        )
        conn.execute(
            insert(oauth_codes).values(
                id=code.id,
                secret_hash=code.secret_hash,
                grant_id=grant_id,
                app_id=app.id,
                user_id=user.id,
                redirect_uri=request.redirect_uri,
                scopes=encode_scopes(scopes),
                code_challenge=request.code_challenge,
                family_id=new_id("fam"),
                created_at=now,
                expires_at=now + CODE_TTL,
            )
        )
        details = {"grant_id": grant_id, "scopes": encode_scopes(scopes)}
        for action in (AuditAction.OAUTH_GRANT_CREATED, AuditAction.OAUTH_CODE_ISSUED):
            ctx.audit.write_in(
                conn,
                actor.record(
                    now, action, environment=app.environment.value, details=details, **target
                ),
            )
    return with_query(
        request.redirect_uri, {"code": code.value, "state": request.state, "iss": ctx.issuer}
    )


def deny(ctx: OAuthContext, request: AuthorizationRequest, user: User | None, call: Call) -> str:
    app = request.client.app
    actor = call.actor(ActorType.USER if user else ActorType.ANONYMOUS, user.id if user else "-")
    ctx.audit.write_now(
        actor.record(
            ctx.clock.now(),
            AuditAction.OAUTH_GRANT_DENIED,
            target_type="app",
            target_id=app.id,
            dealer_id=app.dealer_id,
            environment=app.environment.value,
            result="denied",
        )
    )
    return request.error(ctx, AccessDenied("The user declined.")).location
