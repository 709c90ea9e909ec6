"""Webhook endpoints: where an app's events go, what it subscribes to, and how it is trusted.

An endpoint belongs to the app that registered it, and that app's scopes bound what it receives
(an app without `alarms:read` never gets `alarm.*`). Endpoints are visible across the tenant like
other objects, but changing one whose app holds scopes the caller lacks is refused: otherwise
`webhooks:write` would let one app redirect another's events to itself.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor, Tenant
from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope, decode_scopes
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput, NotFound, PermissionDenied
from vigil.core.ids import new_id
from vigil.core.pagination import Page, decode_cursor, page_of
from vigil.crypto.fields import FieldCipher
from vigil.events.types import READ_SCOPE, EventType
from vigil.monitoring.scoping import TenantScope, scope_of
from vigil.monitoring.versioning import update_versioned
from vigil.storage.db import Database
from vigil.storage.tables import apps, webhook_ca_requests, webhook_endpoints
from vigil.webhooks.models import CaRequest, Endpoint
from vigil.webhooks.resolver import Resolver
from vigil.webhooks.sealing import open_secret, secret_binding
from vigil.webhooks.signing import SigningSecret, new_secret
from vigil.webhooks.ssrf import AddressPolicy
from vigil.webhooks.trust import ca_fingerprints
from vigil.webhooks.url_policy import check_registration, parse_url

DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=7)
MAX_ENDPOINTS_PER_APP = 50
EDITABLE = ("url", "description", "event_types", "enabled")


@dataclass(frozen=True, slots=True)
class WithSecret:
    """An endpoint and its newly issued secret: the only time the secret leaves the platform."""

    endpoint: Endpoint
    secret: SigningSecret


class EndpointService:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        clock: Clock,
        policy: AddressPolicy,
        resolver: Resolver,
        secrets: FieldCipher,
    ) -> None:
        self._db, self._audit, self._clock = db, audit, clock
        self._policy, self._resolver = policy, resolver
        self._secrets = secrets

    def create(
        self,
        actor: Actor,
        *,
        url: str,
        event_types: list[str],
        description: str | None = None,
        enabled: bool = True,
        app_id: str | None = None,
    ) -> WithSecret:
        """Register an endpoint for the calling app, or, for an operator (the portal, no app of
        its own), for `app_id` of the operator's tenant: its events are then bounded by that
        app's scopes, and the operator must hold them all (as for changing one, below)."""
        scope = scope_of(actor)
        principal = actor.principal
        if principal is None or (principal.app_id is None and app_id is None):
            raise PermissionDenied("Webhook endpoints belong to an app; call with an app's key.")
        if principal.app_id is not None and app_id not in (None, principal.app_id):
            raise PermissionDenied("An app registers endpoints for itself only.")
        owner, readable = principal.app_id, principal.scopes
        if owner is None:
            assert app_id is not None
            with self._db.read() as conn:
                owner = _app_id(conn, scope, app_id)
                readable = self._ensure_can_manage(conn, actor, owner)
        types = _check_types(event_types, readable)
        check_registration(url, self._policy, self._resolver)
        secret = new_secret()
        now = self._clock.now()
        endpoint_id = new_id("whe")
        dealer_id, environment = scope.tenant.dealer_id, scope.tenant.environment.value
        # Sealed before the transaction: a key-store call inside it would wait on SQLite's lock.
        sealed = self._secrets.seal(
            secret_binding(dealer_id, environment, endpoint_id), secret.value.encode()
        )
        with self._db.transaction() as conn:
            count = len(
                conn.execute(
                    scope.select(webhook_endpoints, webhook_endpoints.c.id)
                    .where(webhook_endpoints.c.app_id == owner)
                    .limit(MAX_ENDPOINTS_PER_APP)
                ).all()
            )
            if count >= MAX_ENDPOINTS_PER_APP:
                raise InvalidInput(f"An app has at most {MAX_ENDPOINTS_PER_APP} endpoints.")
            conn.execute(
                insert(webhook_endpoints).values(
                    id=endpoint_id,
                    **scope.values(),
                    app_id=owner,
                    url=url,
                    description=description,
                    event_types=types,
                    enabled=int(enabled),
                    secret_sealed=sealed,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.WEBHOOK_ENDPOINT_CREATED,
                    target_type="webhook_endpoint",
                    target_id=endpoint_id,
                    details={"event_types": types, "enabled": enabled},
                ),
            )
            return WithSecret(_endpoint(conn, scope, endpoint_id), secret)

    def get(self, actor: Actor, endpoint_id: str) -> Endpoint:
        scope = scope_of(actor)
        with self._db.read() as conn:
            return _endpoint(conn, scope, endpoint_id)

    def list(self, actor: Actor, *, limit: int = 50, cursor: str | None = None) -> Page[Endpoint]:
        scope = scope_of(actor)
        c = webhook_endpoints.c
        query = scope.select(webhook_endpoints).order_by(c.seq.desc()).limit(limit + 1)
        if cursor is not None:
            query = query.where(c.seq < decode_cursor(cursor))
        with self._db.read() as conn:
            rows = [(int(m["seq"]), Endpoint.from_row(m)) for m in conn.execute(query).mappings()]
        return page_of(rows, limit)

    def update(
        self, actor: Actor, endpoint_id: str, changes: dict[str, Any], if_match: int | None
    ) -> Endpoint:
        scope = scope_of(actor)
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise InvalidInput("Unknown endpoint fields: " + ", ".join(sorted(unknown)) + ".")
        for required in ("url", "event_types", "enabled"):
            if required in changes and changes[required] is None:
                raise InvalidInput(f"An endpoint's {required} cannot be null.")
        if "url" in changes:
            check_registration(changes["url"], self._policy, self._resolver)
        now = self._clock.now()
        with self._db.transaction() as conn:
            row = scope.one(conn, webhook_endpoints, endpoint_id, "webhook endpoint")
            app_scopes = self._ensure_can_manage(conn, actor, row["app_id"])
            values = dict(changes)
            if "url" in values and parse_url(values["url"]).host != parse_url(row["url"]).host:
                # An approved CA was vetted for the host it was requested for, not the next one.
                values["ca_bundle"] = None
            if "event_types" in values:
                values["event_types"] = _check_types(values["event_types"], app_scopes)
            if "enabled" in values:
                values["enabled"] = int(values["enabled"])
                if values["enabled"]:  # re-enabling starts a fresh failure window
                    values |= {"disabled_reason": None, "failing_since": None}
                else:
                    values["disabled_reason"] = "disabled_by_user"
            update_versioned(
                conn, scope, webhook_endpoints, row, if_match, values | {"updated_at": now}
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.WEBHOOK_ENDPOINT_UPDATED,
                    target_type="webhook_endpoint",
                    target_id=endpoint_id,
                    details={"fields": sorted(changes)},
                ),
            )
            return _endpoint(conn, scope, endpoint_id)

    def rotate_secret(
        self, actor: Actor, endpoint_id: str, overlap: timedelta = DEFAULT_OVERLAP
    ) -> WithSecret:
        """Issue a new secret; the old one keeps signing alongside it until `overlap` ends."""
        if not timedelta(0) <= overlap <= MAX_OVERLAP:
            raise InvalidInput("The overlap is 0 to 7 days.")
        scope = scope_of(actor)
        secret = new_secret()
        now = self._clock.now()
        # Everything sealed before the transaction (SQLite's write lock, see `create`). The
        # current secret becomes the previous one: re-sealed under the `previous_signing_secret`
        # binding, so a ciphertext is never valid in the other column.
        dealer_id, environment = scope.tenant.dealer_id, scope.tenant.environment.value
        with self._db.read() as conn:
            current = scope.one(conn, webhook_endpoints, endpoint_id, "webhook endpoint")
            self._ensure_can_manage(conn, actor, current["app_id"])
        sealed = self._secrets.seal(
            secret_binding(dealer_id, environment, endpoint_id), secret.value.encode()
        )
        previous = None
        if overlap:
            old = open_secret(self._secrets, current)
            previous = self._secrets.seal(
                secret_binding(dealer_id, environment, endpoint_id, previous=True),
                old.encode(),
            )
        with self._db.transaction() as conn:
            # update_versioned refuses the write if the row changed since `current` was read,
            # so the previous secret sealed above is the one being replaced.
            row = current
            self._ensure_can_manage(conn, actor, row["app_id"])
            update_versioned(
                conn,
                scope,
                webhook_endpoints,
                row,
                None,
                {
                    "secret_sealed": sealed,
                    "previous_secret_sealed": previous,
                    "previous_secret_expires_at": now + overlap if overlap else None,
                    "updated_at": now,
                },
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.WEBHOOK_SECRET_ROTATED,
                    target_type="webhook_endpoint",
                    target_id=endpoint_id,
                    details={"overlap_seconds": int(overlap.total_seconds())},
                ),
            )
            return WithSecret(_endpoint(conn, scope, endpoint_id), secret)

    def request_ca(
        self, actor: Actor, endpoint_id: str, ca_bundle: str, reason: str | None = None
    ) -> CaRequest:
        """File an internal-CA request; it has no effect until an administrator approves it."""
        fingerprints = ca_fingerprints(ca_bundle)
        now = self._clock.now()
        request_id = new_id("whca")
        with self._db.transaction() as conn:
            scope = scope_of(actor) if actor.principal else _owner_scope(conn, endpoint_id)
            row = scope.one(conn, webhook_endpoints, endpoint_id, "webhook endpoint")
            self._ensure_can_manage(conn, actor, row["app_id"])
            conn.execute(
                insert(webhook_ca_requests).values(
                    id=request_id,
                    **scope.values(),
                    endpoint_id=endpoint_id,
                    ca_bundle=ca_bundle,
                    fingerprints=fingerprints,
                    reason=reason,
                    status="pending",
                    requested_by=actor.id,
                    created_at=now,
                )
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.WEBHOOK_CA_REQUESTED,
                    target_type="webhook_ca_request",
                    target_id=request_id,
                    details={"endpoint_id": endpoint_id, "fingerprints": fingerprints},
                ),
            )
            return _ca_request(conn, request_id)

    def approve_ca(self, operator: Actor, request_id: str) -> CaRequest:
        """A platform administrator's decision (`vigil webhooks approve-ca`): the CA becomes
        trusted for that request's endpoint, and only for it."""
        if operator.principal is not None:
            raise PermissionDenied("Only a platform administrator approves a CA.")
        now = self._clock.now()
        with self._db.transaction() as conn:
            request = _ca_request(conn, request_id)
            if request.status != "pending":
                raise InvalidInput(f"CA request '{request_id}' is already {request.status}.")
            row = (
                conn.execute(
                    select(webhook_ca_requests).where(webhook_ca_requests.c.id == request_id)
                )
                .mappings()
                .one()
            )
            conn.execute(
                update(webhook_ca_requests)
                .where(webhook_ca_requests.c.id == request_id)
                .values(status="approved", decided_by=operator.id, decided_at=now)
            )
            conn.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == row["endpoint_id"])
                .values(
                    ca_bundle=row["ca_bundle"],
                    version=webhook_endpoints.c.version + 1,
                    updated_at=now,
                )
            )
            self._audit.write_in(
                conn,
                operator.record(
                    now,
                    AuditAction.WEBHOOK_CA_APPROVED,
                    target_type="webhook_ca_request",
                    target_id=request_id,
                    dealer_id=row["dealer_id"],
                    environment=row["environment"],
                    details={
                        "endpoint_id": row["endpoint_id"],
                        "fingerprints": row["fingerprints"],
                    },
                ),
            )
            return _ca_request(conn, request_id)

    def ca_requests_of(self, actor: Actor, endpoint_id: str) -> builtins.list[CaRequest]:
        """One endpoint's CA requests, newest first, for its own tenant (404 for another's)."""
        scope = scope_of(actor)
        c = webhook_ca_requests.c
        query = scope.select(webhook_ca_requests).where(c.endpoint_id == endpoint_id)
        with self._db.read() as conn:
            scope.one(conn, webhook_endpoints, endpoint_id, "webhook endpoint")
            rows = conn.execute(query.order_by(c.seq.desc()).limit(20)).mappings()
            return [CaRequest.from_row(m) for m in rows]

    def ca_requests(self, status: str | None = None) -> builtins.list[CaRequest]:
        """Every tenant's CA requests, for the platform administrator's CLI."""
        query = select(webhook_ca_requests).order_by(webhook_ca_requests.c.seq)
        if status is not None:
            query = query.where(webhook_ca_requests.c.status == status)
        with self._db.read() as conn:
            return [CaRequest.from_row(m) for m in conn.execute(query).mappings()]

    def _ensure_can_manage(self, conn: Connection, actor: Actor, app_id: str) -> frozenset[Scope]:
        scopes_text = conn.execute(select(apps.c.scopes).where(apps.c.id == app_id)).scalar()
        app_scopes = decode_scopes(scopes_text or "")
        principal = actor.principal
        if principal is not None and app_scopes - principal.scopes:
            raise PermissionDenied(
                "This endpoint's app holds scopes the caller does not; only a caller holding "
                "them may change where its events go."
            )
        return app_scopes


