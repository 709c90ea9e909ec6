"""Authorize: each route declares, as data, the scope it needs or that it is public (S12).

The declaration is a FastAPI dependency object, so it runs before the handler and before any
service or data access, and a test can enumerate every route and read what it requires.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from vigil.auth.actor import Actor
from vigil.auth.principal import Principal
from vigil.auth.scopes import Scope
from vigil.core.errors import AuthenticationFailed, InsufficientScope


@dataclass(frozen=True)
class RequiredScope:
    """`Depends(RequiredScope(Scope.X))`: the caller must hold X. `None` = any valid credential."""

    scope: Scope | None

    async def __call__(self, request: Request) -> Actor:
        # async on purpose: no I/O here, and a sync dependency costs a thread-pool hop.
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:
            raise AuthenticationFailed("This call needs a credential.")
        if self.scope is not None:
            request.state.scope_used = self.scope.value
            if self.scope not in principal.scopes:
                raise InsufficientScope(self.scope.value)
        return Actor.for_principal(
            principal,
            request_id=getattr(request.state, "request_id", None),
            source_ip=getattr(request.state, "client_ip", None),
            user_agent=request.headers.get("user-agent"),
            scope=self.scope.value if self.scope else None,
        )


@dataclass(frozen=True)
class PublicRoute:
    """`Depends(PublicRoute("why"))`: an explicit, reasoned exception to authentication."""

    reason: str

    def __call__(self) -> None:
        return None


def requires(scope: Scope | None) -> RequiredScope:
    return RequiredScope(scope)


def public(reason: str) -> PublicRoute:
    return PublicRoute(reason)
