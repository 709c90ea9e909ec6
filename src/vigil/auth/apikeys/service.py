"""Issuing, rotating, revoking and checking API keys (S9)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Row, insert, select, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.audit.record import AuditRecord
from vigil.auth.actor import Actor, Tenant
from vigil.auth.apikeys import format as keyformat
from vigil.auth.apikeys.models import ApiKey, KeyStatus
from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope, decode_scopes, encode_scopes
from vigil.core.clock import Clock
from vigil.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from vigil.storage.db import Database
from vigil.storage.tables import api_keys
from vigil.tenancy.apps import AppService, ensure_can_manage
from vigil.tenancy.models import App

MAX_GRACE = timedelta(days=7)


def key_from_row(row: Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=m["id"],
        app_id=m["app_id"],
        dealer_id=m["dealer_id"],
        environment=Environment(m["environment"]),
        scopes=decode_scopes(m["scopes"]),
        status=KeyStatus(m["status"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        exposed_at=m["exposed_at"],
        last_used_at=m["last_used_at"],
        last_used_ip=m["last_used_ip"],
    )


class ApiKeyService:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        clock: Clock,
        apps: AppService,
        default_grace: timedelta,
    ) -> None:
        self._db, self._audit, self._clock, self._apps = db, audit, clock, apps
        self._default_grace = default_grace

    def create(
        self, actor: Actor, app_id: str, scopes: Iterable[Scope] | None = None
    ) -> tuple[ApiKey, str]:
        """Issue the app's first key. Returns the key and its token, which is never shown again."""
        app = self._apps.get(app_id, actor.tenant)
        ensure_can_manage(actor, app)
        granted = _narrowed(app, scopes)
        now = self._clock.now()
        with self._db.transaction() as conn:
            if self._live_keys(conn, app.id, now):
                raise Conflict("This app already has an active key; rotate it instead.")
            key, token = self._issue(conn, app, granted, now)
            self._audit.write_in(conn, self._record(actor, now, AuditAction.API_KEY_CREATED, key))
        return key, token

    def rotate(
        self,
        actor: Actor,
        app_id: str,
        *,
        grace: timedelta | None = None,
        scopes: Iterable[Scope] | None = None,
    ) -> tuple[ApiKey, str, ApiKey | None]:
        """Issue a new key; the current one keeps working until the grace window ends.

        At most one key is rotating out at a time: an older rotating-out key is revoked now.
        """
        grace = self._default_grace if grace is None else grace
        if not timedelta(0) <= grace <= MAX_GRACE:
            raise InvalidInput("The grace window must be between 0 and 7 days.")
        app = self._apps.get(app_id, actor.tenant)
        ensure_can_manage(actor, app)
        now = self._clock.now()
        with self._db.transaction() as conn:
            live = self._live_keys(conn, app.id, now)
            current = next((k for k in live if k.status is KeyStatus.ACTIVE), None)
            granted = _narrowed(
                app, scopes if scopes is not None else (current.scopes if current else None)
            )
            for old in live:
                if old.status is KeyStatus.ROTATING or grace == timedelta(0):
                    self._set_revoked(conn, old.id, now)
            outgoing: ApiKey | None = None
            if current is not None and grace > timedelta(0):
                conn.execute(
                    update(api_keys)
                    .where(api_keys.c.id == current.id)
                    .values(status=KeyStatus.ROTATING.value, expires_at=now + grace)
                )
                outgoing = self._get(conn, current.id)
            key, token = self._issue(conn, app, granted, now)
            self._audit.write_in(
                conn,
                self._record(
                    actor,
                    now,
                    AuditAction.API_KEY_ROTATED,
                    key,
                    details={
                        "previous_key_id": current.id if current else None,
                        "grace_seconds": int(grace.total_seconds()),
                    },
                ),
            )
        return key, token, outgoing

    def revoke(self, actor: Actor, key_id: str) -> ApiKey:
        now = self._clock.now()
        with self._db.transaction() as conn:
            key = self._get_for(conn, key_id, actor.tenant)
            ensure_can_manage(actor, self._apps.get(key.app_id, actor.tenant))
            if key.status is not KeyStatus.REVOKED:
                self._set_revoked(conn, key.id, now)
            self._audit.write_in(conn, self._record(actor, now, AuditAction.API_KEY_REVOKED, key))
            return self._get(conn, key.id)

    def list(
        self, tenant: Tenant | None, *, app_id: str | None = None, dealer_id: str | None = None
    ) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant is not None:
            query = query.where(
                api_keys.c.dealer_id == tenant.dealer_id,
                api_keys.c.environment == tenant.environment.value,
            )
        if app_id is not None:
            query = query.where(api_keys.c.app_id == app_id)
        if dealer_id is not None:
            query = query.where(api_keys.c.dealer_id == dealer_id)
        with self._db.read() as conn:
            return [key_from_row(r) for r in conn.execute(query)]

    def get(self, key_id: str, tenant: Tenant | None) -> ApiKey:
        with self._db.read() as conn:
            return self._get_for(conn, key_id, tenant)

    def mark_exposed(self, actor: Actor, token: str) -> ApiKey | None:
        """A key seen in cleartext must be assumed stolen: revoke it at once and flag it (S2).

        Only a key whose secret matches is revoked, so nobody can revoke someone else's key by
        sending its (non-secret) key id over plain HTTP.
        """
        parsed = keyformat.parse(token)
        if parsed is None:
            return None
        now = self._clock.now()
        with self._db.transaction() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.id == parsed.key_id)).first()
            if row is None or not keyformat.secrets_match(row._mapping["secret_hash"], parsed):
                return None
            conn.execute(
                update(api_keys)
                .where(api_keys.c.id == parsed.key_id)
                .values(
                    status=KeyStatus.REVOKED.value,
                    revoked_at=row._mapping["revoked_at"] or now,
                    exposed_at=now,
                )
            )
            key = self._get(conn, parsed.key_id)
            self._audit.write_in(
                conn,
                self._record(
                    actor,
                    now,
                    AuditAction.API_KEY_EXPOSED,
                    key,
                    details={"reason": "sent over plain HTTP"},
                ),
            )
        return key

    # -- internals -------------------------------------------------------------------------

    def _issue(
        self, conn: Connection, app: App, scopes: frozenset[Scope], now: datetime
    ) -> tuple[ApiKey, str]:
        minted = keyformat.mint(app.environment)
        conn.execute(
            insert(api_keys).values(
                id=minted.key_id,
                app_id=app.id,
                dealer_id=app.dealer_id,
                environment=app.environment.value,
                secret_hash=minted.secret_hash,
                scopes=encode_scopes(scopes),
                status=KeyStatus.ACTIVE.value,
                created_at=now,
            )
        )
        return self._get(conn, minted.key_id), minted.token

    def _live_keys(self, conn: Connection, app_id: str, now: datetime) -> tuple[ApiKey, ...]:
        rows = conn.execute(
            select(api_keys).where(
                api_keys.c.app_id == app_id, api_keys.c.status != KeyStatus.REVOKED.value
            )
        )
        return tuple(k for k in (key_from_row(r) for r in rows) if k.usable_at(now))

    def _set_revoked(self, conn: Connection, key_id: str, now: datetime) -> None:
        conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id)
            .values(status=KeyStatus.REVOKED.value, revoked_at=now)
        )

    def _get(self, conn: Connection, key_id: str) -> ApiKey:
        return self._get_for(conn, key_id, None)

    def _get_for(self, conn: Connection, key_id: str, tenant: Tenant | None) -> ApiKey:
        query = select(api_keys).where(api_keys.c.id == key_id)
        if tenant is not None:
            query = query.where(
                api_keys.c.dealer_id == tenant.dealer_id,
                api_keys.c.environment == tenant.environment.value,
            )
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"No API key '{key_id}'.")
        return key_from_row(row)

    def _record(
        self,
        actor: Actor,
        now: datetime,
        action: AuditAction,
        key: ApiKey,
        details: dict[str, object] | None = None,
    ) -> AuditRecord:
        return actor.record(
            now,
            action,
            target_type="api_key",
            target_id=key.id,
            dealer_id=key.dealer_id,
            environment=key.environment.value,
            details={"app_id": key.app_id, **(details or {})},
        )


def _narrowed(app: App, scopes: Iterable[Scope] | None) -> frozenset[Scope]:
    """A key carries the app's scopes or fewer: narrowing allowed, widening never (S9)."""
    if scopes is None:
        return app.scopes
    wanted = frozenset(scopes)
    if not wanted:
        raise InvalidInput("A key needs at least one scope.")
    extra = wanted - app.scopes
    if extra:
        raise PermissionDenied(
            "A key cannot carry scopes its app was not granted: " + encode_scopes(extra) + "."
        )
    return wanted
