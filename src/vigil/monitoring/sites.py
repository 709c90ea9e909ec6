"""Sites: the premises a dealer monitors, with their central-station account and arming state.

Arming changes are kept as history (who armed or disarmed, when, from what) because that is the
first question after every alarm, and each announces `site.armed` / `site.disarmed`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any
from zoneinfo import available_timezones

from sqlalchemy import RowMapping, insert
from sqlalchemy.exc import IntegrityError

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.core.clock import Clock
from vigil.core.errors import Conflict, InvalidInput
from vigil.core.ids import new_id
from vigil.core.pagination import Page, decode_cursor, page_of
from vigil.crypto.fields import FieldCipher
from vigil.events.outbox import emit
from vigil.events.types import EventType
from vigil.monitoring.scoping import scope_of
from vigil.monitoring.versioning import update_versioned
from vigil.storage.db import Database
from vigil.storage.tables import site_arming_changes, sites


class ArmingState(StrEnum):
    DISARMED = "disarmed"
    ARMED_STAY = "armed_stay"
    ARMED_AWAY = "armed_away"


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    external_id: str | None
    account_number: str | None
    address: dict[str, Any]
    timezone: str
    monitoring_station: str | None
    arming_state: ArmingState
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> Site:
        return cls(
            id=m["id"],
            name=m["name"],
            external_id=m["external_id"],
            account_number=m["account_number"],
            address=dict(m["address"]),
            timezone=m["timezone"],
            monitoring_station=m["monitoring_station"],
            arming_state=ArmingState(m["arming_state"]),
            version=m["version"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )


@dataclass(frozen=True, slots=True)
class ArmingChange:
    id: str
    site_id: str
    from_state: ArmingState
    to_state: ArmingState
    actor_type: str
    actor_id: str
    reason: str | None
    occurred_at: datetime


EDITABLE = ("name", "external_id", "account_number", "address", "timezone", "monitoring_station")


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _check(fields: dict[str, Any]) -> None:
    for required in ("name", "timezone", "address"):
        if required in fields and fields[required] is None:
            raise InvalidInput(f"A site's {required} cannot be null.")
    tz = fields.get("timezone")
    if tz is not None and tz not in _zones():
        raise InvalidInput(f"'{tz}' is not an IANA time zone name (e.g. Europe/Paris).")
    if "name" in fields and not str(fields["name"]).strip():
        raise InvalidInput("A site needs a name.")


class SiteService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock, records: FieldCipher) -> None:
        self._db, self._audit, self._clock, self._records = db, audit, clock, records

    def create(self, actor: Actor, fields: dict[str, Any]) -> Site:
        scope = scope_of(actor)
        unknown = set(fields) - set(EDITABLE)
        if unknown:
            raise InvalidInput("Unknown site fields: " + ", ".join(sorted(unknown)) + ".")
        _check(fields)
        now = self._clock.now()
        site_id = new_id("site")
        values = {
            "external_id": None,
            "account_number": None,
            "address": {},
            "timezone": "UTC",
            "monitoring_station": None,
        } | fields
        with self._db.transaction() as conn, _unique_external_id():
            conn.execute(
                insert(sites).values(
                    id=site_id,
                    **scope.values(),
                    **values,
                    arming_state=ArmingState.DISARMED.value,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._audit.write_in(
                conn,
                actor.record(now, AuditAction.SITE_CREATED, target_type="site", target_id=site_id),
            )
            return Site.from_row(scope.one(conn, sites, site_id, "site"))

    def get(self, actor: Actor, site_id: str) -> Site:
        scope = scope_of(actor)
        with self._db.read() as conn:
            return Site.from_row(scope.one(conn, sites, site_id, "site"))

    def list(
        self,
        actor: Actor,
        *,
        arming_state: ArmingState | None = None,
        external_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Site]:
        scope = scope_of(actor)
        c = sites.c
        query = scope.select(sites).order_by(c.seq.desc()).limit(limit + 1)
        if arming_state is not None:
            query = query.where(c.arming_state == arming_state.value)
        if external_id is not None:
            query = query.where(c.external_id == external_id)
        if cursor is not None:
            query = query.where(c.seq < decode_cursor(cursor))
        with self._db.read() as conn:
            rows = [(int(m["seq"]), Site.from_row(m)) for m in conn.execute(query).mappings()]
        return page_of(rows, limit)

    def update(
        self, actor: Actor, site_id: str, changes: dict[str, Any], if_match: int | None
    ) -> Site:
        scope = scope_of(actor)
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise InvalidInput("Unknown site fields: " + ", ".join(sorted(unknown)) + ".")
        _check(changes)
        now = self._clock.now()
        with self._db.transaction() as conn, _unique_external_id():
            row = scope.one(conn, sites, site_id, "site")
            update_versioned(conn, scope, sites, row, if_match, changes | {"updated_at": now})
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.SITE_UPDATED,
                    target_type="site",
                    target_id=site_id,
                    details={"fields": sorted(changes)},
                ),
            )
            return Site.from_row(scope.one(conn, sites, site_id, "site"))

    def set_arming_state(
        self,
        actor: Actor,
        site_id: str,
        state: ArmingState,
        *,
        reason: str | None = None,
        if_match: int | None = None,
    ) -> Site:
        """Arm or disarm. Asking for the state the site is already in changes nothing and
        announces nothing (a panel re-sending its state is not a new event)."""
        scope = scope_of(actor)
        now = self._clock.now()
        sealer = self._records.sealer(scope.tenant.dealer_id)  # the event is sealed (S6)
        with self._db.transaction() as conn:
            row = scope.one(conn, sites, site_id, "site")
            before = ArmingState(row["arming_state"])
            if before is state:
                return Site.from_row(row)
            update_versioned(
                conn, scope, sites, row, if_match, {"arming_state": state.value, "updated_at": now}
            )
            conn.execute(
                insert(site_arming_changes).values(
                    id=new_id("arm"),
                    **scope.values(),
                    site_id=site_id,
                    from_state=before.value,
                    to_state=state.value,
                    actor_type=actor.type.value,
                    actor_id=actor.id,
                    reason=reason,
                    occurred_at=now,
                )
            )
            event = (
                EventType.SITE_DISARMED if state is ArmingState.DISARMED else EventType.SITE_ARMED
            )
            emit(
                conn,
                scope.tenant,
                event,
                subject_type="site",
                subject_id=site_id,
                data={"site_id": site_id, "arming_state": state.value, "previous": before.value},
                when=now,
                sealer=sealer,
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.SITE_ARMING_CHANGED,
                    target_type="site",
                    target_id=site_id,
                    details={"from": before.value, "to": state.value},
                ),
            )
            return Site.from_row(scope.one(conn, sites, site_id, "site"))

    def arming_history(
        self, actor: Actor, site_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[ArmingChange]:
        scope = scope_of(actor)
        c = site_arming_changes.c
        query = (
            scope.select(site_arming_changes)
            .where(c.site_id == site_id)
            .order_by(c.seq.desc())
            .limit(limit + 1)
        )
        if cursor is not None:
            query = query.where(c.seq < decode_cursor(cursor))
        with self._db.read() as conn:
            scope.one(conn, sites, site_id, "site")
            rows = [
                (
                    int(m["seq"]),
                    ArmingChange(
                        m["id"],
                        m["site_id"],
                        ArmingState(m["from_state"]),
                        ArmingState(m["to_state"]),
                        m["actor_type"],
                        m["actor_id"],
                        m["reason"],
                        m["occurred_at"],
                    ),
                )
                for m in conn.execute(query).mappings()
            ]
        return page_of(rows, limit)


@contextmanager
def _unique_external_id() -> Iterator[None]:
    """Turns the storage's uniqueness refusal into a clear 409 instead of a 500."""
    try:
        yield
    except IntegrityError:
        raise Conflict("Another site in this environment already has that external id.") from None
