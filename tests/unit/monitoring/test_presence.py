"""Offline detection with an injected clock, on in-process services over a fresh database: a
device past its heartbeat window goes offline exactly once and announces it once; a heartbeat
brings it back; concurrent sweepers and a heartbeat racing the sweep never double-announce."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from tests.conftest import DatabaseFactory
from tests.support import factories

from vigil.auth.actor import Actor
from vigil.config import Settings
from vigil.core.clock import FrozenClock
from vigil.events.outbox import events_for
from vigil.monitoring.presence import PresenceService
from vigil.monitoring.telemetry import Reading
from vigil.server import sweep_presence
from vigil.services import Services
from vigil.storage.tables import audit_events


@dataclass
class World:
    services: Services
    clock: FrozenClock
    cred: factories.Credential
    actor: Actor

    def device(self, heartbeat_seconds: int = 60) -> str:
        site = self.services.sites.create(self.actor, {"name": "Depot"})
        fields = {"site_id": site.id, "kind": "camera", "serial": f"P-{site.id}", "name": "cam"}
        created = self.services.devices.create(
            self.actor, fields | {"heartbeat_seconds": heartbeat_seconds}
        )
        return created.id

    def heartbeat(self, device_id: str, at: datetime | None = None) -> None:
        reading = Reading(metric="heartbeat", value=1, timestamp=at or self.clock.now())
        self.services.telemetry.ingest(self.actor, device_id, [reading])

    def status(self, device_id: str) -> str:
        return self.services.devices.get(self.actor, device_id).status.value

    def events(self, device_id: str) -> list[str]:
        with self.services.db.read() as conn:
            tenant = factories.tenant_of(self.cred)
            return [e["type"] for e in events_for(conn, tenant, device_id)]

    def audited(self, device_id: str) -> list[Any]:
        c = audit_events.c
        with self.services.db.read() as conn:
            query = select(c.action, c.actor_type, c.actor_id, c.dealer_id).where(
                c.target_id == device_id
            )
            return list(conn.execute(query.order_by(c.seq)))


@pytest.fixture(scope="module")
def shared(
    new_database: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    home: Path = tmp_path_factory.mktemp("presence")
    url = new_database(home)
    settings = Settings(home=home, database_url=url, database_owner_url=new_database.owner_url(url))
    clock = FrozenClock(datetime.now(UTC) - timedelta(days=30))
    services = Services.build(settings, clock)
    cred = factories.credential(services)
    try:
        yield World(services, clock, cred, factories.actor_of(services, cred))
    finally:
        services.close()


@pytest.fixture
def world(shared: World) -> World:
    """The shared world with no device left online by an earlier test."""
    shared.services.presence.mark_overdue(shared.clock.now() + timedelta(days=2))
    shared.clock.advance(timedelta(days=2, seconds=1))
    return shared


def test_a_silent_device_goes_offline_once_past_its_window(world: World) -> None:
    device = world.device(heartbeat_seconds=60)
    world.heartbeat(device)
    assert world.status(device) == "online"
    world.clock.advance(timedelta(seconds=60))
    assert world.services.presence.mark_overdue() == 0  # the window's last instant still counts
    world.clock.advance(timedelta(milliseconds=1))
    assert world.services.presence.mark_overdue() == 1
    assert world.services.presence.mark_overdue() == 0
    world.clock.advance(timedelta(hours=1))
    assert world.services.presence.mark_overdue() == 0
    assert world.status(device) == "offline"
    assert world.events(device) == ["device.online", "device.offline"]
    offline = [r for r in world.audited(device) if r.action == "device.went_offline"]
    assert len(offline) == 1
    assert (offline[0].actor_type, offline[0].actor_id) == ("system", "presence-sweep")
    assert offline[0].dealer_id == world.cred.dealer.id


def test_a_heartbeat_brings_an_offline_device_back_once(world: World) -> None:
    device = world.device()
    world.heartbeat(device)
    world.clock.advance(timedelta(minutes=5))
    world.services.presence.mark_overdue()
    world.heartbeat(device)
    world.heartbeat(device)
    assert world.status(device) == "online"
    assert world.events(device) == ["device.online", "device.offline", "device.online"]
    actions = [r.action for r in world.audited(device)]
    assert actions.count("device.came_online") == 2
    assert actions.count("device.went_offline") == 1


def test_each_device_keeps_its_own_window(world: World) -> None:
    short, long = world.device(heartbeat_seconds=30), world.device(heartbeat_seconds=3600)
    never_seen = world.device(heartbeat_seconds=30)
    world.heartbeat(short)
    world.heartbeat(long)
    world.clock.advance(timedelta(minutes=10))
    assert world.services.presence.mark_overdue() == 1
    assert (world.status(short), world.status(long)) == ("offline", "online")
    assert world.events(never_seen) == []


def test_concurrent_sweepers_announce_each_device_once(world: World) -> None:
    devices = [world.device(heartbeat_seconds=30) for _ in range(5)]
    for device in devices:
        world.heartbeat(device)
    world.clock.advance(timedelta(minutes=1))
    sweepers = [
        PresenceService(
            world.services.db,
            world.services.audit,
            world.clock,
            world.services.encryption.records,
        )
    ] * 4
    marked: list[int] = []
    start = threading.Barrier(len(sweepers))

    def sweep(service: PresenceService) -> None:
        start.wait()
        marked.append(service.mark_overdue())

    threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(marked) == len(devices)
    for device in devices:
        assert world.events(device) == ["device.online", "device.offline"]


def test_a_heartbeat_between_the_sweeps_read_and_write_keeps_the_device_online(
    world: World,
) -> None:
    device = world.device(heartbeat_seconds=30)
    world.heartbeat(device)
    world.clock.advance(timedelta(minutes=1))
    presence = world.services.presence
    judged = [d for d in presence._candidates(world.clock.now(), 0) if d.id == device]
    world.heartbeat(device)  # arrives after the sweep judged the device overdue
    assert presence._take_offline(judged, world.clock.now()) == 0
    assert world.status(device) == "online"
    assert world.events(device) == ["device.online"]


def test_the_server_sweeps_periodically(world: World) -> None:
    device = world.device(heartbeat_seconds=30)
    world.heartbeat(device)
    world.clock.advance(timedelta(minutes=1))

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sweep_presence(world.services, 0.01, stop))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if world.status(device) == "offline":
                break
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(run())
    assert world.events(device) == ["device.online", "device.offline"]
