"""Authorize: each route declares, as data, the scope it needs or that it is public (S12).

The declaration is a FastAPI dependency object. The HTTPS edge (`edge/https.py`) finds the
route a request reaches, reads its declaration and enforces it before the route is called, so no
handler, body parsing or data access runs for a refused caller. The dependency enforces the same
declaration again when FastAPI resolves the route (a second lock on the same door, at the price
of a set look-up), and a test enumerates every route and reads what it requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from starlette.requests import Request

from vigil.auth.actor import Actor
from vigil.auth.principal import Principal
from vigil.auth.scopes import Scope
from vigil.core.errors import AuthenticationFailed, InsufficientScope


@dataclass(frozen=True)
class RequiredScope:
    """`Depends(RequiredScope(Scope.X))`: the caller must hold X. `None` = any valid credential."""

    scope: Scope | None

    @property
    def scope_used(self) -> str | None:
        """What the audit record names as the scope the call needed."""
        return self.scope.value if self.scope is not None else None

    # The HTTPS edge admits bearer credentials before the route runs. A declaration whose
    # caller is identified another way (the portal's session cookie) says so, and its own
    # dependency makes the same check before the handler.
    admitted_at_edge: ClassVar[bool] = True

    def admit(self, principal: Principal | None) -> Principal:
        """The principal, if it may call the route; otherwise raise 401 or 403."""
        if principal is None:
            raise AuthenticationFailed("This call needs a credential.")
        if self.scope is not None and self.scope not in principal.scopes:
            raise InsufficientScope(self.scope.value)
        return principal

    async def __call__(self, request: Request) -> Actor:
        # async on purpose: no I/O here, and a sync dependency costs a thread-pool hop.
        st = request.state
        if self.scope is not None:
            st.scope_used = self.scope.value
        principal = self.admit(getattr(st, "principal", None))
        return Actor.for_principal(
            principal,
            request_id=getattr(st, "request_id", None),
            source_ip=getattr(st, "client_ip", None),
            user_agent=request.headers.get("user-agent"),
            scope=self.scope_used,
        )


@dataclass(frozen=True)
class PublicRoute:
    """`Depends(PublicRoute("why"))`: an explicit, reasoned exception to authentication."""

    reason: str

    async def __call__(self) -> None:
        # async on purpose, like RequiredScope's: a sync dependency costs a thread-pool hop.
        return None


Requirement = RequiredScope | PublicRoute


def requires(scope: Scope | None) -> RequiredScope:
    return RequiredScope(scope)


def public(reason: str) -> PublicRoute:
    return PublicRoute(reason)
