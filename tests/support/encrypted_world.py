"""A tenant with data on every encrypted path, made through the real API over TLS: what the
encryption-at-rest tests push markers through and read back."""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from tests.support.factories import Credential, credential
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.tenancy.models import Dealer

# Bigger than two STREAM segments (64 KiB), so ranges cross segment boundaries.
SNAPSHOT_SIZE = 200_000


@dataclass
class Markers:
    """Unique strings (and one unique float) that must never appear on disk in the clear."""

    tag: str = field(default_factory=lambda: secrets.token_hex(6))

    @property
    def description(self) -> str:
        return f"DESCMARK-{self.tag}"

    @property
    def note(self) -> str:
        return f"NOTEMARK-{self.tag}"

    @property
    def agency(self) -> str:
        return f"AGENCYMARK-{self.tag}"

    @property
    def snapshot(self) -> bytes:
        return f"SNAPMARK-{self.tag}".encode()

    @property
    def value(self) -> float:
        return 7000 + int(self.tag, 16) % 10**6 / 1e6 + 0.123456789

    def needles(self) -> dict[str, bytes]:
        v = self.value
        return {
            "description": self.description.encode(),
            "note": self.note.encode(),
            "agency": self.agency.encode(),
            "snapshot": self.snapshot,
            "value-le": struct.pack("<d", v),
            "value-be": struct.pack(">d", v),
            "value-text": repr(v).encode(),
        }

    def content(self) -> bytes:
        unit = self.snapshot + b"."
        return (unit * (SNAPSHOT_SIZE // len(unit) + 1))[:SNAPSHOT_SIZE]


@dataclass
class Tenant:
    cred: Credential
    markers: Markers
    site_id: str
    device_id: str
    alarm_id: str
    snapshot_id: str
    recorded_at: datetime

    @property
    def dealer_id(self) -> str:
        return self.cred.dealer.id


def populate(
    server: VigilServer,
    services: Services,
    markers: Markers | None = None,
    owner: Dealer | None = None,
) -> Tenant:
    """One dealer's data (a new standard dealer's unless `owner` is given) through every
    encrypted path, via the API."""
    markers = markers or Markers()
    cred = credential(services, owner=owner)
    at = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=123456)
    with server.client(cred.token) as client:
        site_id = _ok(client.post("/v1/sites", json={"name": "Depot"}))["id"]
        body = {"site_id": site_id, "kind": "camera", "serial": f"SN-{markers.tag}", "name": "cam"}
        device_id = _ok(client.post("/v1/devices", json=body))["id"]
        reading = {"metric": "temperature.c", "value": markers.value, "timestamp": at.isoformat()}
        _ok(client.post(f"/v1/devices/{device_id}/telemetry", json={"readings": [reading]}))
        alarm = {
            "site_id": site_id,
            "type": "burglary",
            "occurred_at": at.isoformat(),
            "description": markers.description,
        }
        alarm_id = _ok(client.post("/v1/alarms", json=alarm))["id"]
        _ok(client.post(f"/v1/alarms/{alarm_id}/acknowledge", json={"note": markers.note}))
        _ok(client.post(f"/v1/alarms/{alarm_id}/dispatch", json={"agency": markers.agency}))
        snapshot_id = _ok(
            client.post(
                f"/v1/devices/{device_id}/snapshots",
                content=markers.content(),
                headers={"Content-Type": "image/jpeg"},
            )
        )["id"]
    return Tenant(cred, markers, site_id, device_id, alarm_id, snapshot_id, at)


def read_back(server: VigilServer, tenant: Tenant) -> dict[str, object]:
    """Everything `populate` stored, as the API returns it now."""
    m = tenant.markers
    with server.client(tenant.cred.token) as client:
        alarm = client.get(f"/v1/alarms/{tenant.alarm_id}")
        timeline = client.get(f"/v1/alarms/{tenant.alarm_id}/timeline")
        readings = client.get(
            f"/v1/devices/{tenant.device_id}/telemetry", params={"metric": "temperature.c"}
        )
        content = client.get(f"/v1/snapshots/{tenant.snapshot_id}/content")
        ranged = client.get(
            f"/v1/snapshots/{tenant.snapshot_id}/content", headers={"Range": "bytes=65530-131080"}
        )
    statuses = {r.status_code for r in (alarm, timeline, readings, content)} | {ranged.status_code}
    if statuses != {200, 206}:
        return {"statuses": sorted(statuses)}
    notes = [e["note"] for e in timeline.json()["data"]]
    agencies = [e["details"].get("agency") for e in timeline.json()["data"]]
    return {
        "description": alarm.json()["description"] == m.description,
        "note": m.note in notes,
        "agency": m.agency in agencies,
        "value": [r["value"] for r in readings.json()["data"]] == [m.value],
        "snapshot": content.content == m.content(),
        "range": ranged.content == m.content()[65530:131081],
    }


ALL_INTACT = {
    "description": True,
    "note": True,
    "agency": True,
    "value": True,
    "snapshot": True,
    "range": True,
}


def _ok(response: httpx.Response) -> dict[str, object]:
    assert response.status_code in (200, 201), response.text
    data = response.json()
    assert isinstance(data, dict)
    return data
