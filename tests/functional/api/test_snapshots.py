"""Snapshots over the real server: streamed upload and download, byte ranges, limits, digests,
tenant isolation, and a gibibyte each way in flat memory."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import func, select
from tests.conftest import DatabaseFactory
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.actor import Actor
from vigil.auth.principal import Environment
from vigil.core.errors import NotFound
from vigil.events.outbox import events_for
from vigil.services import Services
from vigil.storage.tables import snapshots

MiB = 1024 * 1024
JPEG = {"Content-Type": "image/jpeg"}


@dataclass
class Camera:
    cred: factories.Credential
    actor: Actor
    site_id: str
    device_id: str

    @property
    def url(self) -> str:
        return f"/v1/devices/{self.device_id}/snapshots"


def camera(services: Services, **credential: object) -> Camera:
    cred = factories.credential(services, **credential)  # type: ignore[arg-type]
    actor = factories.actor_of(services, cred)
    site_id = factories.site(services, actor)
    return Camera(cred, actor, site_id, factories.camera(services, actor, site_id))


def stored_files(home: Path, dealer_id: str) -> list[Path]:
    """Everything in the object store under a dealer, temporaries included."""
    root = home / "objects" / dealer_id
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def snapshot_rows(services: Services, dealer_id: str) -> int:
    with services.db.read() as conn:
        query = select(func.count()).where(snapshots.c.dealer_id == dealer_id)
        return int(conn.execute(query).scalar_one())


def repr_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def test_uploaded_snapshot_downloads_byte_for_byte(server: VigilServer, services: Services) -> None:
    cam = camera(services)
    data = os.urandom(3 * MiB + 12345)
    with server.client(cam.cred.token) as client:
        created = client.post(
            cam.url,
            content=data,
            headers=JPEG | {"Repr-Digest": repr_digest(data)},
            params={"captured_at": "2026-11-27T10:00:00Z"},
        )
        snap = created.json()
        meta = client.get(f"/v1/snapshots/{snap['id']}")
        content = client.get(f"/v1/snapshots/{snap['id']}/content")
        listed = client.get("/v1/snapshots", params={"device_id": cam.device_id}).json()["data"]
        rid = created.headers["x-request-id"]
        records = client.get("/v1/audit-events", params={"request_id": rid}).json()["data"]
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/snapshots/{snap['id']}"
    assert snap["device_id"] == cam.device_id
    assert snap["content_type"] == "image/jpeg"
    assert snap["size"] == len(data)
    assert snap["sha256"] == hashlib.sha256(data).hexdigest()
    assert snap["captured_at"].startswith("2026-11-27T10:00:00")
    assert meta.json() == snap
    assert content.status_code == 200
    assert hashlib.sha256(content.content).hexdigest() == snap["sha256"]
    assert content.headers["content-length"] == str(len(data))
    assert content.headers["content-type"] == "image/jpeg"
    assert content.headers["etag"] == f'"{snap["sha256"]}"'
    assert content.headers["accept-ranges"] == "bytes"
    assert [s["id"] for s in listed] == [snap["id"]]
    uploaded = next(r for r in records if r["action"] == "snapshot.uploaded")
    assert uploaded["target_id"] == snap["id"]
    assert uploaded["details"]["sha256"] == snap["sha256"]
    with services.db.read() as conn:
        events = events_for(
            conn, factories.tenant_of(cam.cred), snap["id"], services.encryption.records
        )
    assert [e["type"] for e in events] == ["snapshot.created"]
    assert events[0]["payload"]["data"]["size"] == len(data)
    (stored,) = stored_files(server.home, cam.cred.dealer.id)
    assert stored.stat().st_mode & 0o777 == 0o600


def test_range_requests_serve_exactly_the_bytes_asked_for(
    server: VigilServer, services: Services
) -> None:
    cam = camera(services)
    data = os.urandom(2 * MiB + 7)
    size = len(data)
    with server.client(cam.cred.token) as client:
        snap = client.post(cam.url, content=data, headers=JPEG).json()
        url = f"/v1/snapshots/{snap['id']}/content"
        etag = f'"{snap["sha256"]}"'

        def get(range_: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
            r = client.get(url, headers={"Range": range_} | headers)
            return r.status_code, dict(r.headers), r.content

        cases = {
            "bytes=0-99": (0, 99),  # the first bytes
            "bytes=1048570-1048590": (1048570, 1048590),  # across a chunk boundary
            "bytes=-500": (size - 500, size - 1),  # suffix
            f"bytes={size - 10}-": (size - 10, size - 1),  # open-ended
            f"bytes=100-{size * 2}": (100, size - 1),  # past the end is cut to it
            f"bytes=-{size * 3}": (0, size - 1),  # a suffix longer than the content
        }
        for range_, (first, last) in cases.items():
            status, headers, body = get(range_)
            assert status == 206, range_
            assert body == data[first : last + 1], range_
            assert headers["content-range"] == f"bytes {first}-{last}/{size}", range_
            assert headers["content-length"] == str(last - first + 1), range_
        past_end = client.get(url, headers={"Range": f"bytes={size}-"})
        several = get("bytes=0-1,5-6")
        not_bytes = get("items=0-1")
        stale_if_range = get("bytes=0-1", **{"If-Range": '"something-else"'})
        fresh_if_range = get("bytes=0-1", **{"If-Range": etag})
        unchanged = client.get(url, headers={"If-None-Match": etag})
    assert past_end.status_code == 416
    assert past_end.headers["content-range"] == f"bytes */{size}"
    assert past_end.headers["content-type"] == "application/problem+json"
    assert past_end.json()["size"] == size
    for status, _, body in (several, not_bytes, stale_if_range):
        assert (status, body) == (200, data)  # ignored: the whole content
    assert fresh_if_range[0] == 206
    assert unchanged.status_code == 304
    assert unchanged.content == b""


@pytest.fixture(scope="module")
def small_limit_server(
    tmp_path_factory: pytest.TempPathFactory, new_database: DatabaseFactory
) -> Iterator[VigilServer]:
    srv = new_database.server(tmp_path_factory.mktemp("snapshot-limit"), snapshot_max_bytes=MiB)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def small_limit_services(small_limit_server: VigilServer) -> Iterator[Services]:
    svc = small_limit_server.services()
    yield svc
    svc.close()


def test_upload_over_the_limit_is_413_and_leaves_nothing(
    small_limit_server: VigilServer, small_limit_services: Services
) -> None:
    server, services = small_limit_server, small_limit_services
    cam = camera(services)
    over = os.urandom(MiB + 1)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(64):
            yield over[: 64 * 1024]

    with server.client(cam.cred.token) as client:
        declared = client.post(cam.url, content=over, headers=JPEG)
        streamed = client.post(cam.url, content=chunks(), headers=JPEG)
        exact = client.post(cam.url, content=over[:MiB], headers=JPEG)
    assert declared.status_code == 413, declared.text
    assert streamed.status_code == 413, streamed.text
    for refused in (declared, streamed):
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "payload_too_large"
    assert exact.status_code == 201  # the limit itself is allowed
    assert snapshot_rows(services, cam.cred.dealer.id) == 1
    assert stored_files(server.home, cam.cred.dealer.id) == [
        server.home / "objects" / cam.cred.dealer.id / "sandbox" / exact.json()["id"]
    ]


def test_upload_cut_off_midway_leaves_nothing(server: VigilServer, services: Services) -> None:
    cam = camera(services)
    head = (
        f"POST {cam.url} HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {cam.cred.token}\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {8 * MiB}\r\n\r\n"
    )
    with (
        socket.create_connection(("127.0.0.1", server.https_port)) as raw,
        server.ssl_context().wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(head.encode() + os.urandom(3 * MiB))
        time.sleep(0.5)  # let the server write some of it
        (partial,) = stored_files(server.home, cam.cred.dealer.id)
        assert partial.name.startswith(".partial-")  # being written, not yet an object
    deadline = time.monotonic() + 10
    while stored_files(server.home, cam.cred.dealer.id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored_files(server.home, cam.cred.dealer.id) == []
    assert snapshot_rows(services, cam.cred.dealer.id) == 0


def test_wrong_digest_is_422_and_nothing_is_stored(server: VigilServer, services: Services) -> None:
    cam = camera(services)
    data = os.urandom(100_000)
    right = hashlib.sha256(data).hexdigest()
    wrong = hashlib.sha256(b"something else").hexdigest()
    with server.client(cam.cred.token) as client:
        by_query = client.post(cam.url, content=data, headers=JPEG, params={"sha256": wrong})
        by_field = client.post(
            cam.url, content=data, headers=JPEG | {"Repr-Digest": repr_digest(b"other")}
        )
        disagreeing = client.post(
            cam.url,
            content=data,
            headers=JPEG | {"Content-Digest": repr_digest(b"other")},
            params={"sha256": right},
        )
        malformed = client.post(
            cam.url, content=data, headers=JPEG | {"Repr-Digest": "sha-256=abc"}
        )
        matching = client.post(
            cam.url, content=data, headers=JPEG, params={"sha256": right.upper()}
        )
    for refused in (by_query, by_field, disagreeing, malformed):
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert by_query.json()["sha256"] == right  # says what arrived, to help find the fault
    assert matching.status_code == 201
    assert snapshot_rows(services, cam.cred.dealer.id) == 1
    assert len(stored_files(server.home, cam.cred.dealer.id)) == 1


def test_bad_uploads_are_problems_not_crashes(server: VigilServer, services: Services) -> None:
    cam = camera(services)
    other_site_alarm = factories.alarm(services, cam.actor, factories.site(services, cam.actor))
    with server.client(cam.cred.token) as client:
        html = client.post(cam.url, content=b"<script>", headers={"Content-Type": "text/html"})
        untyped = client.post(cam.url, content=b"\xff\xd8\xff")
        empty = client.post(cam.url, content=b"", headers=JPEG)
        naive = client.post(
            cam.url, content=b"x", headers=JPEG, params={"captured_at": "2026-01-01T00:00:00"}
        )
        wrong_site = client.post(
            cam.url, content=b"x", headers=JPEG, params={"alarm_id": other_site_alarm}
        )
        bad_cursor = client.get("/v1/snapshots", params={"cursor": "nope"})
        nul_filter = client.get("/v1/snapshots", params={"device_id": "dev_\x00"})
    assert html.status_code == 415
    assert untyped.status_code == 415
    assert empty.status_code == 422
    assert naive.status_code == 422
    assert wrong_site.status_code == 422
    assert bad_cursor.status_code == 422
    assert nul_filter.status_code == 422
    for refused in (html, untyped, empty, naive, wrong_site, bad_cursor, nul_filter):
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert snapshot_rows(services, cam.cred.dealer.id) == 0
    assert stored_files(server.home, cam.cred.dealer.id) == []


def test_snapshot_attaches_to_an_alarm_and_lists_by_it(
    server: VigilServer, services: Services
) -> None:
    cam = camera(services)
    alarm_id = factories.alarm(services, cam.actor, cam.site_id)
    with server.client(cam.cred.token) as client:
        loose = client.post(cam.url, content=b"loose", headers=JPEG).json()
        attached = [
            client.post(
                cam.url,
                content=b"clip",
                headers={"Content-Type": "video/mp4"},
                params={"alarm_id": alarm_id},
            ).json()
            for _ in range(3)
        ]
        seen: list[str] = []
        cursor = None
        while True:
            params = {"alarm_id": alarm_id, "limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/snapshots", params=params).json()
            seen += [s["id"] for s in page["data"]]
            if (cursor := page["next_cursor"]) is None:
                break
    assert seen == [s["id"] for s in reversed(attached)]  # newest first, each once
    assert loose["id"] not in seen
    assert {s["alarm_id"] for s in attached} == {alarm_id}


def test_other_tenants_devices_alarms_and_snapshots_are_not_found(
    server: VigilServer, services: Services
) -> None:
    mine = camera(services)
    theirs = camera(services)  # another dealer
    production = camera(services, owner=mine.cred.dealer, environment=Environment.PRODUCTION)
    their_alarm = factories.alarm(services, theirs.actor, theirs.site_id)
    with server.client(theirs.cred.token) as client:
        their_snap = client.post(theirs.url, content=b"theirs", headers=JPEG).json()["id"]
    with server.client(mine.cred.token) as client:
        foreign_device = client.post(theirs.url, content=b"x", headers=JPEG)
        other_environment = client.post(production.url, content=b"x", headers=JPEG)
        foreign_alarm = client.post(
            mine.url, content=b"x", headers=JPEG, params={"alarm_id": their_alarm}
        )
        meta = client.get(f"/v1/snapshots/{their_snap}")
        content = client.get(f"/v1/snapshots/{their_snap}/content")
        listed = client.get("/v1/snapshots").json()["data"]
        by_device = client.get("/v1/snapshots", params={"device_id": theirs.device_id}).json()
    for refused in (foreign_device, other_environment, foreign_alarm, meta, content):
        assert refused.status_code == 404, refused.text
        assert refused.json()["code"] == "not_found"
    assert listed == []
    assert by_device["data"] == []
    assert snapshot_rows(services, mine.cred.dealer.id) == 0


def test_end_user_limited_to_a_site_sees_only_its_devices_snapshots(services: Services) -> None:
    cam = camera(services)
    elsewhere = factories.camera(services, cam.actor)  # at another site of the same dealer
    here = services.snapshots.create(cam.actor, cam.device_id, [b"here"], content_type="image/png")
    there = services.snapshots.create(cam.actor, elsewhere, [b"there"], content_type="image/png")
    assert cam.actor.principal is not None
    user = replace(
        cam.actor,
        principal=replace(cam.actor.principal, site_ids=frozenset({cam.site_id})),
    )
    assert [s.id for s in services.snapshots.list(user).items] == [here.id]
    assert services.snapshots.get(user, here.id) == here
    with pytest.raises(NotFound):
        services.snapshots.get(user, there.id)
    with pytest.raises(NotFound):
        services.snapshots.begin(user, elsewhere, content_type="image/png")


def _status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/<pid>/status (VmRSS now, VmHWM the peak)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def test_a_gibibyte_streams_both_ways_in_bounded_memory(
    server: VigilServer, services: Services
) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    cam = camera(services)
    total = 1024 * MiB
    chunk = 4 * MiB
    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        block = bytearray(os.urandom(chunk))
        for n in range(total // chunk):
            block[:8] = n.to_bytes(8, "big")  # every chunk differs, so order matters to the hash
            piece = bytes(block)
            sent.update(piece)
            yield piece

    # Reset the server's high-water mark to its current size, so the peak we read afterwards
    # is this transfer's (Linux clear_refs "5"); a kernel without it leaves the older peak,
    # which only makes the check more lenient, never wrong.
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _status(pid)["VmHWM"]
    started = time.monotonic()
    with server.client(cam.cred.token) as client:
        created = client.post(
            cam.url,
            content=body(),
            headers={"Content-Type": "video/mp4", "Content-Length": str(total)},
        )
        assert created.status_code == 201, created.text
        snap = created.json()
        received = hashlib.sha256()
        size = 0
        with client.stream("GET", f"/v1/snapshots/{snap['id']}/content") as download:
            assert download.status_code == 200
            assert download.headers["content-length"] == str(total)
            for part in download.iter_raw(chunk):
                received.update(part)
                size += len(part)
    elapsed = time.monotonic() - started
    peak = _status(pid)["VmHWM"]
    stored = server.home / "objects" / cam.cred.dealer.id / "sandbox" / snap["id"]
    stored.unlink()  # a gibibyte is too much to leave in the test directory
    assert snap["size"] == size == total
    assert snap["sha256"] == sent.hexdigest() == received.hexdigest()
    assert peak - before < 100 * MiB, f"server peak grew {(peak - before) / MiB:.0f} MiB"
    assert elapsed < 120
