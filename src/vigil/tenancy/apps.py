"""Apps: a dealer's integrations, each in one environment with an explicit grant of scopes."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Row, insert, select, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor, Tenant
from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope, decode_scopes, encode_scopes
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput, NotFound, PermissionDenied
from vigil.core.ids import new_id
from vigil.storage.db import Database
from vigil.storage.tables import apps, dealers
from vigil.tenancy.models import App, parse_networks


def app_from_row(row: Row[tuple[object, ...]]) -> App:
    m = row._mapping
    return App(
        id=m["id"],
        dealer_id=m["dealer_id"],
        environment=Environment(m["environment"]),
        name=m["name"],
        scopes=decode_scopes(m["scopes"]),
        ip_allow_list=parse_networks(list(m["ip_allow_list"])),
        created_at=m["created_at"],
    )


class AppService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock) -> None:
        self._db, self._audit, self._clock = db, audit, clock

    def create(
        self,
        actor: Actor,
        *,
        dealer_id: str,
        name: str,
        environment: Environment,
        scopes: Iterable[Scope],
        ip_allow_list: Iterable[str] = (),
    ) -> App:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("An app name is 1 to 200 characters.")
        granted = frozenset(scopes)
        if not granted:
            raise InvalidInput("An app needs at least one scope.")
        _confine(actor, dealer_id, environment, granted)
        try:
            networks = parse_networks(list(ip_allow_list))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        now = self._clock.now()
        app = App(new_id("app"), dealer_id, environment, name, granted, networks, now)
        with self._db.transaction() as conn:
            if conn.execute(select(dealers.c.id).where(dealers.c.id == dealer_id)).first() is None:
                raise NotFound(f"No dealer '{dealer_id}'.")
            conn.execute(
                insert(apps).values(
                    id=app.id,
                    dealer_id=dealer_id,
                    environment=environment.value,
                    name=name,
                    scopes=encode_scopes(granted),
                    ip_allow_list=[str(n) for n in networks],
                    created_at=now,
                )
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.APP_CREATED,
                    target_type="app",
                    target_id=app.id,
                    dealer_id=dealer_id,
                    environment=environment.value,
                    details={"scopes": encode_scopes(granted)},
                ),
            )
        return app

    def grant(self, actor: Actor, app_id: str, scopes: Iterable[Scope]) -> App:
        """Set the app's granted scopes. Narrowing takes effect on its keys at once."""
        granted = frozenset(scopes)
        if not granted:
            raise InvalidInput("An app needs at least one scope.")
        app = self.get(app_id, actor.tenant)
        ensure_can_manage(actor, app)
        _confine(actor, app.dealer_id, app.environment, granted)
        now = self._clock.now()
        with self._db.transaction() as conn:
            conn.execute(
                update(apps).where(apps.c.id == app.id).values(scopes=encode_scopes(granted))
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.APP_SCOPES_GRANTED,
                    target_type="app",
                    target_id=app.id,
                    dealer_id=app.dealer_id,
                    environment=app.environment.value,
                    details={"before": encode_scopes(app.scopes), "after": encode_scopes(granted)},
                ),
            )
        return self.get(app_id, actor.tenant)

    def get(self, app_id: str, tenant: Tenant | None) -> App:
        """Another tenant's app is indistinguishable from a missing one (404)."""
        query = select(apps).where(apps.c.id == app_id)
        if tenant is not None:
            query = query.where(
                apps.c.dealer_id == tenant.dealer_id, apps.c.environment == tenant.environment.value
            )
        with self._db.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"No app '{app_id}'.")
        return app_from_row(row)

    def list(self, tenant: Tenant | None, dealer_id: str | None = None) -> list[App]:
        query = select(apps).order_by(apps.c.created_at, apps.c.id)
        if tenant is not None:
            query = query.where(
                apps.c.dealer_id == tenant.dealer_id, apps.c.environment == tenant.environment.value
            )
        elif dealer_id is not None:
            query = query.where(apps.c.dealer_id == dealer_id)
        with self._db.read() as conn:
            return [app_from_row(r) for r in conn.execute(query)]


def ensure_can_manage(actor: Actor, app: App) -> None:
    """An app credential may manage another app's keys only if that app holds no scope the
    caller lacks; otherwise `apps:write` would be a ladder to every other scope."""
    principal = actor.principal
    if principal is None:
        return
    extra = app.scopes - principal.scopes
    if extra:
        raise PermissionDenied(
            "This app holds scopes the caller does not: " + encode_scopes(extra) + "."
        )


def _confine(
    actor: Actor, dealer_id: str, environment: Environment, scopes: frozenset[Scope]
) -> None:
    """An app credential may only create apps in its own tenant and never grant more than it has."""
    principal = actor.principal
    if principal is None:
        return
    if principal.dealer_id != dealer_id or principal.environment is not environment:
        raise NotFound(f"No dealer '{dealer_id}'.")
    extra = scopes - principal.scopes
    if extra:
        raise PermissionDenied(
            "An app cannot grant scopes it does not hold: " + encode_scopes(extra) + "."
        )
