"""Who is using the portal, and may they: the session cookie to a `Principal`, then the API's
own scope check (S12).

`PortalScope` *is* a `RequiredScope`: the scope test is the one the API runs, and the route
coverage test sees every portal route's declaration exactly as it sees the API's. It differs
only in where the principal comes from (the server-side session, not a bearer token) and in
checking the CSRF token of every state-changing request before any handler runs, so no view
can forget it.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace

from starlette.requests import Request

from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType, Principal
from vigil.auth.scopes import Scope
from vigil.core.errors import PermissionDenied
from vigil.edge.authorization import RequiredScope
from vigil.portal.forms import MAX_BODY, one, read_form
from vigil.portal.sessions import COOKIE, Session, SessionStore
from vigil.services import Services
from vigil.tenancy.operators import Account
from vigil.tenancy.roles import PortalRole

SAFE_METHODS = frozenset({"GET", "HEAD"})


class SignInRequired(Exception):
    """No usable session: the browser is sent to the sign-in page."""


class CsrfRefused(PermissionDenied):
    code = "csrf_refused"


@dataclass(frozen=True, slots=True)
class PortalView:
    """What templates need to know about the signed-in operator (links shown by scope)."""

    account: Account
    session: Session
    scopes: frozenset[Scope]

    def can(self, scope: str) -> bool:
        return Scope(scope) in self.scopes


def services_of(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def sessions_of(request: Request) -> SessionStore:
    store: SessionStore = request.app.state.portal_sessions
    return store


def principal_for(account: Account, session: Session) -> Principal:
    """A site user is a `user` restricted to their sites, with no portal scope at all."""
    site_user = account.role is PortalRole.SITE_USER
    return Principal(
        actor_type=ActorType.USER if site_user else ActorType.OPERATOR,
        actor_id=account.user.id,
        dealer_id=session.dealer_id,
        environment=session.environment,
        scopes=account.scopes,
        credential_id=session.short_id,
        credential_kind="portal_session",
        site_ids=account.user.site_ids if site_user else None,
    )


def current_session(request: Request) -> Session | None:
    return sessions_of(request).load(request.cookies.get(COOKIE))


async def check_csrf(request: Request, expected: str, max_body: int = MAX_BODY) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = one(await read_form(request, max_body), "csrf", 100)
    if not sent or not hmac.compare_digest(sent, expected):
        raise CsrfRefused("This form has expired or did not come from the portal. Reload it.")


@dataclass(frozen=True)
class PortalScope(RequiredScope):
    """`Depends(PortalScope(Scope.X))`; `None` = any signed-in operator. Site users pass only
    where `site_users` says so (their own connected apps and sign-out); every other page is
    403 for them, whatever its scope."""

    max_body: int = MAX_BODY  # the largest form the route takes (checked with the CSRF token)
    site_users: bool = False

    admitted_at_edge = False  # the operator is known from the session cookie, checked below

    async def __call__(self, request: Request) -> Actor:
        session = current_session(request)
        if session is None or session.mfa_pending:
            raise SignInRequired
        account = services_of(request).operators.account(session.user_id)
        if account.user.disabled_at is not None:
            raise SignInRequired  # a disabled account's sessions end with it
        principal = principal_for(account, session)
        request.state.principal = principal
        request.state.portal = PortalView(account, session, principal.scopes)
        if account.role is PortalRole.SITE_USER and not self.site_users:
            raise PermissionDenied("Site users can use Connected apps only.")
        actor = await RequiredScope.__call__(self, request)
        await check_csrf(request, session.csrf, self.max_body)
        return replace(actor, via="portal")


def portal_requires(
    scope: Scope | None, *, max_body: int = MAX_BODY, site_users: bool = False
) -> PortalScope:
    return PortalScope(scope, max_body, site_users)
