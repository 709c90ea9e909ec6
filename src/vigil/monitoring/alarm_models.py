"""What an alarm is, as values: its closed sets (type, resolution code), its bounds, and the
frozen shapes the alarm service takes and returns. No I/O; every front shares them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import RowMapping

from vigil.monitoring.alarm_states import AlarmStatus


class AlarmType(StrEnum):
    BURGLARY = "burglary"
    FIRE = "fire"
    PANIC = "panic"
    MEDICAL = "medical"
    TAMPER = "tamper"
    TROUBLE = "trouble"


class ResolutionCode(StrEnum):
    FALSE_ALARM = "false_alarm"
    CONFIRMED_INTRUSION = "confirmed_intrusion"
    CONFIRMED_FIRE = "confirmed_fire"
    CUSTOMER_CANCELLED = "customer_cancelled"
    TEST = "test"
    OTHER = "other"


# 1 is the most urgent. Life-safety signals come first, then intrusion, then the equipment
# itself: the usual central-station ordering. A caller may always set its own.
DEFAULT_PRIORITY: MappingProxyType[AlarmType, int] = MappingProxyType(
    {
        AlarmType.FIRE: 1,
        AlarmType.PANIC: 1,
        AlarmType.MEDICAL: 1,
        AlarmType.BURGLARY: 2,
        AlarmType.TAMPER: 3,
        AlarmType.TROUBLE: 4,
    }
)
PRIORITIES = range(1, 6)
MAX_SNAPSHOTS = 20
MAX_DESCRIPTION = 2000
MAX_NOTE = 2000
MAX_ZONE = 100
MAX_AGENCY = 200
MAX_ID = 40  # the id columns' width


@dataclass(frozen=True, slots=True)
class NewAlarm:
    site_id: str
    type: AlarmType
    occurred_at: datetime
    device_id: str | None = None
    zone: str | None = None
    priority: int | None = None
    description: str | None = None
    snapshot_ids: tuple[str, ...] = ()
    verification_requested: bool = False


@dataclass(frozen=True, slots=True)
class Alarm:
    id: str
    site_id: str
    device_id: str | None
    zone: str | None
    type: AlarmType
    priority: int
    status: AlarmStatus
    description: str | None
    snapshot_ids: list[str]
    verification_requested: bool
    resolution_code: ResolutionCode | None
    occurred_at: datetime
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, m: RowMapping) -> Alarm:
        code = m["resolution_code"]
        return cls(
            id=m["id"],
            site_id=m["site_id"],
            device_id=m["device_id"],
            zone=m["zone"],
            type=AlarmType(m["type"]),
            priority=m["priority"],
            status=AlarmStatus(m["status"]),
            description=m["description"],
            snapshot_ids=list(m["snapshot_ids"]),
            verification_requested=bool(m["verification_requested"]),
            resolution_code=ResolutionCode(code) if code is not None else None,
            occurred_at=m["occurred_at"],
            version=m["version"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )

    def event_data(self) -> dict[str, Any]:
        return {
            "alarm_id": self.id,
            "site_id": self.site_id,
            "device_id": self.device_id,
            "zone": self.zone,
            "type": self.type.value,
            "priority": self.priority,
            "status": self.status.value,
            "occurred_at": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "snapshot_ids": self.snapshot_ids,
        }


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    id: str
    alarm_id: str
    action: str
    actor_type: str
    actor_id: str
    note: str | None
    details: dict[str, Any]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class QueuedAlarm:
    """One row of an operator's queue: what is needed to choose the next alarm to work, read
    in the queue's one query (the site's name joined in; the sealed description left shut)."""

    id: str
    site_id: str
    site_name: str
    zone: str | None
    type: AlarmType
    priority: int
    status: AlarmStatus
    verification_requested: bool
    snapshot_count: int
    created_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    status: AlarmStatus | None = None
    site_id: str | None = None
    type: AlarmType | None = None
    priority: int | None = None
    since: datetime | None = None
    until: datetime | None = None
