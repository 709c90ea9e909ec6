"""S7-S8 operations end to end: enterprise KEKs, rotation and rewrap under live traffic, and
crypto-shredding with `vigil dealers delete`."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from tests.conftest import DATABASE, DatabaseFactory
from tests.support.encrypted_world import ALL_INTACT, Tenant, populate, read_back
from tests.support.factories import credential, dealer
from tests.support.server import VigilServer

from vigil.config import Settings
from vigil.crypto.binding import Binding
from vigil.crypto.errors import KeyUnavailable, KmsError
from vigil.crypto.keyring import wrap_context
from vigil.crypto.keystore import Purpose
from vigil.services import Services
from vigil.storage.tables import alarms, audit_events, data_keys
from vigil.tenancy.models import Plan


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, new_database: DatabaseFactory
) -> Iterator[tuple[VigilServer, Services]]:
    # The rotation test drives one credential as hard as it can: lift the rate limit, as the
    # shared server does, so a 429 cannot pass for a failure of rotation (limits have their
    # own tests).
    srv = new_database.server(
        tmp_path_factory.mktemp("keys"), rate_limit_per_second=10000, rate_limit_burst=10000
    )
    srv.start()
    svc = srv.services()
    try:
        yield srv, svc
    finally:
        svc.close()
        srv.stop()


def _cli(srv: VigilServer, *args: str) -> dict[str, object]:
    out = srv.run_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data, dict)
    return data


def test_an_enterprise_dealer_gets_its_own_kms_key(world: tuple[VigilServer, Services]) -> None:
    srv, svc = world
    owner = dealer(svc, Plan.ENTERPRISE)
    cred = credential(svc, owner=owner)
    tenant = populate(srv, svc)  # a standard dealer alongside
    before = _refs(svc, owner.id)
    provisioned = _cli(srv, "kms", "provision", "--dealer", owner.id)
    again = _cli(srv, "kms", "provision", "--dealer", owner.id)
    with srv.client(cred.token) as client:
        site = client.post("/v1/sites", json={"name": "HQ"}).json()["id"]
        made = client.post("/v1/alarms", json={
            "site_id": site, "type": "fire", "occurred_at": datetime.now(UTC).isoformat(),
            "description": "sealed under the dealer's own KEK",
        })  # fmt: skip
        read = client.get(f"/v1/alarms/{made.json()['id']}")
    standard = srv.run_cli("kms", "provision", "--dealer", tenant.dealer_id, check=False)
    assert provisioned["kms_key_ref"] == again["kms_key_ref"] == f"dealer-{owner.id}"
    assert before == set()
    assert _refs(svc, owner.id) == {f"dealer-{owner.id}"}
    assert read.json()["description"] == "sealed under the dealer's own KEK"
    assert standard.returncode != 0
    assert "Only enterprise dealers" in standard.stderr
    # A standard dealer has a KEK of its own too, platform-managed and made on first use.
    assert _refs(svc, tenant.dealer_id) == {f"standard-{tenant.dealer_id}"}
    # Deleting it destroys its KEK too: even the wraps in an older database backup are dead.
    backup = list(svc.encryption.store.list_keys(owner.id))
    deleted = _cli(srv, "dealers", "delete", owner.id, "--yes")
    assert f"dealer-{owner.id}" in deleted["kms_keys_destroyed"]  # type: ignore[operator]
    fresh = srv.services()
    try:
        for row in backup:
            with pytest.raises(KmsError):
                fresh.encryption.kms.decrypt_data_key(
                    row.kms_key_ref,
                    row.wrapped,
                    wrap_context(row.dealer_id, row.purpose, row.keyset_id, row.version),
                )
    finally:
        fresh.close()


def _refs(svc: Services, dealer_id: str) -> set[str]:
    with svc.db.read() as conn:
        query = select(data_keys.c.kms_key_ref).where(data_keys.c.dealer_id == dealer_id)
        return set(conn.execute(query).scalars())


def test_rotation_and_rewrap_under_load_fail_no_request(
    world: tuple[VigilServer, Services],
) -> None:
    srv, svc = world
    tenants = [populate(srv, svc), populate(srv, svc)]
    failures: list[str] = []
    done = threading.Event()
    counts = {"requests": 0}

    def traffic(tenant: Tenant) -> None:
        n = 0
        with srv.client(tenant.cred.token) as client:
            while not done.is_set() or n < 20:
                n += 1
                at = (datetime.now(UTC) - timedelta(seconds=n)).isoformat()
                reading = {"metric": "load.n", "value": float(n), "timestamp": at}
                responses = [
                    client.post(
                        f"/v1/devices/{tenant.device_id}/telemetry", json={"readings": [reading]}
                    ),
                    client.post(
                        f"/v1/alarms/{tenant.alarm_id}/annotate", json={"note": f"note {n}"}
                    ),
                    client.get(f"/v1/alarms/{tenant.alarm_id}"),
                    client.get(f"/v1/alarms/{tenant.alarm_id}/timeline", params={"limit": 5}),
                    client.get(f"/v1/snapshots/{tenant.snapshot_id}/content"),
                ]
                counts["requests"] += len(responses)
                failures.extend(
                    f"{r.request.method} {r.request.url.path}: {r.status_code}"
                    for r in responses
                    if r.status_code >= 300
                )

    workers = [threading.Thread(target=traffic, args=(t,)) for t in tenants]
    for w in workers:
        w.start()
    try:
        rotated = _cli(srv, "kms", "rotate")
        per_dealer = _cli(srv, "kms", "rotate", "--dealer", tenants[0].dealer_id)
        rewrapped = _cli(srv, "kms", "rewrap")
        again = _cli(srv, "kms", "rewrap", "--dealer", tenants[1].dealer_id)
    finally:
        done.set()
        for w in workers:
            w.join()
    assert failures == []
    assert counts["requests"] >= 200
    assert rotated["rotated"] is per_dealer["rotated"] is True
    assert int(rewrapped["rewrapped"]) >= 6  # records + objects for two dealers at least
    assert int(again["rewrapped"]) >= 2
    # A fresh process (no cached keys) reads everything, old generations included.
    fresh = srv.services()
    try:
        # Its only KMS call so far: the platform audit key, loaded at start-up so that audit
        # details can be sealed inside transactions (vigil.encryption.AuditDetailsSealer).
        assert fresh.encryption.keyring.kms_calls == 1
    finally:
        fresh.close()
    srv.stop()
    srv.start()
    for tenant in tenants:
        assert read_back(srv, tenant) == ALL_INTACT
    versions = {
        row.version
        for row in svc.encryption.store.list_keys(tenants[0].dealer_id)
        if row.purpose is Purpose.RECORDS
    }
    assert len(versions) >= 2  # the per-dealer rotation started a new generation


def test_deleting_a_dealer_shreds_its_data_and_nobody_elses(
    world: tuple[VigilServer, Services], tmp_path: Path
) -> None:
    srv, svc = world
    doomed, kept = populate(srv, svc), populate(srv, svc)
    refused = srv.run_cli("dealers", "delete", doomed.dealer_id, check=False)  # no confirmation
    assert refused.returncode != 0
    assert read_back(srv, doomed) == ALL_INTACT
    deleted = _cli(srv, "dealers", "delete", doomed.dealer_id, "--yes")
    assert int(deleted["data_keys_destroyed"]) >= 2
    assert deleted["api_keys_revoked"] == 1

    copy = _full_copy(srv, svc, tmp_path / "copy")
    try:
        with copy.db.read() as conn:
            sealed = conn.execute(
                select(alarms.c.description_sealed).where(alarms.c.id == doomed.alarm_id)
            ).scalar_one()
        binding = Binding(doomed.dealer_id, "sandbox", "alarm", doomed.alarm_id, "description")
        with pytest.raises(KeyUnavailable):
            copy.encryption.records.open(binding, sealed)
        key = f"{doomed.dealer_id}/sandbox/{doomed.snapshot_id}"
        with pytest.raises(KeyUnavailable):
            list(copy.snapshots._store.read(key))
        with pytest.raises(KeyUnavailable):  # and no fresh key springs up for it
            copy.encryption.records.seal(binding, b"new life")
    finally:
        copy.close()
    with srv.client(doomed.cred.token) as client:
        assert client.get(f"/v1/alarms/{doomed.alarm_id}").status_code == 401
    assert read_back(srv, kept) == ALL_INTACT
    verify = srv.run_cli("audit", "verify")
    assert verify.returncode == 0, verify.stderr + verify.stdout
    with svc.db.read() as conn:
        query = select(audit_events.c.target_id).where(audit_events.c.action == "dealer.deleted")
        assert doomed.dealer_id in list(conn.execute(query).scalars())


def _full_copy(srv: VigilServer, svc: Services, home: Path) -> Services:
    """Services over a copy of VIGIL_HOME (database, keys, objects): what a thief with a full
    backup has. On PostgreSQL the database itself is shared (a copy would hold the same rows)."""
    shutil.copytree(srv.home, home, ignore=shutil.ignore_patterns("*.sock"))
    url = srv.database_url
    if DATABASE == "sqlite":
        url = f"sqlite:///{home / 'vigil.db'}"
    return Services.build(
        Settings(
            home=home,
            database_url=url,
            database_owner_url=srv.env.get("VIGIL_DATABASE_OWNER_URL") or None,
        ),
        migrate=False,
    )


def test_a_backup_taken_before_the_delete_is_shredded_too(
    world: tuple[VigilServer, Services],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Standard dealers included (S8): the database and the object store are copied BEFORE
    `vigil dealers delete`; afterwards the copies, read with what is left of the KMS, no
    longer open the deleted dealer's rows or objects, while another dealer's still open."""
    srv, svc = world
    doomed, kept = populate(srv, svc), populate(srv, svc)  # standard dealers, both
    assert _refs(svc, doomed.dealer_id) == {f"standard-{doomed.dealer_id}"}
    backup = tmp_path / "backup"
    url = _back_up(srv, backup, request)  # the database and the objects, as they are now

    deleted = _cli(srv, "dealers", "delete", doomed.dealer_id, "--yes")
    assert deleted["kms_keys_destroyed"] == [f"standard-{doomed.dealer_id}"]
    # What is left of the KMS: the key directory after the delete (the master key file and
    # the database key, which wraps the SQLCipher copy too).
    shutil.copytree(srv.home / "keys", backup / "keys")
    restored = Services.build(Settings(home=backup, database_url=url), migrate=False)
    try:
        assert restored.encryption.store.get(*_first_key(restored, doomed.dealer_id)) is not None
        assert _opens(restored, kept) == (kept.markers.description, kept.markers.content())
        with pytest.raises(KmsError):  # the wrapped keys are in the copy; their KEK is gone
            _opens(restored, doomed)
        with pytest.raises(KmsError):
            list(restored.snapshots._store.read(_object_key(doomed)))
    finally:
        restored.close()
    assert read_back(srv, kept) == ALL_INTACT
    verify = srv.run_cli("audit", "verify")
    assert verify.returncode == 0, verify.stderr + verify.stdout


