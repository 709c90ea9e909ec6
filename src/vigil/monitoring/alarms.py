"""Alarms: raised by devices and partners, worked by operators through the state machine in
`alarm_states`, every step kept on the alarm's timeline (who did what, when).

Each change commits together with its timeline row, its outbox event and its audit record
(S15), under the caller's identity: an app through the API, an operator through the portal
later, by the same methods here.

Free-text notes live on the timeline only, never in audit details or event payloads: the audit
log is immutable for years, and a note may name a person.

Descriptions, notes and the timeline's free-form details are sealed (S6) with the tenant's
records key, bound to the alarm or timeline entry and the field. They are sealed before the
write transaction opens (a key-store call must not wait on the lock the request holds); the
events, sealed too, use a `TenantSealer` made before it opens.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, func, insert, select

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput, NotFound, PreconditionFailed
from vigil.core.ids import new_id
from vigil.core.pagination import Page, decode_cursor, page_of
from vigil.core.times import to_utc
from vigil.crypto.binding import BindingScope
from vigil.crypto.fields import FieldCipher, TenantSealer
from vigil.events.outbox import emit
from vigil.events.types import EventType
from vigil.monitoring.alarm_models import (
    DEFAULT_PRIORITY,
    MAX_AGENCY,
    MAX_DESCRIPTION,
    MAX_ID,
    MAX_NOTE,
    MAX_SNAPSHOTS,
    MAX_ZONE,
    PRIORITIES,
    Alarm,
    AlarmFilter,
    AlarmType,
    NewAlarm,
    QueuedAlarm,
    ResolutionCode,
    TimelineEntry,
)
from vigil.monitoring.alarm_states import DONE, AlarmAction, AlarmStatus, next_status
from vigil.monitoring.scoping import TenantScope, scope_of
from vigil.monitoring.versioning import etag, update_versioned
from vigil.storage.db import Database
from vigil.storage.tables import alarm_timeline, alarms, devices, sites, snapshots

# The statuses an operator still has work to do in, and how many of them one queue shows.
OPEN = (AlarmStatus.NEW, AlarmStatus.ACKNOWLEDGED, AlarmStatus.DISPATCHED)
QUEUE_LIMIT = 500

_EVENTS: MappingProxyType[AlarmAction, EventType] = MappingProxyType(
    {
        AlarmAction.ACKNOWLEDGE: EventType.ALARM_ACKNOWLEDGED,
        AlarmAction.DISPATCH: EventType.ALARM_DISPATCHED,
        AlarmAction.RESOLVE: EventType.ALARM_RESOLVED,
    }
)
_AUDIT: MappingProxyType[AlarmAction, AuditAction] = MappingProxyType(
    {
        AlarmAction.ACKNOWLEDGE: AuditAction.ALARM_ACKNOWLEDGED,
        AlarmAction.DISPATCH: AuditAction.ALARM_DISPATCHED,
        AlarmAction.RESOLVE: AuditAction.ALARM_RESOLVED,
        AlarmAction.ANNOTATE: AuditAction.ALARM_ANNOTATED,
    }
)


@dataclass(frozen=True, slots=True)
class _Step:
    """One action as asked: what the timeline, event and audit record carry besides from/to."""

    action: AlarmAction
    note: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    changes: dict[str, Any] = field(default_factory=dict)


def list_query(
    scope: TenantScope, flt: AlarmFilter, limit: int, cursor: str | None = None
) -> Select[Any]:
    """Newest first, as a keyset scan that reads an index in order and stops after `limit + 1`
    rows, so a page costs the same at 10k alarms as at 1M (issue 4's target for
    `GET /v1/alarms?status=new&limit=50`). Never OFFSET, never a sort of the matching rows.

    Equality on tenant plus status (or site) followed by `seq` matches `ix_alarms_status`
    (`ix_alarms_site`; `ix_alarms_tenant` without either). EXPLAIN, checked by hand and kept
    honest by tests/functional/monitoring/test_alarm_list_plan.py:
    - SQLite: `SEARCH alarms USING INDEX ix_alarms_status (dealer_id=? AND environment=? AND
      status=? AND seq<?)`, no `USE TEMP B-TREE FOR ORDER BY`.
    - PostgreSQL 1M rows, analysed: `Limit -> Index Scan Backward using ix_alarms_status` when
      the tenant's rows cluster in time (0.07 ms); when statuses and tenants are spread evenly
      the planner may instead walk `alarms_pkey` (seq) backward and filter, which finds 51
      matches within a few hundred rows (0.17 ms). Both are ordered index scans under a Limit
      with no Sort node; which one is the planner's call from its statistics.
    Type, priority and time range are checked on the rows the index yields: they thin a page,
    they never turn the scan into a sort.
    """
    c = alarms.c
    query = scope.select(alarms).order_by(c.seq.desc()).limit(limit + 1)
    if flt.status is not None:
        query = query.where(c.status == flt.status.value)
    if flt.site_id is not None:
        query = query.where(c.site_id == flt.site_id)
    if flt.type is not None:
        query = query.where(c.type == flt.type.value)
    if flt.priority is not None:
        query = query.where(c.priority == flt.priority)
    if flt.since is not None:
        query = query.where(c.occurred_at >= flt.since)
    if flt.until is not None:
        query = query.where(c.occurred_at <= flt.until)
    if cursor is not None:
        query = query.where(c.seq < decode_cursor(cursor))
    return query


def _bounded(text: str | None, limit: int, name: str) -> None:
    if text is not None and len(text) > limit:
        raise InvalidInput(f"'{name}' is longer than {limit} characters.")


def _check(new: NewAlarm) -> NewAlarm:
    """The service's own checks, so every front (not only the API's schema) is held to them.

    `occurred_at` is not bounded against the clock: a panel with a wrong clock must still be
    able to raise a fire alarm, and listings order by arrival (`seq`), not by this time.
    """
    if new.priority is not None and new.priority not in PRIORITIES:
        raise InvalidInput("'priority' runs from 1 (most urgent) to 5.")
    _bounded(new.zone, MAX_ZONE, "zone")
    _bounded(new.description, MAX_DESCRIPTION, "description")
    if len(new.snapshot_ids) > MAX_SNAPSHOTS:
        raise InvalidInput(f"An alarm carries at most {MAX_SNAPSHOTS} snapshots.")
    if any(not 0 < len(s) <= MAX_ID for s in new.snapshot_ids):
        raise InvalidInput("'snapshot_ids' holds something that is not a snapshot id.")
    if len(set(new.snapshot_ids)) != len(new.snapshot_ids):
        raise InvalidInput("'snapshot_ids' names a snapshot twice.")
    return replace(new, occurred_at=to_utc(new.occurred_at, "occurred_at"))


def _precondition(row: RowMapping, expected: int | None) -> None:
    """If-Match is judged before the action (RFC 9110 section 13.2.2): a stale ETag is 412 even
    when the action would also be illegal now, which is how the loser of a race hears of it."""
    current = int(row["version"])
    if expected is not None and expected != current:
        raise PreconditionFailed(
            f"The alarm is at version {current}, not {expected}; read it again.",
            current_etag=etag(current),
        )


def _locked(conn: Connection, scope: TenantScope, alarm_id: str) -> RowMapping:
    """The alarm, row-locked until commit (FOR UPDATE on PostgreSQL; on SQLite `BEGIN
    IMMEDIATE` already serialises writers). A caller without If-Match who loses a race then
    reads the winner's status and gets a truthful 409, not a 412 for a precondition it never
    sent."""
    query = scope.select(alarms).where(alarms.c.id == alarm_id).with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"No alarm '{alarm_id}'.")
    return row


@dataclass(frozen=True, slots=True)
class _Sealed:
    """A timeline entry's id with its note and free-form details, already sealed."""

    id: str
    note: bytes | bytearray | None
    details: bytes | bytearray | None


