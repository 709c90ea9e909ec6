"""Audit benchmark: group commit, the latency it adds, and `vigil audit verify` throughput.

Run it with `.venv/bin/python bench/audit.py` (`--quick` for a smoke run, `--what-if` to also
measure the prototype fixes at the bottom of this file). In ONE run, on a fresh SQLite database
(WAL, `synchronous=FULL`, in the system temp dir, which is on the machine's real disk) and on a
throwaway PostgreSQL 15 cluster (`tests/support/postgres.py`: `fsync=on`,
`synchronous_commit=on`), it measures through the real `vigil.audit` code (`AuditLog`,
`AuditStore`, `verify_store`):

1. **Group commit throughput.** 64 asyncio tasks on one event loop, each awaiting
   `audit.append(record)` in a loop for `--seconds`: the `GroupCommitWriter` thread turns what
   queued up during the previous flush into one transaction. Against **one durable commit per
   record on the same database**, measured twice in the same run:

   * `write_now x1`: one thread calling `audit.write_now(record)` in a loop;
   * `write_now x64`: 64 threads doing the same at once.

   The ratio is taken against the *better* of the two, so the baseline is the best that one
   commit per record achieves on that engine. A single thread is the plain cost of "one flush
   per record" (SQLite serializes writers anyway; 64 threads only add lock hand-off and
   busy-handler sleeps), while on PostgreSQL concurrent committers on different chains can share
   a WAL flush inside the server, so 64 threads may beat one. Taking the better one means neither
   engine's baseline is a straw man. Baseline and group-commit runs alternate (`--rounds`, best of
   each) so drift in the machine hits both alike.

   Note the ceiling this shape imposes: each producer has one record in flight, so no batch can
   exceed 64 (the mean batch size is printed), and the event loop and the writer mostly take turns
   (all 64 producers refill the queue while the writer waits, then wait while it commits).

   After the shipped store's run, the **database's own ceiling** for this ratio: the same rows
   (cloned from a stored record, fresh ids) inserted by the raw driver into a scratch copy of
   `audit_events` with its indexes, one durable commit per row against durable batches of
   Vigil's mean batch size and of 1,024. No application code can do better than the database
   alone; the figure is printed as context, not as a target.

2. **Latency added by the audit step.** Open loop: records are offered at a fixed rate, half the
   group-commit throughput measured in (1) for that engine; each is appended in its own task and
   its latency runs from the moment it was *due*, not from when the loop got round to starting it,
   so a stalled loop or writer shows up as latency instead of quietly lowering the offered rate
   (no coordinated omission). The generator wakes at most once per millisecond (uvloop's timer
   resolution) and starts every record due by then, as a server's event loop starts the requests
   one poll returned; it used to spin on zero-length sleeps and compete with the writer thread
   for the GIL. The first quarter second (at most 1 s) is warm-up and not counted. p50/p99/max
   are reported; the target is on p99.

3. **`verify_store` throughput.** The store is topped up to `--records` (default 200,000)
   through `AuditStore.append` in transactions of 5,000 (the production hashing, chaining and
   checkpoint signing, `checkpoint_every=1000`), every chain head is signed, and `verify_store`
   checks every chain end to end (each record re-hashed, every checkpoint signature verified),
   with its defaults, i.e. exactly as `vigil audit verify` runs: from 20,000 records on, chains
   are spread over one forked process per core (up to 4).
   Records/s = records verified / wall time. When a figure misses its target the script profiles
   it with cProfile in a separate run (so the timing is not inflated) and prints the hot spots.

Records look like the edge's (`vigil.edge.audit.build_record`): 8 dealers x {production,
sandbox} plus 5% anonymous 401s on the platform chain (17 chains), every field filled, a
`details` dict. Ids have the `new_id("aud")` shape but come from a counter behind a random
prefix, so the figures measure the audit path, not the id generator (identical on both sides of
every ratio). Every figure is checked against the database: a measured run must leave exactly one
row per append that returned, and verification must report every chain intact and every row.
Each throughput line also prints this process's CPU per record (all its threads; PostgreSQL's
server processes are not included): on a shared machine it moves far less than the rates do.

Other load on the machine skews everything here (fsync latency most of all): the load average
is printed before and after; trust a run only when it is low.

The event loop is uvloop when installed (what `vigil serve` runs on), else asyncio.

`--what-if` adds the same figures for the prototype fixes defined at the end of this file (a
faster `AuditStore.append`, a raw-DBAPI verifier, and that verifier spread over processes). They
were the measured case for the changes now shipped in `src/vigil/audit` and are kept for
comparison; the shipped code has since gone further than them; `--switch-interval` shows how much of
the latency is GIL hand-off between the event loop and the writer thread.

Exit status: 0 when every figure of the shipped code meets its target and every check holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import io
import json
import multiprocessing
import os
import platform
import pstats
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
for _p in (REPO / "src", REPO):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from sqlalchemy import Connection, bindparam, case, func, insert, select, update  # noqa: E402
from sqlalchemy.dialects import postgresql, sqlite  # noqa: E402

from vigil.audit import canonical  # noqa: E402
from vigil.audit.actions import AuditAction  # noqa: E402
from vigil.audit.jwks import public_key_from_jwk  # noqa: E402
from vigil.audit.log import AuditLog  # noqa: E402
from vigil.audit.proof import ChainReport, ChainVerifier  # noqa: E402
from vigil.audit.record import AuditRecord  # noqa: E402
from vigil.audit.sealing import Details  # noqa: E402
from vigil.audit.signing import AuditSigner  # noqa: E402
from vigil.audit.store import AuditStore, chain_of  # noqa: E402
from vigil.audit.verify import chain_ids, checkpoints_of, verify_store  # noqa: E402
from vigil.config import Settings  # noqa: E402
from vigil.core.clock import SystemClock  # noqa: E402
from vigil.encryption import Encryption, start_kms  # noqa: E402
from vigil.storage.db import Database  # noqa: E402
from vigil.storage.tables import audit_chain_heads, audit_events  # noqa: E402
from vigil.storage.types import UtcDateTime  # noqa: E402

PRODUCERS = 64
GROUP_TARGET = 20.0  # x one durable commit per record
P99_TARGET_MS = 5.0
VERIFY_TARGET = 100_000  # records/s
FILL_BATCH = 5_000
DEALERS = 8
KEY_AGE = timedelta(days=30)

# --------------------------------------------------------------------------------- records


class RecordFactory:
    """Records shaped like the edge's: several dealers and environments, a details dict."""

    ROUTES = (
        ("GET", "/v1/me", None),
        ("GET", "/v1/apps/{app_id}", "app"),
        ("POST", "/v1/alarms", None),
        ("GET", "/v1/alarms/{alarm_id}", "alarm"),
        ("POST", "/v1/alarms/{alarm_id}/video", "alarm"),
    )
    AGENT = "vigil-client/1.4.2 (python-httpx/0.28.1; +https://dealer.example/monitoring)"

    def __init__(self) -> None:
        rnd = random.Random(7)  # the same 8 dealers (17 chains) in every phase
        self.dealers = [f"dlr_{rnd.getrandbits(96):024x}" for _ in range(DEALERS)]
        self.apps = {d: f"app_{rnd.getrandbits(96):024x}" for d in self.dealers}
        self.keys = {d: f"key_{rnd.getrandbits(96):024x}" for d in self.dealers}
        self._prefix = secrets.token_hex(5)  # unique across factories and runs
        self._n = 0

    def make(self) -> AuditRecord:
        self._n += 1
        n = self._n
        now = datetime.now(UTC)
        rid = f"{self._prefix}{n:012d}"  # 22 characters, like new_id's base62 part
        ip = f"10.{n % 200}.{(n // 200) % 250}.{n % 7 + 1}"
        if n % 20 == 0:  # an anonymous refusal: platform chain
            return AuditRecord(
                id=f"aud_{rid}",
                occurred_at=now,
                action=AuditAction.AUTH_FAILED,
                result="401",
                actor_type="anonymous",
                request_id=f"req_{rid}",
                source_ip=ip,
                user_agent=self.AGENT,
                method="GET",
                details={"error": "invalid_api_key", "path": "/v1/me"},
            )
        dealer = self.dealers[n % DEALERS]
        env = "sandbox" if (n // DEALERS) % 4 == 0 else "production"
        method, route, target = self.ROUTES[n % len(self.ROUTES)]
        return AuditRecord(
            id=f"aud_{rid}",
            occurred_at=now,
            action=AuditAction.API_REQUEST,
            result="200" if method == "GET" else "201",
            actor_type="app",
            actor_id=self.apps[dealer],
            dealer_id=dealer,
            environment=env,
            app_id=self.apps[dealer],
            credential_id=self.keys[dealer],
            scope="alarms:write" if method == "POST" else "alarms:read",
            request_id=f"req_{rid}",
            source_ip=ip,
            user_agent=self.AGENT,
            method=method,
            route=route,
            target_type=target,
            target_id=f"{target}_{n:016x}" if target else None,
            details={"status": 200, "bytes": 512 + n % 977, "latency_ms": round(n % 89 / 7, 2)},
        )


# ---------------------------------------------------------------------------- environment


@dataclass
class Engine:
    name: str
    url: str
    home: Path
    db: Database = field(init=False)
    signer: AuditSigner = field(init=False)
    log: AuditLog = field(init=False)
    batches: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.db = Database(self.url)
        self.db.migrate()
        clock = SystemClock()
        self.signer = AuditSigner(self.keys_dir, clock, KEY_AGE)
        # Details sealed under the platform audit key, as `vigil serve` does (local KMS in this
        # run's home): the records' details dicts are not empty, so every record pays it.
        settings = Settings(home=self.home, database_url=self.url)
        self.log = AuditLog(self.db, self.signer, clock, checkpoint_every=1000)
        encryption = Encryption.build(settings, start_kms(settings), self.db, self.log, clock)
        self.log.seal_details(Details(encryption.audit_details))
        self.shipped_store = self.log.store
        self.use_store(self.shipped_store)

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys" / "audit"

    def use_store(self, store: AuditStore) -> None:
        """Put `store` behind the log, counting batch sizes (what group commit achieved)."""
        self.log.store = _Counted(store, self.batches)  # type: ignore[assignment]

    def rows(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())

    def close(self) -> None:
        self.log.close()
        self.db.dispose()


class _Counted:
    """An AuditStore that records each batch's size; one list append per batch."""

    def __init__(self, store: AuditStore, batches: list[int]) -> None:
        self._store, self._batches = store, batches

    def append(self, conn: Connection, records: Sequence[AuditRecord]) -> None:
        self._batches.append(len(records))
        self._store.append(conn, records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@contextlib.contextmanager
def engines(workdir: Path, with_pg: bool) -> Iterator[list[Engine]]:
    opened: list[Engine] = []
    cluster = None
    try:
        opened.append(Engine("SQLite", f"sqlite:///{workdir}/sqlite/vigil.db", workdir / "sq"))
        if with_pg:
            from tests.support.postgres import PostgresCluster

            cluster = PostgresCluster()
            url = cluster.create_database("vigil_bench")
            opened.append(Engine("PostgreSQL", url, workdir / "pg"))
        yield opened
    finally:
        for e in opened:
            with contextlib.suppress(Exception):
                e.close()
        if cluster is not None:
            cluster.stop()


def arun(coro: Any, loop: str) -> Any:
    """asyncio.run on the chosen event loop (Python 3.11 has no asyncio.run(loop_factory=))."""
    factory = asyncio.new_event_loop
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


# ----------------------------------------------------------------------------- measuring


@dataclass
class Throughput:
    label: str
    records: int
    seconds: float
    errors: int = 0
    mean_batch: float | None = None
    cpu: float = 0.0  # this process's CPU seconds (all threads) during the run

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_per_record_us(self) -> float:
        """Less sensitive to other load than the rate: what a record cost this process."""
        return self.cpu / max(1, self.records) * 1e6


def run_write_now(eng: Engine, threads: int, seconds: float) -> Throughput:
    """One durable commit per record: `write_now` in a loop on `threads` threads."""
    factory = RecordFactory()
    lock = threading.Lock()
    counts = [0] * threads
    errors = [0] * threads
    gate = threading.Barrier(threads + 1)
    deadline = 0.0

    def make() -> AuditRecord:
        with lock:
            return factory.make()

    def worker(i: int) -> None:
        gate.wait()
        while time.perf_counter() < deadline:
            try:
                eng.log.write_now(make())
                counts[i] += 1
            except Exception:
                errors[i] += 1

    before = eng.rows()
    cpu0 = time.process_time()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    gate.wait()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    written = eng.rows() - before
    assert written == sum(counts), f"{eng.name}: {sum(counts)} write_now calls, {written} rows"
    return Throughput(f"write_now x{threads}", sum(counts), elapsed, sum(errors), cpu=cpu)


async def _warm(eng: Engine) -> None:
    factory = RecordFactory()
    await asyncio.gather(*(eng.log.append(factory.make()) for _ in range(256)))


async def _group(eng: Engine, producers: int, seconds: float) -> tuple[int, float]:
    factory = RecordFactory()
    deadline = time.perf_counter() + seconds

    async def producer() -> int:
        n = 0
        while time.perf_counter() < deadline:
            await eng.log.append(factory.make())
            n += 1
        return n

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(producer() for _ in range(producers)))
    return sum(counts), time.perf_counter() - t0


def run_group(eng: Engine, producers: int, seconds: float, loop: str) -> Throughput:
    arun(_warm(eng), loop)
    before = eng.rows()
    eng.batches.clear()
    cpu0 = time.process_time()
    n, elapsed = arun(_group(eng, producers, seconds), loop)
    cpu = time.process_time() - cpu0
    batches = list(eng.batches)
    written = eng.rows() - before
    assert written == n, f"{eng.name}: {n} appends returned, {written} rows"
    mean = sum(batches) / max(1, len(batches))
    return Throughput(f"append x{producers} tasks", n, elapsed, mean_batch=mean, cpu=cpu)


@dataclass
class Latency:
    rate: float
    samples: list[float]  # seconds, from the due time until durable
    service: list[float]  # seconds, from the call until durable
    mean_batch: float = 0.0

    def pct(self, q: float, which: str = "samples") -> float:
        data: list[float] = sorted(self.samples if which == "samples" else self.service)
        k = min(len(data) - 1, max(0, round(q / 100 * len(data)) - 1))
        return data[k] * 1000


async def _open_loop(eng: Engine, rate: float, total: int, skip: int) -> Latency:
    factory = RecordFactory()
    loop = asyncio.get_running_loop()
    result = Latency(rate, [], [])
    tasks: set[asyncio.Task[None]] = set()

    async def one(k: int, due: float) -> None:
        record = factory.make()
        called = time.perf_counter()
        await eng.log.append(record)
        done = time.perf_counter()
        if k >= skip:
            result.samples.append(done - due)
            result.service.append(done - called)

    t0 = time.perf_counter() + 0.005
    i = 0
    while i < total:
        due_n = min(total, int((time.perf_counter() - t0) * rate) + 1)
        while i < due_n:
            task = loop.create_task(one(i, t0 + i / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        # At most one wake-up per millisecond, starting everything due by then: uvloop's timers
        # have millisecond resolution, so a shorter sleep returned at once and this generator
        # spun, holding the GIL the writer thread needs (it measured 10x the event loop's CPU
        # per record of the closed loop). Latency still counts from each record's due time, so
        # the wait for this wake-up is charged to the audit step, not hidden.
        await asyncio.sleep(max(0.001, t0 + i / rate - time.perf_counter()))
    while tasks:
        await asyncio.gather(*list(tasks))
    return result


def run_latency(eng: Engine, rate: float, seconds: float, loop: str) -> Latency:
    warmup = min(1.0, seconds / 4)
    total, skip = int(rate * (seconds + warmup)), int(rate * warmup)
    before = eng.rows()
    eng.batches.clear()
    result: Latency = arun(_open_loop(eng, rate, total, skip), loop)
    result.mean_batch = sum(eng.batches) / max(1, len(eng.batches))
    written = eng.rows() - before
    assert written == total, f"{eng.name}: {total} appends, {written} rows"
    return result


def fill(eng: Engine, target: int) -> tuple[int, float]:
    """Top the store up to `target` records through the shipped AuditStore.append."""
    have = eng.rows()
    factory = RecordFactory()
    t0 = time.perf_counter()
    while have < target:
        n = min(FILL_BATCH, target - have)
        records = [factory.make() for _ in range(n)]
        with eng.db.transaction() as conn:
            eng.shipped_store.append(conn, records)
        have += n
    eng.log.checkpoint_all()
    return have, time.perf_counter() - t0


@dataclass
class Verify:
    label: str
    records: int
    chains: int
    seconds: float
    cpu: float = 0.0  # CPU seconds of this process and of the worker processes it waited for

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def run_verify(
    eng: Engine, label: str, verifier: Callable[[], list[ChainReport]], expected: int
) -> Verify:
    cpu0 = _cpu_with_children()
    t0 = time.perf_counter()
    reports = verifier()
    elapsed = time.perf_counter() - t0
    cpu = _cpu_with_children() - cpu0
    bad = [str(r.problem) for r in reports if not r.ok]
    assert not bad, f"{eng.name} {label}: verification found problems: {bad}"
    n = sum(r.records for r in reports)
    assert n == expected, f"{eng.name} {label}: verified {n} records, the store holds {expected}"
    return Verify(label, n, len(reports), elapsed, cpu)


def _cpu_with_children() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def profile(fn: Callable[[], object], top: int = 18) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


# ---------------------------------------------------- what-if prototypes (NOT shipped code)
#
# Measured with --what-if so the fixes proposed for src/vigil/audit come with numbers. They
# write and check exactly the same rows and hashes as the shipped code: the run ends with the
# shipped verify_store passing over records written by FastStore, and fast_verify must agree
# with it record for record.

_ROW_ATTRS = (
    "id", "occurred_at", "actor_type", "actor_id", "dealer_id", "environment", "app_id",
    "credential_id", "scope", "request_id", "source_ip", "user_agent", "method", "route",
    "action", "target_type", "target_id", "result", "details",
)  # fmt: skip
_H = audit_chain_heads
_SELECT_HEADS = (
    select(_H.c.chain_id, _H.c.seq, _H.c.hash, _H.c.checkpointed_seq)
    .where(_H.c.chain_id.in_(bindparam("ids", expanding=True)))
    .order_by(_H.c.chain_id)
)
_UPDATE_HEAD = (
    update(_H)
    .where(_H.c.chain_id == bindparam("cid"))
    .values(
        seq=bindparam("new_seq"),
        hash=bindparam("new_hash"),
        # SET sees the old row: a chain with no unsigned record starts its pending clock now.
        pending_since=case(
            (_H.c.seq == _H.c.checkpointed_seq, bindparam("now", type_=UtcDateTime())),
            else_=_H.c.pending_since,
        ),
    )
)
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


def fast_timestamp(value: datetime) -> str:
    """canonical.timestamp without strftime (isoformat truncates to milliseconds too)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def fast_link(prev_hash: bytes, fields: dict[str, Any]) -> bytes:
    """canonical.link with one shared encoder instead of a new JSONEncoder per call."""
    ordered = [canonical.VERSION, *(fields[name] for name in canonical.FIELDS)]
    return hashlib.sha256(prev_hash + _ENCODE(ordered).encode()).digest()


class FastStore(AuditStore):
    """AuditStore.append with the three write-path fixes:

    * all of a batch's chain heads read (and on PostgreSQL locked, in chain order) by ONE
      `SELECT ... WHERE chain_id IN (...) ORDER BY chain_id`, heads created only when missing,
      and all heads moved by ONE executemany UPDATE: 2 statements per batch instead of 3 per
      chain in it (17 chains: 51 statements, each ~0.2 ms of SQLAlchemy statement building);
    * rows built with getattr instead of `dataclasses.replace(...).as_row()` (`asdict` deep-copies
      every field, the details dict included: ~100 us a record);
    * statements built once at import (no per-call cache-key generation), one shared JSON encoder,
      isoformat instead of strftime.
    """

    def append(self, conn: Connection, records: Sequence[AuditRecord]) -> None:
        by_chain: dict[str, list[AuditRecord]] = {}
        for record in records:
            by_chain.setdefault(chain_of(record), []).append(record)
        chains = sorted(by_chain)
        heads = self._lock_heads(conn, chains)
        now = self._clock.now()
        rows: list[dict[str, Any]] = []
        moves: list[dict[str, Any]] = []
        due: list[tuple[str, int, bytes]] = []
        for chain_id in chains:
            seq, prev, checkpointed = heads[chain_id]
            for record in by_chain[chain_id]:
                seq += 1
                row = {name: getattr(record, name) for name in _ROW_ATTRS}
                at = record.occurred_at
                at = at.replace(microsecond=at.microsecond // 1000 * 1000)
                row["occurred_at"], row["action"] = at, record.action.value
                row["chain_id"], row["chain_seq"], row["prev_hash"] = chain_id, seq, prev
                fields = dict(row)
                fields["occurred_at"] = fast_timestamp(at)
                prev = fast_link(prev, fields)
                row["hash"] = prev
                rows.append(row)
            moves.append({"cid": chain_id, "new_seq": seq, "new_hash": prev, "now": now})
            if seq - checkpointed >= self._every:
                due.append((chain_id, seq, prev))
        conn.execute(_UPDATE_HEAD, moves)
        for chain_id, seq, head in due:
            self._checkpoint(conn, chain_id, seq, head)
        if rows:
            conn.execute(insert(audit_events), rows)

    def _lock_heads(self, conn: Connection, chains: list[str]) -> dict[str, tuple[int, bytes, int]]:
        pg = conn.dialect.name == "postgresql"
        query = _SELECT_HEADS.with_for_update() if pg else _SELECT_HEADS

        def read(ids: list[str]) -> dict[str, tuple[int, bytes, int]]:
            result = conn.execute(query, {"ids": ids})
            return {r[0]: (int(r[1]), bytes(r[2]), int(r[3])) for r in result}

        heads = read(chains)
        missing = [c for c in chains if c not in heads]
        if missing:  # a chain's first record: rare, so one more round trip is fine
            dialect = postgresql if pg else sqlite
            conn.execute(
                dialect.insert(_H).on_conflict_do_nothing(),
                [
                    {"chain_id": c, "seq": 0, "hash": canonical.GENESIS, "checkpointed_seq": 0}
                    for c in missing
                ],
            )
            heads.update(read(missing))
        return heads


# Column names are the constant canonical.FIELDS; the chain id is always a bound parameter.
_CHAIN_ROWS = (
    f"SELECT {', '.join((*canonical.FIELDS, 'prev_hash', 'hash'))} "  # noqa: S608
    "FROM audit_events WHERE chain_id = %s ORDER BY chain_seq"
)


_I_SEQ, _I_CHAIN = canonical.FIELDS.index("chain_seq"), canonical.FIELDS.index("chain_id")


class FastChainVerifier(ChainVerifier):
    """ChainVerifier plus `feed_values`: the same checks on a FIELDS-ordered list.

    The happy path skips building a dict per record and looking its 21 fields up again; anything
    unusual (first record, gap, bad link, bad hash, checkpoint mismatch) falls through to `feed`,
    so problems are detected and worded exactly as the shipped verifier does.
    """

    def feed_values(self, values: list[Any], prev_hash: bytes, stored_hash: bytes) -> bool:
        r = self.report
        seq = values[_I_SEQ]
        if (
            r.problem is None
            and r.last_seq is not None
            and seq == r.last_seq + 1
            and values[_I_CHAIN] == self.chain_id
            and prev_hash == self._prev_hash
        ):
            encoded = _ENCODE([canonical.VERSION, *values]).encode()
            computed = hashlib.sha256(prev_hash + encoded).digest()
            signed = self._signed.get(seq)
            if computed == stored_hash and (signed is None or signed == computed):
                if signed is not None:
                    r.last_signed_seq = seq
                r.records += 1
                r.last_seq = seq
                self._prev_hash = computed
                return True
        return self.feed(dict(zip(canonical.FIELDS, values, strict=True)), prev_hash, stored_hash)


def fast_verify(url: str, keys_dir: Path, only: list[str] | None = None) -> list[ChainReport]:
    """verify_store on raw DBAPI rows: no SQLAlchemy row processing, no strftime, one encoder,
    no dict per record (FastChainVerifier), rows fetched 5,000 at a time.

    SQLite hands back `occurred_at` as the text SQLAlchemy stored ('YYYY-MM-DD HH:MM:SS.ffffff',
    UTC) and `details` as JSON text; PostgreSQL (psycopg) hands back an aware datetime and a dict.
    Anything not in the expected shape raises rather than being guessed at.
    """
    db = Database(url)
    signer = AuditSigner(keys_dir, SystemClock(), KEY_AGE)
    nf = len(canonical.FIELDS)
    i_at, i_details = canonical.FIELDS.index("occurred_at"), canonical.FIELDS.index("details")
    loads = json.loads
    reports = []
    try:
        with db.read() as conn:
            keys = {k["kid"]: public_key_from_jwk(k) for k in signer.jwks(conn)["keys"]}
            pg = conn.dialect.name == "postgresql"
            raw: Any = conn.connection.dbapi_connection
            for n, chain_id in enumerate(only if only is not None else chain_ids(conn, None)):
                head = conn.execute(select(_H.c.seq).where(_H.c.chain_id == chain_id)).scalar()
                verifier = FastChainVerifier(chain_id, keys, checkpoints_of(conn, chain_id))
                sql = _CHAIN_ROWS
                if pg:  # server-side cursor: a chain can be far larger than memory
                    cur = raw.cursor(name=f"verify_{n}")
                else:
                    cur = raw.cursor()
                    sql = sql.replace("%s", "?")
                cur.execute(sql, (chain_id,))
                feed = verifier.feed_values
                intact = True
                while intact and (rows := cur.fetchmany(5000)):
                    for row in rows:
                        values = list(row[:nf])
                        at = values[i_at]
                        if pg:
                            values[i_at] = fast_timestamp(at)
                        else:
                            if len(at) != 26 or at[10] != " " or at[19] != ".":
                                raise ValueError(f"unexpected stored timestamp {at!r}")
                            values[i_at] = f"{at[:10]}T{at[11:23]}Z"
                            values[i_details] = loads(values[i_details])
                        if not feed(values, bytes(row[nf]), bytes(row[nf + 1])):
                            intact = False
                            break
                cur.close()
                reports.append(verifier.finish(None if head is None else int(head)))
    finally:
        db.dispose()
    return reports


def _verify_part(args: tuple[str, Path, list[str]]) -> list[ChainReport]:
    return fast_verify(*args)


def fast_verify_parallel(eng: Engine, workers: int) -> list[ChainReport]:
    """fast_verify with chains spread over `workers` processes (chains are independent)."""
    with eng.db.read() as conn:
        sizes = dict(conn.execute(select(_H.c.chain_id, _H.c.seq)).all())
        ids = chain_ids(conn, None)
    parts: list[list[str]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for chain_id in sorted(ids, key=lambda c: -int(sizes.get(c) or 0)):
        k = loads.index(min(loads))
        parts[k].append(chain_id)
        loads[k] += int(sizes.get(chain_id) or 0)
    ctx = multiprocessing.get_context("fork")  # children open their own engine
    with ctx.Pool(workers) as pool:
        results = pool.map(_verify_part, [(eng.url, eng.keys_dir, p) for p in parts if p])
    return [r for part in results for r in part]


# -------------------------------------------------------------------------------- report


@dataclass
class Row:
    engine: str
    figure: str
    value: str
    baseline: str
    ratio: str
    target: str
    ok: bool


def machine() -> str:
    model = platform.processor() or "?"
    with contextlib.suppress(Exception):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def table(rows: list[Row]) -> str:
    head = ("engine", "figure", "value", "baseline", "ratio", "target", "result")
    body = [
        (r.engine, r.figure, r.value, r.baseline, r.ratio, r.target, "PASS" if r.ok else "FAIL")
        for r in rows
    ]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    fmt = "| " + " | ".join(f"{{:{w}}}" for w in widths) + " |"
    lines = [fmt.format(*head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt.format(*b) for b in body]
    return "\n".join(lines)


CEILING_TABLE = "bench_ceiling"
CEILING_BIG_BATCH = 1024


def database_ceiling(eng: Engine, batch: int, seconds: float) -> tuple[float, float, float]:
    """(rows/s with one durable commit per row, in durable batches of `batch`, and in batches
    of CEILING_BIG_BATCH, sixteen times the producers the target names): the
    database ALONE, what no application code can beat. Raw driver, a scratch copy of
    `audit_events` with the same columns and indexes (SQLite: SQLCipher, WAL,
    `synchronous=FULL`, Vigil's own keyed connection; PostgreSQL: `COPY`, its fastest bulk
    path), and rows cloned from a real stored record (sealed details included), each with a
    fresh id, request id and chain position, so every index grows as it does for Vigil. No
    hashing, no chain heads, no checkpoints: the ratio of these two rates is the most any
    group commit can gain over one commit per record on this database and disk."""
    cols = [c.name for c in audit_events.columns if c.name != "seq"]
    at = {c: i for i, c in enumerate(cols)}
    pg = eng.db.engine.dialect.name == "postgresql"
    raw = eng.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(f"SELECT {', '.join(cols)} FROM audit_events ORDER BY seq DESC LIMIT 1")  # noqa: S608
        found = cur.fetchone()
        if found is None:
            raise SystemExit("no stored audit record to clone for the ceiling")
        template = list(found)
        if pg:
            from psycopg.types.json import Json

            template[at["details"]] = Json(template[at["details"]])
        if pg:
            cur.execute(f"DROP TABLE IF EXISTS {CEILING_TABLE}")
            cur.execute(f"CREATE TABLE {CEILING_TABLE} (LIKE audit_events INCLUDING ALL)")
        else:
            cur.execute(f"DROP TABLE IF EXISTS {CEILING_TABLE}")
            cur.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'audit_events' AND sql "
                "IS NOT NULL AND type IN ('table', 'index')"
            )
            for (ddl,) in cur.fetchall():
                cur.execute(
                    ddl.replace("audit_events", CEILING_TABLE).replace(
                        "CREATE INDEX ix_", "CREATE INDEX ceiling_ix_"
                    )
                )
        raw.commit()
        prefix = secrets.token_hex(5)
        n = 0

        def rows(k: int) -> list[list[Any]]:
            nonlocal n
            out = []
            for _ in range(k):
                n += 1
                row = list(template)
                row[at["id"]] = f"aud_{prefix}{n:012d}"
                row[at["request_id"]] = f"req_{prefix}{n:012d}"
                row[at["chain_seq"]] = n
                out.append(row)
            return out

        insert_sql = (
            f"INSERT INTO {CEILING_TABLE} ({', '.join(cols)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * len(cols))})"
        )

        def write(part: list[list[Any]]) -> None:
            if pg:
                with cur.copy(f"COPY {CEILING_TABLE} ({', '.join(cols)}) FROM STDIN") as copy:
                    for row in part:
                        copy.write_row(row)
                raw.commit()  # durable: synchronous_commit=on
            else:
                # Vigil's SQLCipher connections are in autocommit mode (isolation_level=None):
                # without an explicit transaction every row would be its own commit.
                cur.execute("BEGIN")
                cur.executemany(insert_sql, part)
                cur.execute("COMMIT")  # durable: synchronous=FULL

        rates = []
        for size in (1, batch, CEILING_BIG_BATCH):
            done, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                write(rows(size))
                done += size
            rates.append(done / (time.perf_counter() - t0))
        cur.execute(f"DROP TABLE {CEILING_TABLE}")
        raw.commit()
        return rates[0], rates[1], rates[2]
    finally:
        raw.close()


def measure_commits(
    eng: Engine,
    args: argparse.Namespace,
    label: str,
    rows: list[Row],
    context: list[str] | None = None,
) -> None:
    """Figures 1 and 2 with whatever store is behind the log; for the shipped store, also the
    database's own ceiling for figure 1 (into `context`)."""
    context = [] if context is None else context
    best: dict[str, Throughput] = {}
    for rnd in range(args.rounds):
        for kind in ("x1", "x64", "group"):
            if kind == "group":
                t = run_group(eng, PRODUCERS, args.seconds, args.loop)
            else:
                t = run_write_now(eng, 1 if kind == "x1" else PRODUCERS, args.seconds)
            extra = f", {t.cpu_per_record_us:.0f} us CPU/record in this process"
            extra += f", mean batch {t.mean_batch:.1f}" if t.mean_batch else ""
            extra += f", {t.errors} ERRORS" if t.errors else ""
            print(
                f"  {label}round {rnd + 1}: {t.label:<18} {t.rate:>9,.0f} rec/s "
                f"({t.records:,} in {t.seconds:.2f} s{extra})",
                flush=True,
            )
            if t.label not in best or t.rate > best[t.label].rate:
                best[t.label] = t
    group = best[f"append x{PRODUCERS} tasks"]
    bases = [t for k, t in best.items() if k.startswith("write_now")]
    base = max(bases, key=lambda t: t.rate)
    ratio = group.rate / base.rate
    rows.append(
        Row(
            eng.name,
            f"{label}durable rec/s, group commit, {PRODUCERS} producers",
            f"{group.rate:,.0f}",
            f"{base.rate:,.0f} ({base.label})",
            f"{ratio:.1f}x",
            f">= {GROUP_TARGET:g}x",
            ratio >= GROUP_TARGET and not any(t.errors for t in bases),
        )
    )
    if not label:  # the shipped store's run: what the database alone allows, same shape
        batch = max(1, round(group.mean_batch or 1))
        single, batched, big = database_ceiling(eng, batch, args.seconds)
        line = (
            f"database alone (raw driver, same rows and indexes, no Vigil code): one commit "
            f"per row {single:,.0f} rows/s, batches of {batch} (Vigil's mean) {batched:,.0f} "
            f"rows/s = {batched / single:.1f}x, batches of {CEILING_BIG_BATCH} {big:,.0f} "
            f"rows/s = {big / single:.1f}x; Vigil {ratio:.1f}x"
        )
        print(f"  {line}", flush=True)
        context.append(f"{eng.name}: {line}")
    rate = group.rate / 2
    lat = run_latency(eng, rate, args.seconds, args.loop)
    p50, p99, pmax = lat.pct(50), lat.pct(99), lat.pct(100)
    print(
        f"  {label}open loop at {rate:,.0f} rec/s: {len(lat.samples):,} appends, p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms, max {pmax:.2f} ms (from the call: p50 {lat.pct(50, 'service'):.2f}, "
        f"p99 {lat.pct(99, 'service'):.2f} ms), mean batch {lat.mean_batch:.1f}",
        flush=True,
    )
    rows.append(
        Row(
            eng.name,
            f"{label}append latency p99 at {rate:,.0f} rec/s (1/2 sat.)",
            f"{p99:.2f} ms",
            f"p50 {p50:.2f} ms",
            "-",
            f"<= {P99_TARGET_MS:g} ms",
            p99 <= P99_TARGET_MS,
        )
    )


def verify_row(eng: Engine, label: str, v: Verify) -> Row:
    print(
        f"  {label}: {v.records:,} records on {v.chains} chains in {v.seconds:.2f} s "
        f"= {v.rate:,.0f} rec/s ({v.cpu / max(1, v.records) * 1e6:.1f} us CPU/record in this "
        "process and its workers; PostgreSQL's server not included)",
        flush=True,
    )
    return Row(
        eng.name,
        f"{label} rec/s ({v.records:,} records)",
        f"{v.rate:,.0f}",
        "-",
        "-",
        f">= {VERIFY_TARGET:,}",
        v.rate >= VERIFY_TARGET,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measured run")
    ap.add_argument("--quick", action="store_true", help="1 round, 2 s runs, 50,000 records")
    ap.add_argument("--records", type=int, default=200_000, help="records to verify")
    ap.add_argument("--rounds", type=int, default=2, help="alternating baseline/group rounds")
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default=None)
    ap.add_argument("--profile", action="store_true", help="profile verify even when it passes")
    ap.add_argument("--what-if", action="store_true", help="also measure the prototype fixes")
    ap.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval in ms for the whole run (CPython default 5): how long the "
        "writer thread can wait for the GIL while the event loop holds it",
    )
    args = ap.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval / 1000)
    if args.quick:
        args.seconds, args.rounds = min(args.seconds, 2.0), 1
        args.records = min(args.records, 50_000)
    if args.loop is None:
        try:
            import uvloop  # noqa: F401

            args.loop = "uvloop"
        except ImportError:
            args.loop = "asyncio"

    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"run: {args.seconds:g} s per measurement, {args.rounds} round(s), {PRODUCERS} producers, "
        f"event loop {args.loop}, GIL switch interval {sys.getswitchinterval() * 1000:g} ms, "
        f"{args.records:,} records to verify; load average {loadavg()}\n",
        flush=True,
    )
    rows: list[Row] = []
    what_if: list[Row] = []
    context: list[str] = []
    profiles: list[tuple[str, str]] = []
    with (
        tempfile.TemporaryDirectory(prefix="vigil-bench-audit-") as tmp,
        engines(Path(tmp), not args.no_postgres) as engs,
    ):
        for eng in engs:
            print(f"== {eng.name}", flush=True)
            measure_commits(eng, args, "", rows, context)
            if args.what_if:
                eng.use_store(FastStore(eng.signer, SystemClock(), 1000))
                measure_commits(eng, args, "what-if FastStore: ", what_if)
                eng.use_store(eng.shipped_store)
            have, fill_s = fill(eng, args.records)
            print(f"  filled to {have:,} records ({fill_s:.1f} s)", flush=True)
            shipped = partial(verify_store, eng.db, eng.signer, details=eng.log.details)
            v = run_verify(eng, "verify_store", shipped, have)
            rows.append(verify_row(eng, "verify_store", v))
            if v.rate < VERIFY_TARGET or args.profile:
                profiles.append((f"{eng.name} verify_store", profile(shipped)))
            if args.what_if:
                workers = os.cpu_count() or 1
                for label, fn in (
                    ("what-if fast_verify", partial(fast_verify, eng.url, eng.keys_dir)),
                    (
                        f"what-if fast_verify x{workers} processes",
                        partial(fast_verify_parallel, eng, workers),
                    ),
                ):
                    what_if.append(verify_row(eng, label, run_verify(eng, label, fn, have)))
            print(flush=True)

    print(f"load average after: {loadavg()}\n")
    print(table(rows))
    if context:
        print("\nThe database's own ceiling for group commit (context, not a target):")
        print("\n".join(f"- {line}" for line in context))
    if what_if:
        print("\nWhat-if (prototype fixes in this file, NOT the shipped code):")
        print(table(what_if))
    for title, text in profiles:
        print(f"\ncProfile, {title} (top by own time):\n{text}")
    ok = all(r.ok for r in rows)
    print(f"\n{'ALL PASS' if ok else 'SOME TARGETS MISSED'} (shipped code)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
