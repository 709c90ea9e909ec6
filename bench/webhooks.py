"""Webhook delivery benchmark (issue 7): Vigil's worker against a bare aiohttp client, and the
latency from a committed state change to the receiver.

Run it with `.venv/bin/python bench/webhooks.py` (`--events`, `--concurrency`, `--seconds`,
`--postgres` to also run on a throwaway PostgreSQL cluster). In ONE run it starts a loopback
HTTPS receiver (aiohttp.web, `trustme` certificate, answers 204) in its own process pinned to
core 1 when there are two cores, then measures on each database:

1. **Baseline**: a bare `aiohttp.ClientSession` (certificate verification on, the same trust
   store) posting the same signed payloads to the same receiver, `--concurrency` at once.
2. **Vigil**: `--events` events written to the outbox in one transaction, then the real
   `DeliveryWorker` (fan-out, leased claims, vetting resolver, TLS verification, Standard
   Webhooks signing, one attempt row and one audit record per attempt) until every message is
   delivered. Deliveries/s = events / wall time from worker start to the last recorded result.
   Target: >= 0.5x the baseline.
3. **Latency**: events committed one per transaction (each like an API state change: emit in a
   transaction) at half the rate measured in (2), open loop; latency = the receiver's arrival
   time - the commit time, joined on webhook-id. Targets: p50 <= 50 ms, p99 <= 250 ms.

Every figure is checked: every message delivered exactly once, one audit record per attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

RECEIVER = r"""
import asyncio, json, ssl, sys, time
from aiohttp import web
arrivals = []
async def hook(request):
    await request.read()
    arrivals.append((request.headers.get("webhook-id"), time.time()))
    return web.Response(status=204)
async def stats(request):
    return web.json_response(arrivals)
async def reset(request):
    arrivals.clear()
    return web.Response(status=204)
app = web.Application()
app.add_routes([web.post("/hook", hook), web.get("/stats", stats), web.post("/reset", reset)])
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), ssl_context=ctx, print=None,
            access_log=None)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    def __init__(self, work: Path) -> None:
        import trustme

        ca = trustme.CA()
        leaf = ca.issue_cert("receiver.test", "127.0.0.1")
        self.trust_store = work / "trust.pem"
        ca.cert_pem.write_to_path(str(self.trust_store))
        cert, key = work / "leaf.pem", work / "leaf.key"
        leaf.private_key_pem.write_to_path(str(key))
        cert.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems))
        self.port = free_port()
        script = work / "receiver.py"
        script.write_text(RECEIVER)
        pin = (
            ["taskset", "-c", "1"] if (os.cpu_count() or 1) >= 2 and shutil.which("taskset") else []
        )
        self.proc = subprocess.Popen(
            [*pin, sys.executable, str(script), str(self.port), str(cert), str(key)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"https://receiver.test:{self.port}/hook"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.stats()
            except OSError:
                time.sleep(0.1)
            else:
                return
        raise RuntimeError("receiver did not start")

    def _client(self) -> Any:
        import ssl
        import urllib.request

        ctx = ssl.create_default_context(cafile=str(self.trust_store))
        ctx.check_hostname = False
        return urllib.request, ctx

    def stats(self) -> list[tuple[str, float]]:
        request, ctx = self._client()
        url = f"https://127.0.0.1:{self.port}/stats"
        with request.urlopen(url, context=ctx, timeout=30) as response:
            return [tuple(x) for x in json.loads(response.read())]

    def reset(self) -> None:
        request, ctx = self._client()
        req = request.Request(f"https://127.0.0.1:{self.port}/reset", method="POST")
        with request.urlopen(req, context=ctx, timeout=30):
            pass

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


async def baseline(receiver: Receiver, n: int, concurrency: int) -> float:
    """A bare aiohttp client posting the same kind of signed payload, `concurrency` at once."""
    import ssl

    import aiohttp

    from vigil.webhooks.resolver import StaticHosts
    from vigil.webhooks.signing import headers, new_secret

    secret = new_secret()
    ctx = ssl.create_default_context(cafile=str(receiver.trust_store))
    resolver = StaticHosts(["receiver.test=127.0.0.1"])

    class Fixed(aiohttp.abc.AbstractResolver):
        async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[Any]:
            return [
                {
                    "hostname": host,
                    "host": str(a),
                    "port": port,
                    "family": 2,
                    "proto": 0,
                    "flags": 0,
                }
                for a in resolver.resolve(host, port)
            ]

        async def close(self) -> None:
            return None

    connector = aiohttp.TCPConnector(resolver=Fixed(), limit=concurrency, ssl=ctx)
    queue = list(range(n))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def runner() -> None:
            while queue:
                i = queue.pop()
                body = json.dumps({"type": "site.armed", "data": {"n": i}}).encode()
                sent = headers([secret], f"msg_{i}", int(time.time()), body)
                async with session.post(receiver.url, data=body, headers=sent) as response:
                    await response.read()
                    assert response.status == 204

        started = time.perf_counter()
        await asyncio.gather(*(runner() for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


class World:
    def __init__(
        self, home: Path, url: str, owner: str | None, receiver: Receiver, conc: int
    ) -> None:
        from tests.support import factories

        from vigil.config import Settings
        from vigil.services import Services

        self.services = Services.build(
            Settings(
                home=home,
                database_url=url,
                database_owner_url=owner,
                webhook_allowed_networks="127.0.0.0/8",  # type: ignore[arg-type]
                webhook_static_hosts="receiver.test=127.0.0.1",  # type: ignore[arg-type]
                webhook_trust_store=receiver.trust_store,
                webhook_concurrency=conc,
            )
        )
        cred = factories.credential(self.services)
        self.actor = factories.actor_of(self.services, cred)
        self.endpoint = self.services.webhooks.endpoints.create(
            self.actor, url=receiver.url, event_types=["site.armed"]
        ).endpoint

    def emit(self, n: int) -> dict[str, float]:
        """`n` events in one transaction; returns event id -> commit time."""
        from vigil.events.outbox import emit
        from vigil.events.types import EventType

        assert self.actor.tenant is not None
        now = datetime.now(UTC)
        # Payloads are sealed (S6): the key is fetched, with budget headroom, before the lock.
        sealer = self.services.encryption.records.sealer(self.actor.tenant.dealer_id)
        with self.services.db.transaction() as conn:
            ids = [
                emit(
                    conn,
                    self.actor.tenant,
                    EventType.SITE_ARMED,
                    subject_type="site",
                    subject_id=f"site_{i}",
                    data={"n": i},
                    when=now,
                    sealer=sealer,
                )
                for i in range(n)
            ]
        committed = time.time()
        return dict.fromkeys(ids, committed)

    def delivered(self) -> int:
        from sqlalchemy import func, select

        from vigil.storage.tables import webhook_messages as m

        with self.services.db.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        m.c.endpoint_id == self.endpoint.id, m.c.status == "delivered"
                    )
                ).scalar_one()
            )

    def message_events(self) -> dict[str, str]:
        from sqlalchemy import select

        from vigil.storage.tables import webhook_messages as m

        with self.services.db.read() as conn:
            rows = conn.execute(
                select(m.c.id, m.c.event_id).where(m.c.endpoint_id == self.endpoint.id)
            )
            return {r[0]: r[1] for r in rows}

    def audit_attempts(self) -> int:
        from sqlalchemy import func, select

        from vigil.storage.tables import audit_events as a

        assert self.actor.tenant is not None
        with self.services.db.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        a.c.action == "webhook.delivery_attempted",
                        a.c.dealer_id == self.actor.tenant.dealer_id,
                    )
                ).scalar_one()
            )


