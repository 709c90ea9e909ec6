"""Telemetry over the real server: batched ingest with its limits, heartbeats bringing a device
online exactly once, one audit record per batch, raw queries with pagination and downsampling."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from tests.support import factories
from tests.support.server import VigilServer

from vigil.events.outbox import events_for
from vigil.services import Services
from vigil.storage.tables import telemetry

# A fixed, epoch-aligned hour in the past: bucket boundaries are predictable.
HOUR = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _reading(metric: str, value: Any, at: datetime | str | int) -> dict[str, Any]:
    stamp = _iso(at) if isinstance(at, datetime) else at
    return {"metric": metric, "value": value, "timestamp": stamp}


def _device(client: httpx.Client, kind: str = "sensor", **extra: Any) -> str:
    site_id = client.post("/v1/sites", json={"name": "Depot"}).json()["id"]
    serial = f"TEL-{site_id}"
    body = {"site_id": site_id, "kind": kind, "serial": serial, "name": "probe"} | extra
    device_id: str = client.post("/v1/devices", json=body).json()["id"]
    return device_id


def _stored(services: Services, device_id: str) -> int:
    with services.db.read() as conn:
        query = select(func.count()).where(telemetry.c.device_id == device_id)
        return int(conn.execute(query).scalar_one())


def test_first_heartbeat_brings_the_device_online_once(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    now = datetime.now(UTC)
    with server.client(cred.token) as client:
        device_id = _device(client)
        url = f"/v1/devices/{device_id}/telemetry"
        first = client.post(url, json={"readings": [_reading("heartbeat", 1, now)]})
        second = client.post(url, json={"readings": [_reading("heartbeat", 1, now)]})
        device = client.get(f"/v1/devices/{device_id}").json()
        records = client.get(
            "/v1/audit-events", params={"request_id": first.headers["x-request-id"]}
        ).json()["data"]
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "online"
    assert device["status"] == "online"
    assert datetime.fromisoformat(device["last_seen_at"]) == now
    assert second.json()["status"] == "online"
    with services.db.read() as conn:
        events = events_for(conn, factories.tenant_of(cred), device_id, services.encryption.records)
    assert [e["type"] for e in events] == ["device.online"]
    assert events[0]["payload"]["data"]["device_id"] == device_id
    assert sorted(r["action"] for r in records) == [
        "api.request",
        "device.came_online",
        "telemetry.ingested",
    ]


def test_a_batch_is_audited_once_with_its_count(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    at = datetime.now(UTC) - timedelta(minutes=1)
    readings = [_reading("temperature.c", 20 + i, at + timedelta(seconds=i)) for i in range(3)]
    with server.client(cred.token) as client:
        device_id = _device(client)
        response = client.post(f"/v1/devices/{device_id}/telemetry", json={"readings": readings})
        records = client.get(
            "/v1/audit-events", params={"request_id": response.headers["x-request-id"]}
        ).json()["data"]
    assert response.json() == {
        "device_id": device_id,
        "ingested": 3,
        "status": "offline",
        "last_seen_at": None,
    }
    ingested = [r for r in records if r["action"] == "telemetry.ingested"]
    assert len(ingested) == 1
    assert ingested[0]["details"]["count"] == 3
    assert ingested[0]["target_id"] == device_id
    assert ingested[0]["scope"] == "telemetry:write"
    assert _stored(services, device_id) == 3


def test_a_batch_holds_one_to_a_thousand_readings(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    at = datetime.now(UTC) - timedelta(hours=1)
    batch = [_reading("load", i, at + timedelta(milliseconds=i)) for i in range(1001)]
    with server.client(cred.token) as client:
        device_id = _device(client)
        url = f"/v1/devices/{device_id}/telemetry"
        too_many = client.post(url, json={"readings": batch})
        empty = client.post(url, json={"readings": []})
        full = client.post(url, json={"readings": batch[:1000]})
    assert too_many.status_code == 422
    assert empty.status_code == 422
    assert full.status_code == 201
    assert full.json()["ingested"] == 1000
    assert _stored(services, device_id) == 1000


def test_bad_readings_reject_the_whole_batch(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    now = datetime.now(UTC)
    good = _reading("ok", 1, now)
    bad = [
        _reading("Temperature", 1, now),
        _reading("9lives", 1, now),
        _reading("x" * 65, 1, now),
        _reading("t", "warm", now),
        _reading("t", 10**400, now),
        _reading("t", 1, "2026-11-27T21:00:00"),
        _reading("t", 1, "yesterday"),
        _reading("t", 1, now + timedelta(hours=1)),
        _reading("t", 1, "1970-01-01T00:00:00Z"),
        _reading("t", 1, int(now.timestamp())),  # seconds since 1970: not RFC 3339 text
        _reading("t", 1, str(now.timestamp())),
        _reading("t", 1, "0001-01-01T00:00:00+01:00"),
        _reading("t", 1, now) | {"unit": "C"},
        {"metric": "t", "value": 1},
    ]
    with server.client(cred.token) as client:
        device_id = _device(client)
        url = f"/v1/devices/{device_id}/telemetry"
        responses = [client.post(url, json={"readings": [good, reading]}) for reading in bad]
        # JSON itself has no NaN or Infinity, but lenient parsers accept them (and read 1e400
        # as infinity): refuse them too.
        for token in ("NaN", "Infinity", "-Infinity", "1e400"):
            raw = json.dumps({"readings": [good, _reading("t", 0, now)]}).replace(
                '"value": 0', f'"value": {token}'
            )
            responses.append(
                client.post(url, content=raw, headers={"content-type": "application/json"})
            )
    for reading, response in zip([*bad, "NaN", "Inf", "-Inf", "1e400"], responses, strict=True):
        assert response.status_code == 422, (reading, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert _stored(services, device_id) == 0


def test_a_stale_heartbeat_is_recorded_but_does_not_bring_the_device_online(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    old = datetime.now(UTC) - timedelta(minutes=10)
    with server.client(cred.token) as client:
        device_id = _device(client, heartbeat_seconds=60)
        response = client.post(
            f"/v1/devices/{device_id}/telemetry", json={"readings": [_reading("heartbeat", 1, old)]}
        )
    assert response.json()["status"] == "offline"
    assert datetime.fromisoformat(response.json()["last_seen_at"]) == old
    with services.db.read() as conn:
        assert events_for(conn, factories.tenant_of(cred), device_id) == []


def test_a_fast_device_clock_cannot_buy_presence(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    ahead = datetime.now(UTC) + timedelta(minutes=10)
    with server.client(cred.token) as client:
        device_id = _device(client)
        response = client.post(
            f"/v1/devices/{device_id}/telemetry",
            json={"readings": [_reading("heartbeat", 1, ahead)]},
        )
    assert response.status_code == 201
    assert datetime.fromisoformat(response.json()["last_seen_at"]) < ahead - timedelta(minutes=9)


def test_raw_readings_page_newest_first_within_the_range(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    temps = [_reading("temperature.c", i, HOUR + timedelta(minutes=i)) for i in range(6)]
    humid = [_reading("humidity", 50, HOUR + timedelta(minutes=2))]
    with server.client(cred.token) as client:
        device_id = _device(client)
        url = f"/v1/devices/{device_id}/telemetry"
        client.post(url, json={"readings": temps[3:] + humid + temps[:3]})
        everything = client.get(url).json()
        seen: list[float] = []
        cursor = None
        params: dict[str, Any] = {
            "metric": "temperature.c",
            "since": _iso(HOUR + timedelta(minutes=1)),
            "until": _iso(HOUR + timedelta(minutes=5)),
            "limit": 2,
        }
        while True:
            page = client.get(url, params=params | ({"cursor": cursor} if cursor else {})).json()
            seen += [r["value"] for r in page["data"]]
            if (cursor := page["next_cursor"]) is None:
                break
        backwards = client.get(
            url, params={"since": _iso(HOUR + timedelta(hours=1)), "until": _iso(HOUR)}
        )
        naive = client.get(url, params={"since": "2026-11-27T10:00:00"})
        extremes = {"since": "0001-01-01T00:00:00+01:00", "until": "9999-12-31T23:59:59-01:00"}
        all_time = client.get(url, params=extremes)
        ancient = client.get(
            url, params={"metric": "humidity", "bucket": 3600, "until": extremes["since"]}
        )
        bad_cursor = client.get(url, params={"cursor": "bm9wZQ"})
    assert everything["bucket_seconds"] is None
    assert len(everything["data"]) == 7
    assert seen == [4, 3, 2, 1]
    assert backwards.status_code == 422
    assert naive.status_code == 422
    assert bad_cursor.status_code == 422
    assert len(all_time.json()["data"]) == 7
    assert ancient.json()["data"] == []


def test_downsampling_gives_min_max_avg_count_per_bucket(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    at = HOUR.__add__
    readings = [
        _reading("power.w", 1, at(timedelta(seconds=0))),
        _reading("power.w", 3, at(timedelta(seconds=20))),
        _reading("power.w", 2, at(timedelta(seconds=59, microseconds=999_999))),
        _reading("power.w", 10, at(timedelta(minutes=1))),
        _reading("power.w", -5, at(timedelta(minutes=3, seconds=30))),
        _reading("power.w", 7, at(timedelta(minutes=5))),  # outside [since, until)
        _reading("voltage", 230, at(timedelta(seconds=10))),  # another metric
    ]
    window = {"since": _iso(HOUR), "until": _iso(HOUR + timedelta(minutes=5))}
    with server.client(cred.token) as client:
        device_id = _device(client)
        url = f"/v1/devices/{device_id}/telemetry"
        client.post(url, json={"readings": readings})
        minutes = client.get(url, params={"metric": "power.w", "bucket": 60} | window).json()
        hourly = client.get(url, params={"metric": "power.w", "bucket": 3600} | window).json()
        no_metric = client.get(url, params={"bucket": 60} | window)
        too_fine = client.get(url, params={"metric": "power.w", "bucket": 59})
        too_many = client.get(
            url,
            params={"metric": "power.w", "bucket": 60, "since": _iso(HOUR - timedelta(days=2))},
        )
    assert minutes["bucket_seconds"] == 60
    assert [
        (datetime.fromisoformat(b["start"]), b["count"], b["min"], b["max"], b["avg"])
        for b in minutes["data"]
    ] == [
        (HOUR, 3, 1, 3, 2),
        (HOUR + timedelta(minutes=1), 1, 10, 10, 10),
        (HOUR + timedelta(minutes=3), 1, -5, -5, -5),
    ]
    assert [(b["count"], b["min"], b["max"]) for b in hourly["data"]] == [(5, -5, 10)]
    assert no_metric.status_code == 422
    assert too_fine.status_code == 422
    assert too_many.status_code == 422


def test_another_tenants_device_takes_no_readings_and_shows_none(
    server: VigilServer, services: Services
) -> None:
    a, b = factories.credential(services), factories.credential(services)
    now = datetime.now(UTC)
    with server.client(b.token) as client:
        device_b = _device(client)
        client.post(f"/v1/devices/{device_b}/telemetry", json={"readings": [_reading("t", 1, now)]})
    with server.client(a.token) as client:
        url = f"/v1/devices/{device_b}/telemetry"
        written = client.post(url, json={"readings": [_reading("heartbeat", 1, now)]})
        raw = client.get(url)
        bucketed = client.get(url, params={"metric": "t", "bucket": 60})
    assert (written.status_code, raw.status_code, bucketed.status_code) == (404, 404, 404)
    assert _stored(services, device_b) == 1
    assert services.devices.get(factories.actor_of(services, b), device_b).status == "offline"
