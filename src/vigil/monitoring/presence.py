"""Presence: a device is online while it keeps calling in within its heartbeat window.

Two transitions, each announced exactly once however many processes run:
- a heartbeat brings an offline device online (`device.online`), inside the ingest transaction;
- the sweep (`PresenceService.mark_overdue`, run by the server every few seconds) takes an
  online device whose `last_seen_at + heartbeat_seconds` has passed offline (`device.offline`).

Both are conditional updates (compare-and-set on the state they judged), so two sweepers, or a
sweeper racing a heartbeat, never both win: the loser's update matches no row and it emits
nothing. Alarm receivers page someone on `device.offline`; a duplicate is a false page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, or_, select, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor, Tenant
from vigil.auth.principal import ActorType, Environment
from vigil.core.clock import Clock
from vigil.crypto.fields import FieldCipher, TenantSealer
from vigil.events.outbox import emit
from vigil.events.types import EventType
from vigil.monitoring.devices import MIN_HEARTBEAT_SECONDS, DeviceStatus
from vigil.storage.db import Database
from vigil.storage.epoch import epoch_seconds
from vigil.storage.tables import devices

SWEEPER = Actor(type=ActorType.SYSTEM, id="presence-sweep", via="server")
# Devices taken offline per transaction: a mass outage (a site's power, a bridge's uplink) is
# handled in several short transactions rather than one that holds the write lock for long.
BATCH = 200


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def record_heartbeat(
    conn: Connection,
    audit: AuditLog,
    sealer: TenantSealer,
    actor: Actor,
    tenant: Tenant,
    device: RowMapping,
    seen_at: datetime,
    now: datetime,
) -> bool:
    """Note that `device` was heard from at `seen_at`, inside the caller's transaction
    (`sealer`, made before it, seals the `device.online` event).

    Returns True when this brought the device online. `last_seen_at` only moves forward (a late
    batch must not rewind it) and never past `now` (a device clock running fast must not buy
    presence it has not shown). A heartbeat already older than the window proves nothing about
    now, so it records the sighting but does not bring the device online, or the next sweep
    would take it straight back offline.
    """
    c = devices.c
    seen_at = min(seen_at, now)
    conn.execute(
        update(devices)
        .where(c.id == device["id"], or_(c.last_seen_at.is_(None), c.last_seen_at < seen_at))
        .values(last_seen_at=seen_at)
    )
    if seen_at + timedelta(seconds=device["heartbeat_seconds"]) < now:
        return False
    result = conn.execute(
        update(devices)
        .where(c.id == device["id"], c.status == DeviceStatus.OFFLINE.value)
        .values(status=DeviceStatus.ONLINE.value, updated_at=now)
    )
    if result.rowcount != 1:
        return False
    data = {
        "device_id": device["id"],
        "site_id": device["site_id"],
        "kind": device["kind"],
        "last_seen_at": _iso(seen_at),
    }
    emit(
        conn,
        tenant,
        EventType.DEVICE_ONLINE,
        subject_type="device",
        subject_id=device["id"],
        data=data,
        when=now,
        sealer=sealer,
    )
    audit.write_in(
        conn,
        actor.record(
            now,
            AuditAction.DEVICE_CAME_ONLINE,
            target_type="device",
            target_id=device["id"],
            details={"last_seen_at": data["last_seen_at"]},
        ),
    )
    return True


@dataclass(frozen=True, slots=True)
class _Overdue:
    seq: int
    id: str
    dealer_id: str
    environment: str
    site_id: str
    kind: str
    last_seen_at: datetime
    heartbeat_seconds: int

    @property
    def deadline(self) -> datetime:
        return self.last_seen_at + timedelta(seconds=self.heartbeat_seconds)


class PresenceService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock, records: FieldCipher) -> None:
        self._db, self._audit, self._clock, self._records = db, audit, clock, records

    def mark_overdue(self, now: datetime | None = None) -> int:
        """Take every online device whose window has passed offline; returns how many.

        This is a platform job that spans tenants (it reads `devices` without a tenant scope on
        purpose); each event and audit record it writes carries the device's own tenant.
        """
        now = now or self._clock.now()
        marked, after = 0, 0
        while True:
            batch = self._candidates(now, after)
            overdue = [d for d in batch if d.deadline < now]
            if overdue:
                marked += self._take_offline(overdue, now)
            if len(batch) < BATCH:
                return marked
            after = batch[-1].seq

    def _candidates(self, now: datetime, after: int) -> list[_Overdue]:
        """Online devices past their window, in storage order after `after`. The index on
        (status, last_seen_at) narrows the scan to devices silent for at least the shortest
        window; the whole-second SQL test can only let through devices up to a second early,
        which the exact test in `mark_overdue` then drops."""
        c = devices.c
        query = (
            select(
                c.seq,
                c.id,
                c.dealer_id,
                c.environment,
                c.site_id,
                c.kind,
                c.last_seen_at,
                c.heartbeat_seconds,
            )
            .where(
                c.status == DeviceStatus.ONLINE.value,
                c.last_seen_at < now - timedelta(seconds=MIN_HEARTBEAT_SECONDS),
                epoch_seconds(c.last_seen_at) + c.heartbeat_seconds < now.timestamp(),
                c.seq > after,
            )
            .order_by(c.seq)
            .limit(BATCH)
        )
        with self._db.read() as conn:
            return [_Overdue(*row) for row in conn.execute(query)]

    def _take_offline(self, overdue: list[_Overdue], now: datetime) -> int:
        c = devices.c
        marked: list[_Overdue] = []
        # The events are sealed with each dealer's key, looked up before the write lock.
        sealers = self._records.sealers(o.dealer_id for o in overdue)
        with self._db.transaction() as conn:
            for device in overdue:
                # Compare-and-set on what was judged: a heartbeat since the read moved
                # last_seen_at past the deadline, a concurrent sweeper already set offline, or
                # a PATCH changed the window; any of these makes this update match nothing.
                result = conn.execute(
                    update(devices)
                    .where(
                        c.id == device.id,
                        c.status == DeviceStatus.ONLINE.value,
                        c.heartbeat_seconds == device.heartbeat_seconds,
                        c.last_seen_at < now - timedelta(seconds=device.heartbeat_seconds),
                    )
                    .values(status=DeviceStatus.OFFLINE.value, updated_at=now)
                )
                if result.rowcount == 1:
                    marked.append(device)
            # Audit chain heads are locked only after every device row, and in chain order:
            # an ingest holds its device's row and then wants its chain's head, so taking a
            # head before the next device row could deadlock against it on PostgreSQL.
            for device in sorted(marked, key=lambda d: (d.dealer_id, d.environment, d.seq)):
                self._announce(conn, sealers[device.dealer_id], device, now)
        return len(marked)

    def _announce(
        self, conn: Connection, sealer: TenantSealer | None, device: _Overdue, now: datetime
    ) -> None:
        data: dict[str, Any] = {
            "device_id": device.id,
            "site_id": device.site_id,
            "kind": device.kind,
            "last_seen_at": _iso(device.last_seen_at),
            "heartbeat_seconds": device.heartbeat_seconds,
        }
        if sealer is not None:  # None: a deleted dealer, no one to announce it to
            emit(
                conn,
                Tenant(device.dealer_id, Environment(device.environment)),
                EventType.DEVICE_OFFLINE,
                subject_type="device",
                subject_id=device.id,
                data=data,
                when=now,
                sealer=sealer,
            )
        self._audit.write_in(
            conn,
            SWEEPER.record(
                now,
                AuditAction.DEVICE_WENT_OFFLINE,
                target_type="device",
                target_id=device.id,
                dealer_id=device.dealer_id,
                environment=device.environment,
                details={
                    "last_seen_at": data["last_seen_at"],
                    "heartbeat_seconds": device.heartbeat_seconds,
                },
            ),
        )
