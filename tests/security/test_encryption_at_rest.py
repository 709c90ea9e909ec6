"""S6-S8 at the integration level: tenant data is never at rest in the clear, and a ciphertext
moved to another record or tenant is refused with a clear error (not a 500)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Table, inspect, select, text, update
from tests.conftest import DATABASE, DatabaseFactory
from tests.support.encrypted_world import ALL_INTACT, Tenant, populate, read_back
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.storage.tables import alarm_timeline, alarms, telemetry

SEALED_TABLES = (
    "telemetry",
    "alarms",
    "alarm_timeline",
    "snapshots",
    "data_keys",
    "outbox_events",
    "idempotency_keys",
)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, new_database: DatabaseFactory
) -> Iterator[tuple[VigilServer, Services, Tenant, Tenant]]:
    """A server of its own, so the scan covers exactly its files."""
    srv = new_database.server(tmp_path_factory.mktemp("at-rest"))
    srv.start()
    svc = srv.services()
    try:
        yield srv, svc, populate(srv, svc), populate(srv, svc)
    finally:
        svc.close()
        srv.stop()


def _hits(root: Path, needles: dict[str, bytes]) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{name} in {path.relative_to(root)}" for name, n in needles.items() if n in data]
    return found


def test_no_marker_reaches_the_disk_in_the_clear(
    world: tuple[VigilServer, Services, Tenant, Tenant],
) -> None:
    srv, svc, first, _second = world
    needles = first.markers.needles()
    # Everything under VIGIL_HOME: the SQLite file, its WAL and shm/journal, the object store,
    # keys, certificates and the server's own log.
    wal = srv.home / "vigil.db-wal"
    assert DATABASE != "sqlite" or wal.exists()
    assert _hits(srv.home, needles) == []
    if DATABASE == "postgres":
        # PostgreSQL has no SQLCipher: the sealed columns are what protects it (the cluster's
        # files are outside VIGIL_HOME; its storage encryption is the operator's, see
        # docs/security-model.md).
        assert _column_hits(svc, needles) == []


def _column_hits(svc: Services, needles: dict[str, bytes]) -> list[str]:
    """Every table, not only the ones holding sealed columns: a copy of tenant text elsewhere
    (an event payload, a stored response) is as much a leak."""
    found = []
    with svc.db.read() as conn:
        tables = inspect(conn).get_table_names()
        assert set(SEALED_TABLES) <= set(tables)
        for table in tables:
            for row in conn.execute(text(f"SELECT * FROM {table}")):
                for value in row:
                    raw = bytes(value) if isinstance(value, bytes | memoryview) else None
                    raw = raw if raw is not None else str(value).encode()
                    found += [f"{name} in {table}" for name, n in needles.items() if n in raw]
    return found


def test_the_sqlite_file_is_not_a_plain_sqlite_database(
    world: tuple[VigilServer, Services, Tenant, Tenant],
) -> None:
    srv, *_ = world
    if DATABASE != "sqlite":
        assert srv.database_url.startswith("postgresql")
        return
    header = (srv.home / "vigil.db").read_bytes()[:16]
    assert header != b"SQLite format 3\x00"
    assert (srv.home / "keys" / "database-key.json").stat().st_mode & 0o777 == 0o600


def test_markers_come_back_intact_through_the_api(
    world: tuple[VigilServer, Services, Tenant, Tenant],
) -> None:
    srv, _svc, first, second = world
    assert read_back(srv, first) == ALL_INTACT
    assert read_back(srv, second) == ALL_INTACT


def _copy_column(svc: Services, table: Table, column: str, source: str, target: str) -> bytes:
    c = table.c
    with svc.db.transaction() as conn:
        value = conn.execute(select(c[column]).where(c.id == source)).scalar_one()
        original = conn.execute(select(c[column]).where(c.id == target)).scalar_one()
        conn.execute(update(table).where(c.id == target).values({column: value}))
    return bytes(original)


def _restore(svc: Services, table: Table, column: str, target: str, original: bytes) -> None:
    with svc.db.transaction() as conn:
        conn.execute(update(table).where(table.c.id == target).values({column: original}))


def _problem(r: httpx.Response) -> tuple[int, str, str]:
    return r.status_code, r.headers["content-type"], r.json()["code"]


def test_a_description_copied_to_another_tenants_alarm_is_refused_not_served(
    world: tuple[VigilServer, Services, Tenant, Tenant],
) -> None:
    srv, svc, first, second = world
    original = _copy_column(svc, alarms, "description_sealed", first.alarm_id, second.alarm_id)
    try:
        with srv.client(second.cred.token) as client:
            moved = client.get(f"/v1/alarms/{second.alarm_id}")
    finally:
        _restore(svc, alarms, "description_sealed", second.alarm_id, original)
    # The header names a key of another dealer: refused before any decryption, and answered like
    # a destroyed key (the tenant has no such key), never with the other tenant's plaintext.
    assert _problem(moved) == (404, "application/problem+json", "key_unavailable")
    assert first.markers.description not in moved.text


def test_a_value_moved_within_a_tenant_to_another_record_or_field_is_refused(
    world: tuple[VigilServer, Services, Tenant, Tenant],
) -> None:
    srv, svc, first, _second = world
    with svc.db.read() as conn:
        rows = conn.execute(
            select(alarm_timeline.c.id, alarm_timeline.c.note_sealed)
            .where(alarm_timeline.c.alarm_id == first.alarm_id)
            .order_by(alarm_timeline.c.seq)
        ).all()
    noted = next(r for r in rows if r.note_sealed is not None)
    other = next(r for r in rows if r.id != noted.id)
    with svc.db.transaction() as conn:  # the note moved to another entry of the same alarm
        conn.execute(
            update(alarm_timeline)
            .where(alarm_timeline.c.id == other.id)
            .values(note_sealed=noted.note_sealed)
        )
    with svc.db.transaction() as conn:  # a note moved into the description field
        conn.execute(
            update(alarms)
            .where(alarms.c.id == first.alarm_id)
            .values(description_sealed=noted.note_sealed)
        )
    with srv.client(first.cred.token) as client:
        timeline = client.get(f"/v1/alarms/{first.alarm_id}/timeline")
        alarm = client.get(f"/v1/alarms/{first.alarm_id}")
    assert _problem(timeline)[0::2] == (409, "integrity_check_failed")
    assert _problem(alarm)[0::2] == (409, "integrity_check_failed")


def test_a_telemetry_value_moved_to_another_reading_is_refused(
    world: tuple[VigilServer, Services, Tenant, Tenant],
) -> None:
    srv, svc, _first, second = world
    with srv.client(second.cred.token) as client:
        more = {
            "metric": "temperature.c",
            "value": 1.5,
            "timestamp": second.recorded_at.isoformat(),
        }
        more["timestamp"] = more["timestamp"].replace(".123456", ".654321")
        assert (
            client.post(
                f"/v1/devices/{second.device_id}/telemetry", json={"readings": [more]}
            ).status_code
            == 201
        )
    with svc.db.transaction() as conn:
        sealed = conn.execute(
            select(telemetry.c.seq, telemetry.c.value_sealed)
            .where(telemetry.c.device_id == second.device_id)
            .order_by(telemetry.c.seq)
        ).all()
        conn.execute(
            update(telemetry)
            .where(telemetry.c.seq == sealed[1].seq)
            .values(value_sealed=sealed[0].value_sealed)
        )
    with srv.client(second.cred.token) as client:
        moved = client.get(f"/v1/devices/{second.device_id}/telemetry")
        buckets = client.get(
            f"/v1/devices/{second.device_id}/telemetry",
            params={"metric": "temperature.c", "bucket": 3600},
        )
    assert _problem(moved)[0::2] == (409, "integrity_check_failed")
    assert _problem(buckets)[0::2] == (409, "integrity_check_failed")


def test_a_snapshot_object_copied_over_another_tenants_is_refused(
    world: tuple[VigilServer, Services, Tenant, Tenant],
) -> None:
    srv, _svc, first, second = world
    objects = srv.home / "objects"
    source = next(objects.rglob(first.snapshot_id))
    target = next(objects.rglob(second.snapshot_id))
    backup = target.with_name("backup")
    shutil.copyfile(target, backup)
    try:
        target.unlink()
        shutil.copyfile(source, target)
        with srv.client(second.cred.token) as client:
            whole = client.get(f"/v1/snapshots/{second.snapshot_id}/content")
            ranged = client.get(
                f"/v1/snapshots/{second.snapshot_id}/content",
                headers={"Range": "bytes=70000-70010"},
            )
    finally:
        target.unlink()
        backup.rename(target)
    assert _problem(whole)[0::2] == (404, "key_unavailable")
    assert _problem(ranged)[0::2] == (404, "key_unavailable")
    assert first.markers.snapshot not in whole.content


def test_a_snapshot_object_swapped_with_another_of_the_same_tenant_fails_its_check(
    world: tuple[VigilServer, Services, Tenant, Tenant],
) -> None:
    srv, _svc, first, _second = world
    with srv.client(first.cred.token) as client:
        other_id = client.post(
            f"/v1/devices/{first.device_id}/snapshots",
            content=b"\xff\xd8\xff another picture" * 100,
            headers={"Content-Type": "image/jpeg"},
        ).json()["id"]
    objects = srv.home / "objects"
    target = next(objects.rglob(other_id))
    target.unlink()
    shutil.copyfile(next(objects.rglob(first.snapshot_id)), target)
    with srv.client(first.cred.token) as client:
        swapped = client.get(f"/v1/snapshots/{other_id}/content")
        original = client.get(f"/v1/snapshots/{first.snapshot_id}/content")
    assert _problem(swapped)[0::2] == (409, "integrity_check_failed")
    assert original.content == first.markers.content()
