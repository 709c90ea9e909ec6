"""In-process edge profile: CPU per request of Vigil's ASGI application, without TLS or sockets.

`bench/edge.py` is the benchmark of record (real server, real TLS, wrk on another core). This
script answers a narrower question quickly and with little noise: how much CPU (all threads of
this process, the audit writer included) the application itself spends per `GET /v1/me`, and
how much a bare FastAPI hello-world spends per request through the same driver. Useful while
optimising, because a shared machine barely moves a CPU-time figure.

    .venv/bin/python bench/edge_inprocess.py [--requests 20000] [--concurrency 32] [--profile]

It builds the real services on a temporary SQLite home (WAL, `synchronous=FULL`, so every
record is committed durably, as in `vigil serve`), makes a key through the services, and drives
the ASGI app directly with 32 concurrent tasks on uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.edge import baseline_app

from vigil.app import create_api
from vigil.auth.actor import Actor
from vigil.auth.principal import ActorType, Environment
from vigil.auth.scopes import Scope
from vigil.config import Settings
from vigil.services import Services
from vigil.tenancy.models import Plan

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
OPERATOR = Actor(type=ActorType.OPERATOR, id="bench", via="cli")


def make_scope(path: str, token: str | None) -> dict[str, Any]:
    headers = [(b"host", b"localhost"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8443),
        "client": ("127.0.0.1", 50000),
        "scheme": "https",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


async def drive(app: App, path: str, token: str | None, total: int, concurrency: int) -> int:
    statuses: dict[int, int] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def client(n: int) -> None:
        for _ in range(n):

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1

            await app(make_scope(path, token), receive, send)

    await asyncio.gather(*(client(total // concurrency) for _ in range(concurrency)))
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {statuses}")
    return sum(statuses.values())


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread name of this process, from /proc (utime + stime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue
        name = names.get(int(task.name), "other")
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def measure(
    app: App, path: str, token: str | None, total: int, concurrency: int
) -> tuple[float, dict[str, float]]:
    """CPU microseconds per request, all threads of this process, and per thread name."""
    uvloop.run(drive(app, path, token, min(2000, total), concurrency))  # warm-up
    cpu, threads = time.process_time(), thread_cpu()
    done = uvloop.run(drive(app, path, token, total, concurrency))
    after = thread_cpu()
    per_thread = {k: (v - threads.get(k, 0.0)) / done * 1e6 for k, v in after.items()}
    return (time.process_time() - cpu) / done * 1e6, per_thread


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", action="store_true", help="cProfile the Vigil run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        services = Services.build(
            Settings(home=Path(tmp), rate_limit_per_second=1e9, rate_limit_burst=10**9)
        )
        dealer = services.dealers.create(OPERATOR, name="bench", plan=Plan.STANDARD)
        app_ = services.apps.create(
            OPERATOR,
            dealer_id=dealer.id,
            name="bench",
            environment=Environment.SANDBOX,
            scopes=[Scope.ALARMS_READ],
            ip_allow_list=[],
        )
        _, token = services.keys.create(OPERATOR, app_.id)
        vigil = create_api(services)
        baseline = baseline_app()
        for round_ in (1, 2):
            base, _ = measure(baseline, "/hello", None, args.requests, args.concurrency)
            us, threads = measure(vigil, "/v1/me", token, args.requests, args.concurrency)
            split = "  ".join(f"{k} {v:.0f}" for k, v in sorted(threads.items()) if v >= 1)
            print(f"round {round_}: baseline {base:6.1f} us/req   vigil {us:6.1f} us/req ({split})")
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            measure(vigil, "/v1/me", token, args.requests, args.concurrency)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
        services.close()


if __name__ == "__main__":
    main()
