"""What every OAuth endpoint needs: services, lifetimes, and who is calling (for the audit)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.auth.assertions import AssertionVerifier
from vigil.auth.oauth.clients import ClientService
from vigil.auth.oauth.errors import InvalidScope
from vigil.auth.principal import ActorType
from vigil.auth.scopes import Scope, parse_scopes
from vigil.core.clock import Clock
from vigil.storage.db import Database
from vigil.tenancy.partners import PartnerService
from vigil.tenancy.users import UserService

MAX_SCOPE_PARAM = 1000


@dataclass(frozen=True, slots=True)
class Call:
    """Where a protocol request came from: the facts its audit records carry."""

    request_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None

    def actor(self, type: ActorType, id: str) -> Actor:
        return Actor(
            type=type,
            id=id,
            via="oauth",
            request_id=self.request_id,
            source_ip=self.source_ip,
            user_agent=self.user_agent,
        )


@dataclass(frozen=True, slots=True)
class OAuthContext:
    db: Database
    audit: AuditLog
    clock: Clock
    clients: ClientService
    users: UserService
    partners: PartnerService
    assertions: AssertionVerifier
    issuer: str
    access_ttl: timedelta
    assertion_ttl: timedelta
    refresh_ttl: timedelta


def parse_scope_param(value: str | None) -> frozenset[Scope]:
    """The space-separated `scope` parameter (RFC 6749 section 3.3); unknown names refused."""
    if value is None:
        return frozenset()
    if len(value) > MAX_SCOPE_PARAM:
        raise InvalidScope("The scope parameter is too long.")
    try:
        return parse_scopes(value.split(" "))
    except ValueError as exc:
        raise InvalidScope(str(exc).capitalize() + ".") from None
