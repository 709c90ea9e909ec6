"""The local object store: objects appear whole or not at all, stay private, and keys cannot
leave the store's directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.storage.objects.local import LocalObjectStore
from vigil.storage.objects.port import InvalidKey, ObjectExists, ObjectMissing, put


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_object_is_invisible_until_committed_then_whole(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, chunk_size=4)
    writer = store.writer("dlr_1/sandbox/snp_1")
    writer.write(b"hello ")
    with pytest.raises(ObjectMissing):
        store.size("dlr_1/sandbox/snp_1")
    writer.write(b"world")
    assert writer.commit() == 11
    assert b"".join(store.read("dlr_1/sandbox/snp_1")) == b"hello world"
    assert files(tmp_path) == ["dlr_1/sandbox/snp_1"]  # no temporary left
    assert (tmp_path / "dlr_1/sandbox/snp_1").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "dlr_1/sandbox").stat().st_mode & 0o777 == 0o700


def test_aborted_or_failed_writes_leave_nothing(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    writer = store.writer("a/b")
    writer.write(b"partial")
    writer.abort()
    writer.abort()  # idempotent

    def broken() -> Iterator[bytes]:
        yield b"x"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        put(store, "a/c", broken())
    assert files(tmp_path) == []


def test_objects_are_never_overwritten(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    put(store, "a/b", [b"first"])
    with pytest.raises(ObjectExists):
        put(store, "a/b", [b"second"])
    assert b"".join(store.read("a/b")) == b"first"
    assert files(tmp_path) == ["a/b"]


def test_ranges_read_exactly_the_bytes_asked_for(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path, chunk_size=3)
    data = bytes(range(50))
    put(store, "k", [data[:20], data[20:]])
    assert b"".join(store.read("k", 0, 1)) == data[:1]
    assert b"".join(store.read("k", 7, 31)) == data[7:31]
    assert b"".join(store.read("k", 45)) == data[45:]
    assert b"".join(store.read("k", 10, 10)) == b""
    assert max(len(c) for c in store.read("k")) == 3  # streamed in chunks, never whole
    assert store.size("k") == 50


@pytest.mark.parametrize(
    "key", ["../escape", "a/../../b", "/etc/passwd", "a//b", ".", "a/.hidden", "", "a\\b", "a/b/"]
)
def test_keys_that_could_leave_the_store_are_refused(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(InvalidKey):
        store.writer(key)
    with pytest.raises(InvalidKey):
        store.read(key)
    with pytest.raises(InvalidKey):
        store.delete(key)


def test_delete_removes_and_tolerates_absence(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    put(store, "a/b", [b"x"])
    store.delete("a/b")
    store.delete("a/b")
    with pytest.raises(ObjectMissing):
        store.read("a/b")


def test_sweep_removes_only_stale_temporaries(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    put(store, "a/kept", [b"x"])
    crashed = store.writer("a/crashed")
    crashed.write(b"half")
    assert store.sweep_partials(older_than_seconds=3600) == 0  # still fresh: maybe live
    assert store.sweep_partials(older_than_seconds=-1) == 1
    assert files(tmp_path) == ["a/kept"]
