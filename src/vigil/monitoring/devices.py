"""Devices: the bridges, cameras, panels and sensors installed at a site.

A camera may hang off a bridge of the same site, on one of the bridge's 16 channels (the
recorders integrators know have 16 inputs; the channel is how an alarm names a camera). Serial
numbers are unique within a dealer's environment, because that is how a device identifies itself
when it calls in.

Presence (`status`, `last_seen_at`) belongs to the server, not to callers: heartbeats set it
(`monitoring/presence.py`). It is outside the ETag version, so a device's steady heartbeats
never make an operator's `If-Match` edit fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, RowMapping, insert, select
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
from vigil.monitoring.scoping import TenantScope, scope_of
from vigil.monitoring.versioning import update_versioned
from vigil.storage.db import Database
from vigil.storage.tables import devices, sites


class DeviceKind(StrEnum):
    BRIDGE = "bridge"
    CAMERA = "camera"
    PANEL = "panel"
    SENSOR = "sensor"


class DeviceStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


CHANNELS = range(1, 17)
# A heartbeat window shorter than the presence sweep's own period would flap; a day is the
# longest silence a monitored device may keep and still be called online.
MIN_HEARTBEAT_SECONDS = 30
MAX_HEARTBEAT_SECONDS = 86_400
DEFAULT_HEARTBEAT_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    site_id: str
    kind: DeviceKind
    parent_id: str | None
    channel: int | None
    serial: str
    name: str
    firmware_version: str | None
    status: DeviceStatus
    heartbeat_seconds: int
    last_seen_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> Device:
        return cls(
            id=m["id"],
            site_id=m["site_id"],
            kind=DeviceKind(m["kind"]),
            parent_id=m["parent_id"],
            channel=m["channel"],
            serial=m["serial"],
            name=m["name"],
            firmware_version=m["firmware_version"],
            status=DeviceStatus(m["status"]),
            heartbeat_seconds=m["heartbeat_seconds"],
            last_seen_at=m["last_seen_at"],
            version=m["version"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )


CREATABLE = (
    "site_id",
    "kind",
    "parent_id",
    "channel",
    "serial",
    "name",
    "firmware_version",
    "heartbeat_seconds",
)
EDITABLE = ("parent_id", "channel", "serial", "name", "firmware_version", "heartbeat_seconds")


def _check(fields: dict[str, Any]) -> None:
    """The rules a front's schema may not have enforced (the CLI and portal call us too)."""
    for required in ("site_id", "kind", "serial", "name", "heartbeat_seconds"):
        if required in fields and fields[required] is None:
            raise InvalidInput(f"A device's {required} cannot be null.")
    for text in ("serial", "name"):
        if text in fields and not str(fields[text]).strip():
            raise InvalidInput(f"A device needs a {text}.")
    window = fields.get("heartbeat_seconds")
    if window is not None and not MIN_HEARTBEAT_SECONDS <= window <= MAX_HEARTBEAT_SECONDS:
        raise InvalidInput(
            f"heartbeat_seconds must be {MIN_HEARTBEAT_SECONDS} to {MAX_HEARTBEAT_SECONDS}."
        )
    channel = fields.get("channel")
    if channel is not None and channel not in CHANNELS:
        raise InvalidInput("A bridge channel is 1 to 16.")


def _placement(
    conn: Connection,
    scope: TenantScope,
    *,
    kind: DeviceKind,
    site_id: str,
    parent_id: str | None,
    channel: int | None,
    device_id: str | None = None,
) -> tuple[str | None, int | None]:
    """Where a device hangs: (parent, channel), checked; a free channel is picked if none given.

    Only cameras hang off bridges, and only off a bridge of their own site: a camera wired to
    another site's recorder would put its alarms in front of the wrong operator.
    """
    if parent_id is None:
        if channel is not None:
            raise InvalidInput("Only a camera attached to a bridge (parent_id) has a channel.")
        return None, None
    if kind is not DeviceKind.CAMERA:
        raise InvalidInput(f"Only cameras hang off a bridge; a {kind} has no parent_id.")
    parent = scope.one(conn, devices, parent_id, "device")
    if parent["kind"] != DeviceKind.BRIDGE.value:
        raise InvalidInput(f"Device '{parent_id}' is a {parent['kind']}, not a bridge.")
    if parent["site_id"] != site_id:
        raise InvalidInput("A camera hangs off a bridge at its own site.")
    c = devices.c
    taken = {
        int(ch)
        for ch, dev in conn.execute(
            select(c.channel, c.id).where(scope.where(devices), c.parent_id == parent_id)
        )
        if dev != device_id and ch is not None
    }
    if channel is None:
        free = [ch for ch in CHANNELS if ch not in taken]
        if not free:
            raise Conflict(f"Bridge '{parent_id}' has all {len(CHANNELS)} channels in use.")
        return parent_id, free[0]
    if channel in taken:
        raise Conflict(f"Channel {channel} of bridge '{parent_id}' is already in use.")
    return parent_id, channel


def _serial_free(conn: Connection, scope: TenantScope, serial: str, device_id: str | None) -> None:
    c = devices.c
    other = conn.execute(
        select(c.id).where(scope.where(devices), c.serial == serial)
    ).scalar_one_or_none()
    if other is not None and other != device_id:
        raise Conflict(f"Another device in this environment already has serial '{serial}'.")


