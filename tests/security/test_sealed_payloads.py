"""S6 for what travels beside the records: outbox event payloads, the webhook messages copied
from them and the responses kept for `Idempotency-Key` replays carry an alarm's description and
notes, and are sealed like the records themselves.

A unique marker goes in through an alarm description and an annotation, both sent with an
Idempotency-Key, and is delivered by the server's own webhook worker. It must come back intact
through the API, the idempotent replay and the (signed) webhook delivery, and be absent from
what an attacker with the storage sees: on SQLite the whole VIGIL_HOME (database, WAL, objects,
logs); on PostgreSQL, which has no SQLCipher, every column of every table read raw as the owner,
and the cluster's files (the database's relation files and the WAL written during the test)
after a CHECKPOINT has flushed everything to them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect, select, text, update
from sqlalchemy.pool import NullPool
from standardwebhooks.webhooks import Webhook
from tests.conftest import DATABASE, DatabaseFactory
from tests.support import factories
from tests.support.hooks_world import hook_settings
from tests.support.receivers import Received, ReceiverSet
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.storage.tables import idempotency_keys

HOOKS = "/v1/webhooks/endpoints"


@dataclass
class World:
    server: VigilServer
    services: Services
    receivers: ReceiverSet
    owner_url: str | None
    token: str
    tag: str
    started: float
    description: str
    note: str
    secret: str
    alarm_id: str
    created: tuple[httpx.Response, httpx.Response]  # first answer, replay
    annotated: tuple[httpx.Response, httpx.Response]
    delivered: list[Received]

    def needles(self) -> dict[str, bytes]:
        return {"description": self.description.encode(), "note": self.note.encode()}


def _post(client: httpx.Client, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key})


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, new_database: DatabaseFactory
) -> Iterator[World]:
    home = tmp_path_factory.mktemp("sealed-payloads")
    receivers = ReceiverSet(tmp_path_factory.mktemp("sealed-payloads-receivers"))
    url = new_database(home)
    owner = new_database.owner_url(url)
    env = hook_settings(home, url, owner, receivers)
    env = {k: v for k, v in env.items() if k not in ("home", "database_url")}
    server = VigilServer(home, url, **env)
    started = time.time()
    server.start()
    services = server.services()
    tag = secrets.token_hex(6)
    description, note = f"PAYLOADDESC-{tag}", f"PAYLOADNOTE-{tag}"
    try:
        cred = factories.credential(services)
        receiver = receivers.valid
        with server.client(cred.token) as client:
            hook = client.post(HOOKS, json={"url": receiver.url("/sealed-payloads")})
            assert hook.status_code == 201, hook.text
            site = client.post("/v1/sites", json={"name": "Depot"}).json()
            alarm = {
                "site_id": site["id"],
                "type": "burglary",
                "occurred_at": "2026-11-27T22:14:05Z",
                "description": description,
            }
            created = tuple(_post(client, "/v1/alarms", alarm, f"create-{tag}") for _ in "12")
            alarm_id = created[0].json()["id"]
            path = f"/v1/alarms/{alarm_id}/annotate"
            annotated = tuple(_post(client, path, {"note": note}, f"note-{tag}") for _ in "12")
        delivered = receiver.wait_for(1)
        world = World(
            server,
            services,
            receivers,
            owner,
            cred.token,
            tag,
            started,
            description,
            note,
            hook.json()["secret"],
            alarm_id,
            created,  # type: ignore[arg-type]
            annotated,  # type: ignore[arg-type]
            delivered,
        )
        yield world
    finally:
        services.close()
        server.stop()
        receivers.close()


def test_the_marker_comes_back_through_the_api_the_replay_and_the_webhook(world: World) -> None:
    first, replay = world.created
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.headers["idempotent-replayed"] == "true"
    assert first.json()["description"] == replay.json()["description"] == world.description
    assert replay.json() == first.json()

    noted, noted_again = world.annotated
    assert (noted.status_code, noted_again.status_code) == (200, 200)
    assert noted_again.headers["idempotent-replayed"] == "true"
    assert noted_again.json() == noted.json()
    assert noted.json()["description"] == world.description

    [got] = [r for r in world.delivered if json.loads(r.body)["type"] == "alarm.created"]
    event = Webhook(world.secret).verify(got.body, got.headers)  # the signature holds
    assert event["data"]["description"] == world.description
    assert event["data"]["alarm_id"] == world.alarm_id


def test_the_marker_is_nowhere_in_the_clear_at_rest(world: World) -> None:
    needles = world.needles()
    # Everything under VIGIL_HOME: on SQLite the database file, its WAL and shm, the object
    # store, keys and the server's log (on PostgreSQL the same minus the database).
    assert _file_hits(world.server.home, needles) == []
    if DATABASE != "postgres":
        assert (world.server.home / "vigil.db-wal").exists()
        return
    assert world.owner_url is not None
    assert _column_hits(world.owner_url, needles) == []
    scanned = _cluster_hits(world, needles)
    assert scanned.hits == []
    assert scanned.relation_files > 0  # the scan did look at something
    assert scanned.wal_files > 0


def _file_hits(root: Path, needles: dict[str, bytes], since: float = 0.0) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.stat().st_mtime < since:
            continue
        data = path.read_bytes()
        found += [f"{name} in {path}" for name, needle in needles.items() if needle in data]
    return found


def _column_hits(owner_url: str, needles: dict[str, bytes]) -> list[str]:
    """Every value of every table, as the owner role reads it: bytea as raw bytes, JSON and
    text as their text."""
    engine = create_engine(owner_url, poolclass=NullPool)
    found = []
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            assert {"outbox_events", "webhook_messages", "idempotency_keys"} <= set(tables)
            for table in tables:
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    for value in row:
                        raw = bytes(value) if isinstance(value, bytes | memoryview) else None
                        raw = raw if raw is not None else str(value).encode()
                        found += [
                            f"{n} in {table}" for n, needle in needles.items() if needle in raw
                        ]
    finally:
        engine.dispose()
    return found


@dataclass
class Scan:
    hits: list[str]
    relation_files: int
    wal_files: int


def _cluster_hits(world: World, needles: dict[str, bytes]) -> Scan:
    """CHECKPOINT (every dirty page written to the relation files), then scan this database's
    relation files and the WAL segments written since the world started."""
    assert world.owner_url is not None
    engine = create_engine(world.owner_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
            oid = conn.execute(
                text("SELECT oid FROM pg_database WHERE datname = current_database()")
            ).scalar_one()
            data_dir = Path(conn.execute(text("SHOW data_directory")).scalar_one())
    finally:
        engine.dispose()
    relations = data_dir / "base" / str(oid)
    wal = data_dir / "pg_wal"
    hits = _file_hits(relations, needles) + _file_hits(wal, needles, since=world.started - 1)
    return Scan(
        hits,
        sum(1 for p in relations.iterdir() if p.is_file()),
        sum(1 for p in wal.iterdir() if p.is_file() and p.stat().st_mtime >= world.started - 1),
    )


def test_a_stored_response_moved_to_another_key_is_refused_not_replayed(world: World) -> None:
    c = idempotency_keys.c
    with world.services.db.read() as conn:
        rows = conn.execute(
            select(c.seq, c.key, c.response_sealed).where(c.key.like("%-" + world.tag))
        ).all()
    by_key = {r.key.split("-")[0]: r for r in rows}
    created, noted = by_key["create"], by_key["note"]
    with world.services.db.transaction() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(c.seq == noted.seq)
            .values(response_sealed=created.response_sealed)
        )
    try:
        with world.server.client(world.token) as client:
            path = f"/v1/alarms/{world.alarm_id}/annotate"
            moved = _post(client, path, {"note": world.note}, noted.key)
    finally:
        with world.services.db.transaction() as conn:
            conn.execute(
                update(idempotency_keys)
                .where(c.seq == noted.seq)
                .values(response_sealed=noted.response_sealed)
            )
    assert moved.status_code == 409
    assert moved.headers["content-type"] == "application/problem+json"
    assert moved.json()["code"] == "integrity_check_failed"
    assert world.description not in moved.text