def _check_types(requested: list[str], scopes: frozenset[Scope]) -> list[str]:
    """Known types the app can read, deduplicated and sorted; empty means every readable type."""
    types: list[str] = []
    for name in requested:
        try:
            event_type = EventType(name)
        except ValueError:
            raise InvalidInput(f"'{name}' is not an event type.") from None
        if READ_SCOPE[event_type] not in scopes:
            raise InvalidInput(
                f"'{name}' events need the scope '{READ_SCOPE[event_type].value}', "
                "which this app does not hold."
            )
        if name not in types:
            types.append(name)
    return sorted(types)


def _app_id(conn: Connection, scope: TenantScope, app_id: str) -> str:
    """An app of the caller's own tenant (another tenant's: 404, like every id)."""
    a = apps.c
    query = select(a.id).where(
        a.id == app_id,
        a.dealer_id == scope.tenant.dealer_id,
        a.environment == scope.tenant.environment.value,
    )
    if conn.execute(query).first() is None:
        raise NotFound(f"No app '{app_id}'.")
    return app_id


def _owner_scope(conn: Connection, endpoint_id: str) -> TenantScope:
    """The endpoint's own tenant, for platform administrators acting on its dealer's behalf."""
    e = webhook_endpoints.c
    row = conn.execute(select(e.dealer_id, e.environment).where(e.id == endpoint_id)).first()
    if row is None:
        raise NotFound(f"No webhook endpoint '{endpoint_id}'.")
    return TenantScope(Tenant(row[0], Environment(row[1])))


def _endpoint(conn: Connection, scope: TenantScope, endpoint_id: str) -> Endpoint:
    return Endpoint.from_row(scope.one(conn, webhook_endpoints, endpoint_id, "webhook endpoint"))


def _ca_request(conn: Connection, request_id: str) -> CaRequest:
    row = (
        conn.execute(select(webhook_ca_requests).where(webhook_ca_requests.c.id == request_id))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"No CA request '{request_id}'.")
    return CaRequest.from_row(row)