class AlarmService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock, cipher: FieldCipher) -> None:
        self._db, self._audit, self._clock, self._cipher = db, audit, clock, cipher

    @staticmethod
    def _bindings(scope: TenantScope, record_type: str) -> BindingScope:
        t = scope.tenant
        return BindingScope(t.dealer_id, t.environment.value, record_type)

    def _alarm(self, scope: TenantScope, m: RowMapping) -> Alarm:
        alarm = Alarm.from_row(m)
        sealed = m["description_sealed"]
        if sealed is None:
            return alarm  # written before encryption, or no description
        binding = self._bindings(scope, "alarm").bind(m["id"], "description")
        return replace(alarm, description=self._cipher.open(binding, sealed).decode("utf-8"))

    def _seal_entry(self, scope: TenantScope, note: str | None, details: dict[str, Any]) -> _Sealed:
        entry_id = new_id("atl")
        bind = self._bindings(scope, "alarm_timeline").bind
        seal = self._cipher.seal
        return _Sealed(
            entry_id,
            None if note is None else seal(bind(entry_id, "note"), note.encode("utf-8")),
            seal(bind(entry_id, "details"), json.dumps(details).encode()) if details else None,
        )

    def create(self, actor: Actor, new: NewAlarm) -> Alarm:
        scope = scope_of(actor)
        new = _check(new)
        now = self._clock.now()
        alarm_id = new_id("alarm")
        description = None
        if new.description is not None:
            binding = self._bindings(scope, "alarm").bind(alarm_id, "description")
            description = self._cipher.seal(binding, new.description.encode("utf-8"))
        entry = self._seal_entry(scope, None, {})
        sealer = self._cipher.sealer(scope.tenant.dealer_id)  # for the events, sealed inside
        with self._db.transaction() as conn:
            scope.one(conn, sites, new.site_id, "site")
            self._check_device(conn, scope, new)
            self._check_snapshots(conn, scope, new)
            conn.execute(
                insert(alarms).values(
                    id=alarm_id,
                    **scope.values(),
                    site_id=new.site_id,
                    device_id=new.device_id,
                    zone=new.zone,
                    type=new.type.value,
                    priority=new.priority or DEFAULT_PRIORITY[new.type],
                    status=AlarmStatus.NEW.value,
                    description=None,
                    description_sealed=description,
                    snapshot_ids=list(new.snapshot_ids),
                    verification_requested=int(new.verification_requested),
                    resolution_code=None,
                    occurred_at=new.occurred_at,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            row = scope.one(conn, alarms, alarm_id, "alarm")
            alarm = replace(Alarm.from_row(row), description=new.description)
            details = {"to": alarm.status.value}
            self._timeline(conn, scope, actor, alarm_id, "created", entry, details, now)
            data = alarm.event_data() | {"description": alarm.description}
            self._emit(conn, sealer, scope, EventType.ALARM_CREATED, alarm_id, data, now)
            if new.verification_requested:
                data = alarm.event_data()
                event = EventType.VERIFICATION_REQUESTED
                self._emit(conn, sealer, scope, event, alarm_id, data, now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.ALARM_CREATED,
                    target_type="alarm",
                    target_id=alarm_id,
                    details={"site_id": new.site_id, "type": alarm.type.value},
                ),
            )
            return alarm

    def get(self, actor: Actor, alarm_id: str) -> Alarm:
        scope = scope_of(actor)
        with self._db.read() as conn:
            row = scope.one(conn, alarms, alarm_id, "alarm")
        return self._alarm(scope, row)

    def list(
        self, actor: Actor, flt: AlarmFilter, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Alarm]:
        flt = replace(
            flt,
            since=flt.since and to_utc(flt.since, "since"),
            until=flt.until and to_utc(flt.until, "until"),
        )
        scope = scope_of(actor)
        query = list_query(scope, flt, limit, cursor)
        with self._db.read() as conn:
            found = list(conn.execute(query).mappings())
        return page_of([(int(m["seq"]), self._alarm(scope, m)) for m in found], limit)

    def queue(
        self,
        actor: Actor,
        *,
        status: AlarmStatus | None = None,
        site_id: str | None = None,
        limit: int = QUEUE_LIMIT,
    ) -> builtins.list[QueuedAlarm]:
        """The open alarms, most urgent first, then longest waiting (arrival order): the order
        an operator works them in. One query, the site's name joined in; descriptions stay
        sealed (the detail page opens one). Open alarms are few (they are worked within
        minutes), so sorting them is cheap; `limit` bounds a backlog all the same."""
        if status is not None and status not in OPEN:
            raise InvalidInput("The queue holds new, acknowledged and dispatched alarms.")
        scope = scope_of(actor)
        a = alarms.c
        query = (
            select(
                a.id,
                a.site_id,
                sites.c.name,
                a.zone,
                a.type,
                a.priority,
                a.status,
                a.verification_requested,
                a.snapshot_ids,
                a.created_at,
                a.version,
            )
            .join(sites, sites.c.id == a.site_id)
            .where(scope.where(alarms), scope.where(sites))
            .where(a.status.in_([s.value for s in ([status] if status else OPEN)]))
            .order_by(a.priority, a.seq)
            .limit(limit)
        )
        if site_id is not None:
            query = query.where(a.site_id == site_id)
        with self._db.read() as conn:
            rows = conn.execute(query).all()
        return [
            QueuedAlarm(
                id=r[0],
                site_id=r[1],
                site_name=r[2],
                zone=r[3],
                type=AlarmType(r[4]),
                priority=r[5],
                status=AlarmStatus(r[6]),
                verification_requested=bool(r[7]),
                snapshot_count=len(r[8]),
                created_at=r[9],
                version=r[10],
            )
            for r in rows
        ]

    def open_counts(self, actor: Actor) -> dict[int, int]:
        """How many alarms are open at each priority (the dashboard's first panel)."""
        scope = scope_of(actor)
        a = alarms.c
        query = (
            select(a.priority, func.count())
            .where(scope.where(alarms), a.status.in_([s.value for s in OPEN]))
            .group_by(a.priority)
        )
        with self._db.read() as conn:
            return {int(p): int(n) for p, n in conn.execute(query)}

    def timeline(
        self, actor: Actor, alarm_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[TimelineEntry]:
        """Oldest first: a timeline is read as a story."""
        scope = scope_of(actor)
        c = alarm_timeline.c
        query = (
            scope.select(alarm_timeline)
            .where(c.alarm_id == alarm_id)
            .order_by(c.seq)
            .limit(limit + 1)
        )
        if cursor is not None:
            query = query.where(c.seq > decode_cursor(cursor))
        with self._db.read() as conn:
            scope.one(conn, alarms, alarm_id, "alarm")
            found = list(conn.execute(query).mappings())
        bind = self._bindings(scope, "alarm_timeline").bind
        open_ = self._cipher.open

        def entry(m: RowMapping) -> TimelineEntry:
            note, details = m["note"], dict(m["details"])
            if m["note_sealed"] is not None:
                note = open_(bind(m["id"], "note"), m["note_sealed"]).decode("utf-8")
            if m["details_sealed"] is not None:
                details |= json.loads(open_(bind(m["id"], "details"), m["details_sealed"]))
            return TimelineEntry(
                m["id"],
                m["alarm_id"],
                m["action"],
                m["actor_type"],
                m["actor_id"],
                note,
                details,
                m["occurred_at"],
            )

        return page_of([(int(m["seq"]), entry(m)) for m in found], limit)

    def acknowledge(
        self, actor: Actor, alarm_id: str, *, note: str | None = None, if_match: int | None = None
    ) -> Alarm:
        return self._act(actor, alarm_id, _Step(AlarmAction.ACKNOWLEDGE, note), if_match)

    def dispatch(
        self,
        actor: Actor,
        alarm_id: str,
        *,
        agency: str | None = None,
        note: str | None = None,
        if_match: int | None = None,
    ) -> Alarm:
        _bounded(agency, MAX_AGENCY, "agency")
        step = _Step(AlarmAction.DISPATCH, note, {"agency": agency} if agency else {})
        return self._act(actor, alarm_id, step, if_match)

    def resolve(
        self,
        actor: Actor,
        alarm_id: str,
        code: ResolutionCode,
        *,
        note: str | None = None,
        if_match: int | None = None,
    ) -> Alarm:
        if code is ResolutionCode.OTHER and not (note and note.strip()):
            raise InvalidInput("Resolving as 'other' needs a note saying what happened.")
        details = {"resolution_code": code.value}
        step = _Step(AlarmAction.RESOLVE, note, details, {"resolution_code": code.value})
        return self._act(actor, alarm_id, step, if_match)

    def annotate(
        self, actor: Actor, alarm_id: str, note: str, *, if_match: int | None = None
    ) -> Alarm:
        """Add a note. The status stays, but the version (and ETag) moves on: a note can change
        what the next operator should do ("police already on site"), so a transition sent with
        an ETag read before the note gets 412 and its sender reads the alarm again."""
        if not note.strip():
            raise InvalidInput("An annotation needs a note.")
        return self._act(actor, alarm_id, _Step(AlarmAction.ANNOTATE, note), if_match)

    def _act(self, actor: Actor, alarm_id: str, step: _Step, if_match: int | None) -> Alarm:
        scope = scope_of(actor)
        _bounded(step.note, MAX_NOTE, "note")
        now = self._clock.now()
        entry = self._seal_entry(scope, step.note, step.details)
        sealer = self._cipher.sealer(scope.tenant.dealer_id)
        with self._db.transaction() as conn:
            row = _locked(conn, scope, alarm_id)
            _precondition(row, if_match)
            before = AlarmStatus(row["status"])
            after = next_status(before, step.action)
            values = step.changes | {"status": after.value, "updated_at": now}
            update_versioned(conn, scope, alarms, row, if_match, values)
            alarm = self._alarm(scope, scope.one(conn, alarms, alarm_id, "alarm"))
            moved = {"from": before.value, "to": after.value}  # step.details: sealed in entry
            self._timeline(conn, scope, actor, alarm_id, DONE[step.action], entry, moved, now)
            event = _EVENTS.get(step.action)
            if event is not None:
                data = alarm.event_data() | {
                    "previous_status": before.value,
                    "actor": {"type": actor.type.value, "id": actor.id},
                    **step.details,
                }
                self._emit(conn, sealer, scope, event, alarm_id, data, now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    _AUDIT[step.action],
                    target_type="alarm",
                    target_id=alarm_id,
                    # Closed-set values only: the agency, like notes, is free text.
                    details={"from": before.value, "to": after.value} | step.changes,
                ),
            )
            return alarm

    def _check_device(self, conn: Connection, scope: TenantScope, new: NewAlarm) -> None:
        if new.device_id is None:
            return
        found = conn.execute(
            scope.select(devices, devices.c.site_id).where(devices.c.id == new.device_id)
        ).first()
        if found is None:
            raise NotFound(f"No device '{new.device_id}'.")
        if found.site_id != new.site_id:
            raise InvalidInput(f"Device '{new.device_id}' is not at site '{new.site_id}'.")

    def _check_snapshots(self, conn: Connection, scope: TenantScope, new: NewAlarm) -> None:
        """Each snapshot must be the tenant's, taken by a device of the alarm's site: evidence
        from elsewhere attached to an alarm would mislead the operator verifying it."""
        if not new.snapshot_ids:
            return
        query = (
            select(snapshots.c.id)
            .join(devices, devices.c.id == snapshots.c.device_id)
            .where(
                scope.where(snapshots),
                snapshots.c.id.in_(new.snapshot_ids),
                devices.c.site_id == new.site_id,
            )
        )
        found = set(conn.execute(query).scalars())
        missing = [s for s in new.snapshot_ids if s not in found]
        if missing:
            raise InvalidInput(
                "No snapshot of this site's devices with id: " + ", ".join(missing) + ".",
                snapshot_ids=missing,
            )

    def _timeline(
        self,
        conn: Connection,
        scope: TenantScope,
        actor: Actor,
        alarm_id: str,
        action: str,
        entry: _Sealed,
        details: dict[str, Any],
        now: datetime,
    ) -> None:
        conn.execute(
            insert(alarm_timeline).values(
                id=entry.id,
                **scope.values(),
                alarm_id=alarm_id,
                action=action,
                actor_type=actor.type.value,
                actor_id=actor.id,
                note=None,
                details=details,
                note_sealed=entry.note,
                details_sealed=entry.details,
                occurred_at=now,
            )
        )

    def _emit(
        self,
        conn: Connection,
        sealer: TenantSealer,
        scope: TenantScope,
        event: EventType,
        alarm_id: str,
        data: dict[str, Any],
        now: datetime,
    ) -> None:
        emit(
            conn,
            scope.tenant,
            event,
            subject_type="alarm",
            subject_id=alarm_id,
            data=data,
            when=now,
            sealer=sealer,
        )
