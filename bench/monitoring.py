"""Monitoring API benchmark (issue 4): three targets, each against a baseline in the same run.

Run it with `.venv/bin/python bench/monitoring.py` (SQLite, the embedded default). It starts the
real `vigil serve` (pinned to core 0, rate limit lifted), creates a dealer, a sandbox key with
every scope, a site and a device through the real services, and measures:

1. **Telemetry ingest through the full edge**: readings/s of `POST /v1/devices/{id}/telemetry`
   in batches of 500 (TLS, key check, scope check, validation, one transaction per call with its
   audit record, and the edge's own audit record), from 8 concurrent connections on core 1,
   against the **raw `executemany` insert rate of the same rows into the same database**: the
   same 500-row batches, one transaction each (what one API call does), on a plain `sqlite3`
   connection with the same pragmas (WAL, `synchronous=FULL`), also on core 0. Target >= 0.5.
2. **Snapshot upload + download through the full edge** of one large object (default 256 MiB,
   streamed from a generator and hashed on the way back), against a **plain file copy of the
   same bytes** (copy + fsync, then read the copy back: the same write-durably-then-read work
   without HTTP, TLS or hashing). Target >= 0.5, with the server's peak RSS growth printed
   (flat memory: it must stay far below the object size). Then, in the same run, the **bare
   ceiling**: the same round trip with the same client code and the same TLS (the certificate,
   `ReloadableCertificate` context and `OPENSSL_CONF` of `vigil serve`) against a bare uvicorn
   ASGI app on core 0 (uvloop, httptools) that writes the body to a file and fsyncs it, and
   streams the file back: no auth, hashing, encryption or database. Its ratio to the file copy
   says whether 0.5 is reachable at all with uvicorn + Python TLS + httpx on this machine, and
   Vigil's time as a fraction of it says how close Vigil's own path is to that floor. The bare
   app is measured once more with `curl` as the client (when installed), so that the ceiling
   is the server's and not the Python client's.
3. **`GET /v1/alarms?status=new&limit=50` p99** with 10,000 alarms in the table and again with
   1,000,000 (rows inserted directly, 20 % `new`, spread over several tenants), 300 sequential
   requests after 30 warm-up ones each time. Target: p99 at 1M within 2x of p99 at 10k.

Each figure is printed with its baseline and ratio. Exit status 0 only when every target is met.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from tests.support import factories  # noqa: E402
from tests.support.server import VigilServer  # noqa: E402

from vigil.services import Services  # noqa: E402

BATCH = 500
CHUNK = 1 << 20


def pin(pid: int, core: int) -> None:
    os.sched_setaffinity(pid, {core})


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def sqlite_time(when: datetime) -> str:
    """How `UtcDateTime` stores a timestamp on SQLite (naive UTC, microseconds)."""
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def telemetry_body(start: datetime) -> bytes:
    readings = [
        {
            "metric": "temperature" if i % 2 else "humidity",
            "value": 20.0 + (i % 37) / 10,
            "timestamp": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
        }
        for i in range(BATCH)
    ]
    return json.dumps({"readings": readings}).encode()


async def ingest_load(
    server: VigilServer, token: str, device_id: str, seconds: float, connections: int
) -> tuple[int, int]:
    """Returns (readings accepted, failed calls) within `seconds`."""
    body = telemetry_body(datetime.now(UTC) - timedelta(hours=1))
    tls = ssl.create_default_context(cafile=server.ca_pem)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"{server.base_url}/v1/devices/{device_id}/telemetry"
    accepted = failed = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal accepted, failed
        async with httpx.AsyncClient(verify=tls, headers=headers, timeout=30) as client:
            while time.perf_counter() < deadline:
                response = await client.post(url, content=body)
                if response.status_code in (200, 201, 202):
                    accepted += BATCH
                else:
                    failed += 1
                    if failed == 1:
                        print(f"  ingest refused: {response.status_code} {response.text[:300]}")

    await asyncio.gather(*(worker() for _ in range(connections)))
    return accepted, failed


def connect(database: Path) -> Any:
    """A driver connection of the benchmark's own to the server's database, which is SQLCipher
    (issue 5): keyed with the database key from the same home's KMS, exactly as the server's
    connections are, so the baseline pays the page encryption too and the ratio measures what
    Vigil adds on top (edge, validation, field encryption of every value, audit)."""
    from vigil.config import Settings
    from vigil.encryption import start_kms
    from vigil.storage import sqlcipher

    settings = Settings(home=database.parent)
    key = sqlcipher.database_key(start_kms(settings), settings.keys_dir)
    return sqlcipher.creator(database, key)()


def raw_executemany_rate(database: Path, dealer: str, device: str, seconds: float) -> float:
    """Rows/s of 500-row `executemany` transactions on a plain sqlite3 connection, on core 0."""
    previous = os.sched_getaffinity(0)
    pin(0, 0)
    try:
        conn = connect(database)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        start = datetime.now(UTC) - timedelta(hours=2)
        rows = [
            (
                dealer,
                "sandbox",
                device,
                "temperature" if i % 2 else "humidity",
                20.0 + (i % 37) / 10,
                sqlite_time(start + timedelta(seconds=i)),
            )
            for i in range(BATCH)
        ]
        sql = (
            "INSERT INTO telemetry (dealer_id, environment, device_id, metric, value, recorded_at)"
            " VALUES (?, ?, ?, ?, ?, ?)"
        )
        done = 0
        began = time.perf_counter()
        while time.perf_counter() - began < seconds:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
            done += BATCH
        elapsed = time.perf_counter() - began
        conn.close()
        return done / elapsed
    finally:
        os.sched_setaffinity(0, previous)


def object_chunks(total: int, seed: int = 7) -> Iterator[bytes]:
    block = random.Random(seed).randbytes(CHUNK)
    sent = 0
    while sent < total:
        n = min(CHUNK, total - sent)
        yield block[:n]
        sent += n


def snapshot_round_trip(
    server: VigilServer | BareServer, token: str, device_id: str, size: int
) -> tuple[float, float, str, str]:
    """(upload seconds, download seconds, sha256 sent, sha256 received)."""
    tls = ssl.create_default_context(cafile=server.ca_pem)
    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for chunk in object_chunks(size):
            sent.update(chunk)
            yield chunk

    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "video/mp4",
        "Content-Length": str(size),
    }
    with httpx.Client(verify=tls, timeout=600) as client:
        began = time.perf_counter()
        response = client.post(
            f"{server.base_url}/v1/devices/{device_id}/snapshots", content=body(), headers=headers
        )
        upload = time.perf_counter() - began
        if response.status_code != 201:
            raise SystemExit(f"snapshot upload failed: {response.status_code} {response.text}")
        snapshot_id = response.json()["id"]
        received = hashlib.sha256()
        began = time.perf_counter()
        with client.stream(
            "GET",
            f"{server.base_url}/v1/snapshots/{snapshot_id}/content",
            headers={"Authorization": f"Bearer {token}"},
        ) as stream:
            for chunk in stream.iter_raw(CHUNK):
                received.update(chunk)
        download = time.perf_counter() - began
    return upload, download, sent.hexdigest(), received.hexdigest()


BareApp = Any
Results = list[tuple[str, float, float, bool]]


def bare_app(directory: Path) -> BareApp:
    """The least an HTTPS object store can do in uvicorn: any POST writes its body to one file
    (write per received chunk, fsync at the end) and answers `{"id": "bare"}`; any GET streams
    that file back in 1 MiB chunks with its Content-Length."""
    path = directory / "bare-object.bin"

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            with path.open("wb", buffering=0) as f:
                more = True
                while more:
                    message = await receive()
                    f.write(message.get("body", b""))
                    more = message.get("more_body", False)
                os.fsync(f.fileno())
            body = b'{"id": "bare"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", b"14")]
            await send({"type": "http.response.start", "status": 201, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        length = str(path.stat().st_size).encode()
        headers = [(b"content-type", b"video/mp4"), (b"content-length", length)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with path.open("rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def serve_bare(port: int, home: Path) -> None:
    """Serve `bare_app` with the TLS context and uvicorn options of `vigil.server.serve`."""
    import uvicorn

    from vigil.edge.certificates import ensure_local_tls
    from vigil.edge.tls import ReloadableCertificate

    wanted = str((home / "openssl.cnf").resolve())
    if os.environ.get("OPENSSL_CONF") != wanted:
        raise SystemExit(f"the bare server must be started with OPENSSL_CONF={wanted}")
    files, _ = ensure_local_tls(home / "tls")
    context = ReloadableCertificate(files.cert_pem, files.key_pem).context

    def tls_factory(_config: uvicorn.Config, _default: object) -> ssl.SSLContext:
        return context

    uvicorn.Server(
        uvicorn.Config(
            bare_app(home),
            host="127.0.0.1",
            port=port,
            ssl_context_factory=tls_factory,
            log_level="warning",
            server_header=False,
            proxy_headers=False,
            access_log=False,
            lifespan="off",
        )
    ).run()


class BareServer:
    """`serve_bare` in a subprocess pinned to core 0 (`taskset`), sharing the Vigil server's
    home: the same certificate and the same `openssl.cnf` `vigil serve` wrote and runs with."""

    def __init__(self, home: Path, host: str) -> None:
        from vigil.edge.tls import write_openssl_conf

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.home, self.ca_pem = home, home / "tls" / "ca.pem"
        self.base_url = f"https://{host}:{self.port}"
        conf = str(write_openssl_conf(home / "openssl.cnf").resolve())
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        env["OPENSSL_CONF"] = conf
        argv = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(self.port)]
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", *argv, "--home", str(home)], env=env, cwd=ROOT
        )

    def __enter__(self) -> BareServer:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("the bare server exited at start")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                time.sleep(0.1)
            else:
                return self
        raise SystemExit("the bare server did not start")

    def __exit__(self, *_exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def file_copy_seconds(workdir: Path, size: int) -> float:
    """Copy the same bytes file-to-file with fsync, then read the copy back."""
    source, target = workdir / "source.bin", workdir / "target.bin"
    with source.open("wb") as f:
        for chunk in object_chunks(size):
            f.write(chunk)
    began = time.perf_counter()
    shutil.copyfile(source, target)
    with target.open("rb+") as f:
        os.fsync(f.fileno())
    with target.open("rb") as f:
        while f.read(CHUNK):
            pass
    elapsed = time.perf_counter() - began
    source.unlink()
    target.unlink()
    return elapsed


def seed_alarms(
    database: Path, tenants: list[tuple[str, str]], site_ids: dict[str, str], n: int
) -> None:
    """Insert `n` alarms directly, spread over `tenants`, 20 % of them `new`."""
    conn = connect(database)
    conn.execute("PRAGMA busy_timeout=10000")
    statuses = ["new", "acknowledged", "dispatched", "resolved", "resolved"]
    now = datetime.now(UTC)
    sql = (
        "INSERT INTO alarms (id, dealer_id, environment, site_id, device_id, zone, type, priority,"
        " status, description, snapshot_ids, verification_requested, resolution_code,"
        " occurred_at, version, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, NULL, '[]', 0, NULL, ?, 1, ?, ?)"
    )
    batch: list[tuple[object, ...]] = []
    for i in range(n):
        dealer, environment = tenants[i % len(tenants)]
        when = sqlite_time(now - timedelta(seconds=n - i))
        batch.append(
            (
                # Random per call: a seed derived from `n` repeated the ids of an earlier call
                # with the same count (--alarms 20000 after a 10,000 + 10,000 top-up).
                f"alm_bench{secrets.token_hex(10)}",
                dealer,
                environment,
                site_ids[dealer],
                f"zone {i % 16}",
                "burglary",
                1 + i % 5,
                statuses[i % 5],
                when,
                when,
                when,
            )
        )
        if len(batch) == 50_000:
            conn.execute("BEGIN")
            conn.executemany(sql, batch)
            conn.execute("COMMIT")
            batch.clear()
    if batch:
        conn.execute("BEGIN")
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def list_p99_ms(server: VigilServer, token: str, requests: int = 300) -> float:
    tls = ssl.create_default_context(cafile=server.ca_pem)
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{server.base_url}/v1/alarms"
    params = {"status": "new", "limit": "50"}
    timings = []
    with httpx.Client(verify=tls, headers=headers) as client:
        for i in range(30 + requests):
            began = time.perf_counter()
            response = client.get(url, params=params)
            elapsed = time.perf_counter() - began
            if response.status_code != 200 or len(response.json()["data"]) != 50:
                raise SystemExit(f"alarm listing failed: {response.status_code} {response.text}")
            if i >= 30:
                timings.append(elapsed * 1000)
    return statistics.quantiles(timings, n=100)[98]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="ingest run length")
    parser.add_argument("--snapshot-mib", type=int, default=256)
    parser.add_argument("--alarms", type=int, default=1_000_000, help="large table size")
    parser.add_argument(
        "--only", choices=("all", "snapshot"), default="all", help="run only target 2"
    )
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare is not None:
        serve_bare(args.serve_bare, args.home)
        return 0
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs two cores: the server runs on core 0, the load on core 1")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"load average at start: {os.getloadavg()}")
    home = Path(tempfile.mkdtemp(prefix="vigil-bench-monitoring-"))
    database = home / "vigil.db"
    server = VigilServer(
        home,
        f"sqlite:///{database}",
        rate_limit_per_second=1e9,
        rate_limit_burst=10**9,
        snapshot_max_bytes=max(args.snapshot_mib, 1) << 21,
        log_level="warning",
    )
    server.start()
    assert server.proc is not None
    pin(server.proc.pid, 0)
    for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
        pin(int(task.name), 0)
    os.sched_setaffinity(0, {1})
    services: Services = server.services()
    results: Results = []
    try:
        cred = factories.credential(services)
        actor = factories.actor_of(services, cred)
        site = services.sites.create(actor, {"name": "bench site"})
        device = services.devices.create(
            actor, {"site_id": site.id, "kind": "camera", "serial": "bench-1", "name": "cam"}
        )

        if args.only == "all":
            print("\n1. telemetry ingest, batches of 500")
            telemetry(args, server, database, cred, device.id, results)

        print(f"\n2. snapshot upload + download, {args.snapshot_mib} MiB")
        snapshot(args, server, home, cred.token, device.id, results)

        if args.only == "all":
            print("\n3. GET /v1/alarms?status=new&limit=50 p99, 10k vs large table")
            listing(args, server, services, database, cred, site.id, results)
    finally:
        services.close()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"\nload average at end: {os.getloadavg()}")
    print("\nsummary:")
    for name, _vigil, _base, ok in results:
        print(f"  {name}: {'PASS' if ok else 'FAIL'}")
    return 0 if all(ok for *_, ok in results) else 1


def telemetry(
    args: argparse.Namespace,
    server: VigilServer,
    database: Path,
    cred: Any,
    device_id: str,
    results: Results,
) -> None:
    accepted, failed = asyncio.run(
        ingest_load(server, cred.token, device_id, args.seconds, connections=8)
    )
    vigil_rate = accepted / args.seconds
    raw_rate = raw_executemany_rate(database, cred.dealer.id, device_id, args.seconds)
    ratio = vigil_rate / raw_rate
    print(f"  vigil: {vigil_rate:,.0f} readings/s ({failed} failed calls)")
    print(f"  raw executemany, same rows, same database: {raw_rate:,.0f} rows/s")
    print(f"  ratio {ratio:.2f} (target >= 0.5)")
    results.append(("telemetry ingest", vigil_rate, raw_rate, ratio >= 0.5 and failed == 0))


def snapshot(
    args: argparse.Namespace,
    server: VigilServer,
    home: Path,
    token: str,
    device_id: str,
    results: Results,
) -> None:
    assert server.proc is not None
    size = args.snapshot_mib << 20
    rss_before = peak_rss_kib(server.proc.pid)
    upload, download, sent, received = snapshot_round_trip(server, token, device_id, size)
    rss_growth = (peak_rss_kib(server.proc.pid) - rss_before) / 1024
    copy = file_copy_seconds(home, size)
    ratio = copy / (upload + download)
    print(
        f"  vigil: upload {size / upload / 2**20:,.0f} MiB/s, download "
        f"{size / download / 2**20:,.0f} MiB/s, together {upload + download:.2f} s"
    )
    print(f"  plain copy + fsync + read back: {copy:.2f} s")
    print(
        f"  sha256 round trip {'ok' if sent == received else 'MISMATCH'}; server peak RSS "
        f"growth {rss_growth:.0f} MiB for a {args.snapshot_mib} MiB object"
    )
    print(f"  ratio {ratio:.2f} (target >= 0.5)")
    flat = rss_growth < 100
    results.append(
        (
            "snapshot round trip",
            upload + download,
            copy,
            ratio >= 0.5 and flat and sent == received,
        )
    )
    host = server.base_url.split("://", 1)[1].rsplit(":", 1)[0]
    with BareServer(home, host) as bare:
        b_up, b_down, b_sent, b_received = snapshot_round_trip(bare, token, device_id, size)
        by_curl = curl_round_trip(bare, home, size)
    bare_ratio = copy / (b_up + b_down)
    print(
        f"  bare ceiling (uvicorn + the same TLS, file write + fsync, no auth/hash/encryption/"
        f"database): upload {size / b_up / 2**20:,.0f} MiB/s, download "
        f"{size / b_down / 2**20:,.0f} MiB/s, together {b_up + b_down:.2f} s"
        f"{'' if b_sent == b_received else ' (sha256 MISMATCH)'}"
    )
    print(f"  bare ceiling ratio {bare_ratio:.2f}; vigil at {ratio / bare_ratio:.2f} of it")
    if by_curl is not None:
        c_up, c_down = by_curl
        print(
            f"  bare ceiling with curl as the client (C, OpenSSL; the client is no longer the "
            f"limit): upload {size / c_up / 2**20:,.0f} MiB/s, download "
            f"{size / c_down / 2**20:,.0f} MiB/s, together {c_up + c_down:.2f} s, ratio "
            f"{copy / (c_up + c_down):.2f}"
        )
        # The faster client for each half: the most the bare server was seen to do.
        bare_ratio = copy / (min(b_up, c_up) + min(b_down, c_down))
        print(f"  bare ceiling, the faster client for each half: ratio {bare_ratio:.2f}")
    if bare_ratio < 0.5:
        print(
            "  the bare ceiling itself is below 0.5: the target is out of reach for any app on"
            " uvicorn + Python TLS on this machine, whatever the client"
        )


def curl_round_trip(bare: BareServer, home: Path, size: int) -> tuple[float, float] | None:
    """(upload s, download s) of the same bytes against the bare app with curl on core 1, or
    None without curl: the server's ceiling when the client costs as little as it can."""
    curl = shutil.which("curl")
    if curl is None:
        return None
    source = home / "curl-object.bin"
    with source.open("wb") as f:
        for chunk in object_chunks(size):
            f.write(chunk)
    pin_client = ["taskset", "-c", "1"] if (os.cpu_count() or 1) >= 2 else []
    base = [*pin_client, curl, "-sS", "--fail", "--cacert", str(bare.ca_pem)]
    url = f"{bare.base_url}/v1/snapshots/bare/content"
    try:
        began = time.perf_counter()
        # -T streams the file (--data-binary would read it all into memory first).
        subprocess.run(
            [*base, "-X", "POST", "-T", str(source), "-H", "Expect:", "-o", os.devnull, url],
            check=True,
        )
        upload = time.perf_counter() - began
        began = time.perf_counter()
        got = subprocess.run(
            [*base, "-o", os.devnull, "-w", "%{size_download}", url],
            check=True,
            capture_output=True,
            text=True,
        )
        download = time.perf_counter() - began
    finally:
        source.unlink()
    if int(got.stdout) != size:
        raise SystemExit(f"curl downloaded {got.stdout} bytes, not {size}")
    return upload, download


def listing(
    args: argparse.Namespace,
    server: VigilServer,
    services: Services,
    database: Path,
    cred: Any,
    site_id: str,
    results: Results,
) -> None:
    others = [factories.credential(services) for _ in range(3)]
    tenants = [(cred.dealer.id, "sandbox")] + [(o.dealer.id, "sandbox") for o in others]
    sites = {cred.dealer.id: site_id}
    for other in others:
        sites[other.dealer.id] = services.sites.create(
            factories.actor_of(services, other), {"name": "s"}
        ).id
    seed_alarms(database, tenants, sites, 10_000)
    small = list_p99_ms(server, cred.token)
    seed_alarms(database, tenants, sites, args.alarms - 10_000)
    large = list_p99_ms(server, cred.token)
    ratio = large / small
    print(f"  p99 at 10,000 alarms: {small:.2f} ms; at {args.alarms:,}: {large:.2f} ms")
    print(f"  growth {ratio:.2f}x (target <= 2)")
    results.append(("alarm listing p99", large, small, ratio <= 2.0))


if __name__ == "__main__":
    sys.exit(main())