async def throughput(world: World, n: int) -> float:
    world.emit(n)
    worker = world.services.webhooks.worker()
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(worker.run(stop))
    await wait_delivered(world, n, 300)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    return n / elapsed


async def wait_delivered(world: World, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await asyncio.to_thread(world.delivered) >= count:
            return
        await asyncio.sleep(0.05)  # a light poll: it shares the process with the worker
    raise AssertionError("not everything was delivered")


async def latency(world: World, rate: float, seconds: float, already: int) -> dict[str, float]:
    """Open loop: one committed event every 1/rate s, each due at its own time (a late start
    counts against the latency instead of lowering the offered rate). Event id -> commit time."""
    worker = world.services.webhooks.worker()
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    committed: dict[str, float] = {}
    started = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        committed |= await asyncio.to_thread(world.emit, 1)
    await wait_delivered(world, already + len(committed), 120)
    stop.set()
    await task
    return committed


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run_engine(
    name: str, url: str, owner: str | None, args: argparse.Namespace, receiver: Receiver, work: Path
) -> dict[str, Any]:
    home = work / name
    home.mkdir()
    world = World(home, url, owner, receiver, args.concurrency)
    receiver.reset()
    base = asyncio.run(baseline(receiver, args.events, args.concurrency))
    receiver.reset()
    vigil = asyncio.run(throughput(world, args.events))
    arrivals = receiver.stats()
    ids = [i for i, _ in arrivals]
    assert len(ids) == len(set(ids)) == args.events, "every message exactly once"
    assert world.audit_attempts() == args.events, "one audit record per attempt"
    receiver.reset()
    rate = max(1.0, vigil / 2)
    before = world.message_events()
    committed = asyncio.run(latency(world, rate, args.seconds, args.events))
    messages = {k: v for k, v in world.message_events().items() if k not in before}
    arrived = dict(receiver.stats())
    latencies = [(arrived[m] - committed[e]) * 1000 for m, e in messages.items()]
    world.services.close()
    return {
        "engine": name,
        "baseline_per_s": round(base),
        "vigil_per_s": round(vigil),
        "ratio": round(vigil / base, 2),
        "latency_rate_per_s": round(rate),
        "latency_samples": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-webhooks-"))
    receiver = Receiver(work)
    results = []
    try:
        print(f"load average before: {os.getloadavg()}")
        results.append(
            run_engine("sqlite", f"sqlite:///{work / 'vigil.db'}", None, args, receiver, work)
        )
        if args.postgres:
            from tests.support.postgres import PostgresCluster

            with PostgresCluster() as pg:
                url = str(pg.create_database("bench_webhooks"))
                results.append(run_engine("postgres", url, None, args, receiver, work))
        print(f"load average after: {os.getloadavg()}")
    finally:
        receiver.stop()
        shutil.rmtree(work, ignore_errors=True)
    ok = True
    for r in results:
        verdict = r["ratio"] >= 0.5 and r["p50_ms"] <= 50 and r["p99_ms"] <= 250
        ok &= verdict
        print(json.dumps(r | {"targets_met": verdict}))
    return 0 if ok else 1


if __name__ == "__main__":
    random.seed()
    sys.exit(main())