class DeviceService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock, records: FieldCipher) -> None:
        self._db, self._audit, self._clock, self._records = db, audit, clock, records

    def create(self, actor: Actor, fields: dict[str, Any]) -> Device:
        scope = scope_of(actor)
        unknown = set(fields) - set(CREATABLE)
        if unknown:
            raise InvalidInput("Unknown device fields: " + ", ".join(sorted(unknown)) + ".")
        for required in ("site_id", "kind", "serial", "name"):
            if required not in fields:
                raise InvalidInput(f"A device needs a {required}.")
        _check(fields)
        try:
            kind = DeviceKind(fields["kind"])
        except ValueError:
            raise InvalidInput("kind is one of " + ", ".join(DeviceKind) + ".") from None
        now = self._clock.now()
        device_id = new_id("dev")
        with self._db.transaction() as conn, _unique():
            site_id = scope.one(conn, sites, fields["site_id"], "site")["id"]
            parent_id, channel = _placement(
                conn,
                scope,
                kind=kind,
                site_id=site_id,
                parent_id=fields.get("parent_id"),
                channel=fields.get("channel"),
            )
            _serial_free(conn, scope, fields["serial"], None)
            conn.execute(
                insert(devices).values(
                    id=device_id,
                    **scope.values(),
                    site_id=site_id,
                    kind=kind.value,
                    parent_id=parent_id,
                    channel=channel,
                    serial=fields["serial"],
                    name=fields["name"],
                    firmware_version=fields.get("firmware_version"),
                    # Offline until it is heard from: a device that never called in is not
                    # being monitored, and saying "online" would hide that.
                    status=DeviceStatus.OFFLINE.value,
                    heartbeat_seconds=fields.get("heartbeat_seconds") or DEFAULT_HEARTBEAT_SECONDS,
                    last_seen_at=None,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.DEVICE_CREATED,
                    target_type="device",
                    target_id=device_id,
                    details={"kind": kind.value, "site_id": site_id},
                ),
            )
            return Device.from_row(scope.one(conn, devices, device_id, "device"))

    def get(self, actor: Actor, device_id: str) -> Device:
        scope = scope_of(actor)
        with self._db.read() as conn:
            return Device.from_row(scope.one(conn, devices, device_id, "device"))

    def list(
        self,
        actor: Actor,
        *,
        site_id: str | None = None,
        parent_id: str | None = None,
        status: DeviceStatus | None = None,
        kind: DeviceKind | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Device]:
        scope = scope_of(actor)
        c = devices.c
        query = scope.select(devices).order_by(c.seq.desc()).limit(limit + 1)
        if site_id is not None:
            query = query.where(c.site_id == site_id)
        if parent_id is not None:
            query = query.where(c.parent_id == parent_id)
        if status is not None:
            query = query.where(c.status == status.value)
        if kind is not None:
            query = query.where(c.kind == kind.value)
        if cursor is not None:
            query = query.where(c.seq < decode_cursor(cursor))
        with self._db.read() as conn:
            rows = [(int(m["seq"]), Device.from_row(m)) for m in conn.execute(query).mappings()]
        return page_of(rows, limit)

    def update(
        self, actor: Actor, device_id: str, changes: dict[str, Any], if_match: int | None
    ) -> Device:
        """Edit a device. A new firmware version is announced (`device.firmware_updated`):
        integrators track rollouts and a surprise downgrade is a security signal."""
        scope = scope_of(actor)
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise InvalidInput("Unknown device fields: " + ", ".join(sorted(unknown)) + ".")
        _check(changes)
        now = self._clock.now()
        # A firmware change is announced, and the event is sealed (S6): key lookup first.
        sealer = (
            self._records.sealer(scope.tenant.dealer_id) if "firmware_version" in changes else None
        )
        with self._db.transaction() as conn, _unique():
            row = scope.one(conn, devices, device_id, "device")
            values = dict(changes)
            if "parent_id" in changes or "channel" in changes:
                parent_id = changes.get("parent_id", row["parent_id"])
                same_parent = parent_id == row["parent_id"]
                channel = changes.get("channel", row["channel"] if same_parent else None)
                values["parent_id"], values["channel"] = _placement(
                    conn,
                    scope,
                    kind=DeviceKind(row["kind"]),
                    site_id=row["site_id"],
                    parent_id=parent_id,
                    channel=channel,
                    device_id=device_id,
                )
            if "serial" in changes:
                _serial_free(conn, scope, changes["serial"], device_id)
            update_versioned(conn, scope, devices, row, if_match, values | {"updated_at": now})
            previous = row["firmware_version"]
            if sealer is not None and changes["firmware_version"] != previous:
                emit(
                    conn,
                    scope.tenant,
                    EventType.DEVICE_FIRMWARE_UPDATED,
                    subject_type="device",
                    subject_id=device_id,
                    data={
                        "device_id": device_id,
                        "site_id": row["site_id"],
                        "firmware_version": changes["firmware_version"],
                        "previous": previous,
                    },
                    when=now,
                    sealer=sealer,
                )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.DEVICE_UPDATED,
                    target_type="device",
                    target_id=device_id,
                    details={"fields": sorted(changes)},
                ),
            )
            return Device.from_row(scope.one(conn, devices, device_id, "device"))


@contextmanager
def _unique() -> Iterator[None]:
    """A concurrent create that slipped past the checks above meets the unique constraints;
    it gets a 409 rather than a 500."""
    try:
        yield
    except IntegrityError:
        raise Conflict(
            "Another device already has that serial, or that bridge channel is taken."
        ) from None
