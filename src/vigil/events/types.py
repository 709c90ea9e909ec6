"""The event type catalogue (`subject.verb`), and the scope an app needs to receive each.

An endpoint only ever receives events its app could have read through the API (issue 7), so
each type names its read scope here, next to its definition.
"""

from __future__ import annotations

from enum import StrEnum

from vigil.auth.scopes import Scope


class EventType(StrEnum):
    ALARM_CREATED = "alarm.created"
    ALARM_ACKNOWLEDGED = "alarm.acknowledged"
    ALARM_DISPATCHED = "alarm.dispatched"
    ALARM_RESOLVED = "alarm.resolved"
    VERIFICATION_REQUESTED = "verification.requested"
    DEVICE_ONLINE = "device.online"
    DEVICE_OFFLINE = "device.offline"
    DEVICE_FIRMWARE_UPDATED = "device.firmware_updated"
    SNAPSHOT_CREATED = "snapshot.created"
    SITE_ARMED = "site.armed"
    SITE_DISARMED = "site.disarmed"
    WEBHOOK_TEST = "webhook.test"
    WEBHOOK_MESSAGE_EXHAUSTED = "webhook.message_exhausted"
    WEBHOOK_ENDPOINT_DISABLED = "webhook.endpoint_disabled"


READ_SCOPE: dict[EventType, Scope] = {
    EventType.ALARM_CREATED: Scope.ALARMS_READ,
    EventType.ALARM_ACKNOWLEDGED: Scope.ALARMS_READ,
    EventType.ALARM_DISPATCHED: Scope.ALARMS_READ,
    EventType.ALARM_RESOLVED: Scope.ALARMS_READ,
    EventType.VERIFICATION_REQUESTED: Scope.ALARMS_READ,
    EventType.DEVICE_ONLINE: Scope.DEVICES_READ,
    EventType.DEVICE_OFFLINE: Scope.DEVICES_READ,
    EventType.DEVICE_FIRMWARE_UPDATED: Scope.DEVICES_READ,
    EventType.SNAPSHOT_CREATED: Scope.SNAPSHOTS_READ,
    EventType.SITE_ARMED: Scope.SITES_READ,
    EventType.SITE_DISARMED: Scope.SITES_READ,
    EventType.WEBHOOK_TEST: Scope.WEBHOOKS_READ,
    EventType.WEBHOOK_MESSAGE_EXHAUSTED: Scope.WEBHOOKS_READ,
    EventType.WEBHOOK_ENDPOINT_DISABLED: Scope.WEBHOOKS_READ,
}
