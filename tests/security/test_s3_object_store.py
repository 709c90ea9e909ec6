"""The S3 object store against a real SeaweedFS (loopback): the port's contract, multipart for
large objects, ranged streaming reads, and only ciphertext in SeaweedFS's data directory."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import DatabaseFactory
from tests.support.encrypted_world import ALL_INTACT, Tenant, populate, read_back
from tests.support.seaweedfs import SeaweedFS
from tests.support.server import VigilServer

from vigil.services import Services
from vigil.storage.objects.port import ObjectExists, ObjectMissing, put
from vigil.storage.objects.s3 import MIN_PART_SIZE, S3ObjectStore


@pytest.fixture
def store(seaweedfs: SeaweedFS) -> S3ObjectStore:
    return S3ObjectStore(seaweedfs.client(), seaweedfs.bucket, part_size=MIN_PART_SIZE)


def _pattern(n: int) -> bytes:
    return hashlib.shake_256(b"vigil").digest(4096) * (n // 4096) + b"x" * (n % 4096)


def test_a_large_object_goes_up_in_parts_and_comes_back_in_ranges(store: S3ObjectStore) -> None:
    data = _pattern(2 * MIN_PART_SIZE + 12345)  # three parts
    writer = store.writer("dlr_a/sandbox/big")
    for i in range(0, len(data), 700_000):  # chunks unrelated to the part size
        writer.write(data[i : i + 700_000])
    assert writer.commit() == len(data)
    assert store.size("dlr_a/sandbox/big") == len(data)
    assert b"".join(store.read("dlr_a/sandbox/big")) == data
    start, end = MIN_PART_SIZE - 10, MIN_PART_SIZE + 10
    assert b"".join(store.read("dlr_a/sandbox/big", start, end)) == data[start:end]
    assert b"".join(store.read("dlr_a/sandbox/big", len(data) - 5)) == data[-5:]


def test_objects_are_never_overwritten_and_aborts_leave_nothing(store: S3ObjectStore) -> None:
    put(store, "dlr_a/sandbox/once", [b"first"])
    with pytest.raises(ObjectExists):
        put(store, "dlr_a/sandbox/once", [b"second"])
    aborted = store.writer("dlr_a/sandbox/gone")
    aborted.write(_pattern(MIN_PART_SIZE + 1))  # a multipart upload is under way
    aborted.abort()
    with pytest.raises(ObjectMissing):
        store.size("dlr_a/sandbox/gone")
    with pytest.raises(ObjectMissing):
        store.read("dlr_a/sandbox/missing")
    store.delete("dlr_a/sandbox/once")
    store.delete("dlr_a/sandbox/once")  # deleting twice is fine


@pytest.fixture(scope="module")
def s3_world(
    tmp_path_factory: pytest.TempPathFactory,
    new_database: DatabaseFactory,
    seaweedfs: SeaweedFS,
) -> Iterator[tuple[VigilServer, Services, Tenant]]:
    srv = new_database.server(tmp_path_factory.mktemp("s3"), **seaweedfs.settings())
    srv.start()
    svc = srv.services()
    try:
        yield srv, svc, populate(srv, svc)
    finally:
        svc.close()
        srv.stop()


def test_snapshots_in_seaweedfs_are_ciphertext_and_read_back_whole_and_ranged(
    s3_world: tuple[VigilServer, Services, Tenant], seaweedfs: SeaweedFS
) -> None:
    srv, _svc, tenant = s3_world
    assert read_back(srv, tenant) == ALL_INTACT
    assert not (srv.home / "objects").exists() or not any((srv.home / "objects").rglob("snp*"))
    stored = seaweedfs.client().list_objects_v2(Bucket=seaweedfs.bucket)["Contents"]
    assert any(o["Key"].endswith(tenant.snapshot_id) for o in stored)
    needles = tenant.markers.needles()
    hits = [
        f"{name} in {path.name}"
        for path in Path(seaweedfs.data_dir).rglob("*")
        if path.is_file()
        for name, needle in needles.items()
        if needle in path.read_bytes()
    ]
    assert hits == []
