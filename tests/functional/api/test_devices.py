"""Devices over the real server: registration, bridge channels, serial uniqueness, updates with
If-Match, firmware events, listing filters and pagination, audit records, tenancy."""

from __future__ import annotations

from typing import Any

import httpx
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.scopes import Scope
from vigil.events.outbox import events_for
from vigil.services import Services


def _site(client: httpx.Client) -> str:
    site_id: str = client.post("/v1/sites", json={"name": "Depot"}).json()["id"]
    return site_id


def _device(client: httpx.Client, site_id: str, kind: str, serial: str, **extra: Any) -> Any:
    body = {"site_id": site_id, "kind": kind, "serial": serial, "name": f"{kind} {serial}"}
    return client.post("/v1/devices", json=body | extra)


def test_registered_device_starts_offline_and_reads_back(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        site_id = _site(client)
        created = _device(client, site_id, "panel", "PNL-1", firmware_version="1.0")
        read = client.get(f"/v1/devices/{created.json()['id']}")
    assert created.status_code == 201, created.text
    assert read.json() == created.json()
    assert read.headers["etag"] == '"v1"'
    device = read.json()
    assert device["status"] == "offline"
    assert device["last_seen_at"] is None
    assert device["heartbeat_seconds"] == 300
    assert (device["site_id"], device["kind"], device["firmware_version"]) == (
        site_id,
        "panel",
        "1.0",
    )


def test_cameras_take_bridge_channels_up_to_sixteen(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        site_id = _site(client)
        bridge = _device(client, site_id, "bridge", "BR-1").json()["id"]
        explicit = _device(client, site_id, "camera", "CAM-5", parent_id=bridge, channel=5)
        taken = _device(client, site_id, "camera", "CAM-5b", parent_id=bridge, channel=5)
        auto = [
            _device(client, site_id, "camera", f"CAM-A{i}", parent_id=bridge).json()["channel"]
            for i in range(15)
        ]
        seventeenth = _device(client, site_id, "camera", "CAM-17", parent_id=bridge)
        listed = client.get("/v1/devices", params={"parent_id": bridge, "limit": 200}).json()
    assert explicit.json()["channel"] == 5
    assert taken.status_code == 409
    assert auto == [c for c in range(1, 17) if c != 5]
    assert seventeenth.status_code == 409
    assert "16 channels" in seventeenth.json()["detail"]
    assert len(listed["data"]) == 16


def test_only_cameras_hang_off_a_bridge_of_their_own_site(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        site_id, other_site = _site(client), _site(client)
        bridge = _device(client, site_id, "bridge", "BR-2").json()["id"]
        panel = _device(client, site_id, "panel", "PNL-2").json()["id"]
        sensor_on_bridge = _device(client, site_id, "sensor", "S-1", parent_id=bridge)
        camera_on_panel = _device(client, site_id, "camera", "C-1", parent_id=panel)
        other_site_camera = _device(client, other_site, "camera", "C-2", parent_id=bridge)
        channel_without_parent = _device(client, site_id, "camera", "C-3", channel=2)
        channel_out_of_range = _device(
            client, site_id, "camera", "C-4", parent_id=bridge, channel=17
        )
        missing_bridge = _device(client, site_id, "camera", "C-5", parent_id="dev_nope")
    assert sensor_on_bridge.status_code == 422
    assert camera_on_panel.status_code == 422
    assert "not a bridge" in camera_on_panel.json()["detail"]
    assert other_site_camera.status_code == 422
    assert channel_without_parent.status_code == 422
    assert channel_out_of_range.status_code == 422
    assert missing_bridge.status_code == 404


def test_bad_device_input_is_a_problem_not_a_crash(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        site_id = _site(client)
        responses = [
            _device(client, site_id, "toaster", "T-1"),
            _device(client, site_id, "panel", "T-2", colour="red"),
            _device(client, site_id, "panel", "T-3", heartbeat_seconds=5),
            _device(client, site_id, "panel", "T-4", heartbeat_seconds=86_401),
            _device(client, site_id, "panel", "has spaces"),
            _device(client, site_id, "panel", "T-5", name=""),
            client.post("/v1/devices", json={"site_id": site_id, "kind": "panel"}),
        ]
        device = _device(client, site_id, "panel", "T-6").json()["id"]
        responses += [
            client.patch(f"/v1/devices/{device}", json={"name": None}),
            client.patch(f"/v1/devices/{device}", json={"status": "online"}),
            client.patch(f"/v1/devices/{device}", json={"site_id": site_id}),
            client.patch(f"/v1/devices/{device}", json={"channel": 3}),
        ]
    for response in responses:
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["request_id"] == response.headers["x-request-id"]


def test_serial_is_unique_per_dealer_environment(server: VigilServer, services: Services) -> None:
    a, b = factories.credential(services), factories.credential(services)
    with server.client(a.token) as client:
        site_a = _site(client)
        first = _device(client, site_a, "sensor", "SER-1")
        again = _device(client, site_a, "sensor", "SER-1")
        other = _device(client, site_a, "sensor", "SER-2").json()["id"]
        renamed_onto = client.patch(f"/v1/devices/{other}", json={"serial": "SER-1"})
    with server.client(b.token) as client:
        elsewhere = _device(client, _site(client), "sensor", "SER-1")
    assert first.status_code == 201
    assert again.status_code == 409
    assert renamed_onto.status_code == 409
    assert elsewhere.status_code == 201


def test_another_tenants_site_and_devices_are_not_found(
    server: VigilServer, services: Services
) -> None:
    a, b = factories.credential(services), factories.credential(services)
    with server.client(b.token) as client:
        site_b = _site(client)
        bridge_b = _device(client, site_b, "bridge", "BR-B").json()["id"]
    with server.client(a.token) as client:
        site_a = _site(client)
        on_foreign_site = _device(client, site_b, "panel", "X-1")
        on_foreign_bridge = _device(client, site_a, "camera", "X-2", parent_id=bridge_b)
        read = client.get(f"/v1/devices/{bridge_b}")
        patched = client.patch(f"/v1/devices/{bridge_b}", json={"name": "mine"})
        listed = client.get("/v1/devices", params={"site_id": site_b}).json()["data"]
    assert on_foreign_site.status_code == 404
    assert on_foreign_bridge.status_code == 404
    assert read.status_code == 404
    assert patched.status_code == 404
    assert listed == []
    assert services.devices.get(factories.actor_of(services, b), bridge_b).name == "bridge BR-B"


def test_firmware_change_is_announced_once(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        site_id = _site(client)
        device = _device(client, site_id, "camera", "FW-1", firmware_version="1.0").json()
        url = f"/v1/devices/{device['id']}"
        upgraded = client.patch(url, json={"firmware_version": "1.1"}, headers={"If-Match": '"v1"'})
        stale = client.patch(url, json={"firmware_version": "9.9"}, headers={"If-Match": '"v1"'})
        same = client.patch(url, json={"firmware_version": "1.1", "name": "Gate"})
        final = client.get(url).json()
    assert upgraded.status_code == 200
    assert upgraded.headers["etag"] == '"v2"'
    assert stale.status_code == 412
    assert same.status_code == 200
    assert (final["firmware_version"], final["name"], final["version"]) == ("1.1", "Gate", 3)
    with services.db.read() as conn:
        events = events_for(
            conn, factories.tenant_of(cred), device["id"], services.encryption.records
        )
    assert [e["type"] for e in events] == ["device.firmware_updated"]
    data = events[0]["payload"]["data"]
    assert (data["firmware_version"], data["previous"], data["site_id"]) == ("1.1", "1.0", site_id)


def test_a_camera_moves_to_another_channel_or_off_its_bridge(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        site_id = _site(client)
        bridge = _device(client, site_id, "bridge", "BR-M").json()["id"]
        cam = _device(client, site_id, "camera", "CAM-M", parent_id=bridge).json()["id"]
        _device(client, site_id, "camera", "CAM-N", parent_id=bridge, channel=2)
        onto_taken = client.patch(f"/v1/devices/{cam}", json={"channel": 2})
        moved = client.patch(f"/v1/devices/{cam}", json={"channel": 9}).json()
        detached = client.patch(f"/v1/devices/{cam}", json={"parent_id": None}).json()
    assert onto_taken.status_code == 409
    assert (moved["parent_id"], moved["channel"]) == (bridge, 9)
    assert (detached["parent_id"], detached["channel"]) == (None, None)


def test_listing_filters_and_pages_through_every_device_once(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(
        services, scopes=[Scope.SITES_WRITE, Scope.DEVICES_READ, Scope.DEVICES_WRITE]
    )
    with server.client(cred.token) as client:
        site_id, other_site = _site(client), _site(client)
        sensors = {_device(client, site_id, "sensor", f"LS-{i}").json()["id"] for i in range(4)}
        panel = _device(client, other_site, "panel", "LP-1").json()["id"]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/devices", params=params).json()
            seen += [d["id"] for d in page["data"]]
            if (cursor := page["next_cursor"]) is None:
                break
        by_site = client.get("/v1/devices", params={"site_id": other_site}).json()["data"]
        by_kind = client.get("/v1/devices", params={"kind": "sensor"}).json()["data"]
        offline = client.get("/v1/devices", params={"status": "offline"}).json()["data"]
        online = client.get("/v1/devices", params={"status": "online"}).json()["data"]
        bad_kind = client.get("/v1/devices", params={"kind": "toaster"})
    assert sorted(seen) == sorted(sensors | {panel})
    assert [d["id"] for d in by_site] == [panel]
    assert {d["id"] for d in by_kind} == sensors
    assert len(offline) == 5
    assert online == []
    assert bad_kind.status_code == 422


def test_device_changes_are_audited_with_the_app_identity(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with server.client(cred.token) as client:
        created = _device(client, _site(client), "sensor", "AUD-1")
        device_id = created.json()["id"]
        patched = client.patch(f"/v1/devices/{device_id}", json={"name": "Door"})
        records = [
            client.get("/v1/audit-events", params={"request_id": r.headers["x-request-id"]}).json()
            for r in (created, patched)
        ]
    create_actions = {r["action"]: r for r in records[0]["data"]}
    update_actions = {r["action"]: r for r in records[1]["data"]}
    assert set(create_actions) == {"api.request", "device.created"}
    assert set(update_actions) == {"api.request", "device.updated"}
    assert create_actions["device.created"]["target_id"] == device_id
    assert create_actions["device.created"]["actor_id"] == cred.app.id
    assert create_actions["device.created"]["scope"] == "devices:write"
    assert update_actions["device.updated"]["details"]["fields"] == ["name"]