def _back_up(srv: VigilServer, to: Path, request: pytest.FixtureRequest) -> str:
    """A backup as an operator takes one: the database (SQLite: the file and its WAL;
    PostgreSQL: pg_dump restored into a new database) and the object store. Returns the
    database URL of the copy."""
    to.mkdir()
    shutil.copytree(srv.home / "objects", to / "objects")
    if DATABASE == "sqlite":
        for name in ("vigil.db", "vigil.db-wal"):
            if (srv.home / name).exists():
                shutil.copyfile(srv.home / name, to / name)
        return f"sqlite:///{to / 'vigil.db'}"
    import subprocess

    from tests.support.postgres import find_pg_bindir

    owner = srv.env["VIGIL_DATABASE_OWNER_URL"]
    cluster = request.getfixturevalue("postgres")
    copy = str(cluster.create_database(f"vigil_backup_{os.getpid()}_{secrets.token_hex(4)}"))
    libpq = [u.replace("postgresql+psycopg://", "postgresql://", 1) for u in (owner, copy)]
    dump = to / "vigil.dump"
    bindir = find_pg_bindir()
    subprocess.run(
        [str(bindir / "pg_dump"), "--format=custom", "--no-owner", "-f", str(dump), libpq[0]],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [str(bindir / "pg_restore"), "--no-owner", "-d", libpq[1], str(dump)],
        check=True,
        capture_output=True,
    )
    return copy


def _first_key(svc: Services, dealer_id: str) -> tuple[bytes, int]:
    row = next(iter(svc.encryption.store.list_keys(dealer_id)))
    return row.keyset_id, row.version


def _object_key(tenant: Tenant) -> str:
    return f"{tenant.dealer_id}/sandbox/{tenant.snapshot_id}"


def _opens(svc: Services, tenant: Tenant) -> tuple[str, bytes]:
    """The tenant's alarm description and snapshot content, read from `svc`'s storage."""
    with svc.db.read() as conn:
        sealed = conn.execute(
            select(alarms.c.description_sealed).where(alarms.c.id == tenant.alarm_id)
        ).scalar_one()
    binding = Binding(tenant.dealer_id, "sandbox", "alarm", tenant.alarm_id, "description")
    description = svc.encryption.records.open(binding, sealed).decode()
    content = b"".join(svc.snapshots._store.read(_object_key(tenant)))
    return description, content
