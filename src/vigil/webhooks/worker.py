"""The delivery worker: fan out new events, claim due messages, post them, record the results.

It runs inside `vigil serve` by default and on its own as `vigil worker`; several may run at
once against PostgreSQL (see `claims.py`). Database work runs in threads, HTTP on the event loop,
and up to `concurrency` deliveries are in flight at any time: a slow receiver holds one slot,
not the whole batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from datetime import datetime, timedelta

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from vigil.audit.log import AuditLog
from vigil.core.clock import Clock
from vigil.core.ids import new_id
from vigil.crypto.fields import FieldCipher
from vigil.storage.db import Database
from vigil.webhooks import claims, fanout
from vigil.webhooks.claims import Job, Result
from vigil.webhooks.signing import headers
from vigil.webhooks.transport import Transport

log = logging.getLogger("vigil.webhooks")

SWEEP_SECONDS = 5.0  # how often a worker looks for events committed out of seq order
IDLE_POLL = 0.02  # seconds between looks at an idle queue: the commit-to-receiver latency floor


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        clock: Clock,
        transport: Transport,
        secrets: FieldCipher,
        records: FieldCipher,
        *,
        concurrency: int = 64,
        lease: timedelta = claims.LEASE,
        rand: random.Random | None = None,
    ) -> None:
        self._db, self._audit, self._clock, self._transport = db, audit, clock, transport
        self._secrets, self._records = secrets, records
        self._concurrency, self._lease = concurrency, lease
        self._rand = rand
        self._after = 0  # highest event seq this worker fanned out (the hot path's cursor)
        self._next_sweep = 0.0
        self.name = f"webhook-worker:{socket.gethostname()}:{os.getpid()}:{new_id('w')[-6:]}"

    # -- one pass, for tests with an injected clock -------------------------------------------
    async def run_once(self) -> int:
        """Fan out, deliver everything due now, record it; returns the attempts made."""
        await asyncio.to_thread(self._fan_out)
        total = 0
        while True:
            jobs, unusable = await asyncio.to_thread(self._claim, self._concurrency)
            if not jobs and not unusable:
                return total
            results = await asyncio.gather(*(self._deliver(job) for job in jobs))
            await asyncio.to_thread(self._record, list(results) + unusable)
            total += len(jobs) + len(unusable)

    # -- the long-running loop -----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Each turn is ONE transaction (`_tick`): record what finished, fan out new events,
        claim as many due messages as there are free slots. One commit per turn, not three,
        is what keeps a durable database (synchronous=FULL, fsync on commit) off the hot path."""
        in_flight: set[asyncio.Task[Result]] = set()
        finished: list[Result] = []
        while not stop.is_set() or in_flight or finished:
            try:
                free = 0 if stop.is_set() else self._concurrency - len(in_flight)
                # Claim in chunks: a turn per completed delivery would commit per message.
                if finished or not in_flight or free >= max(1, self._concurrency // 4):
                    batch, finished = finished, []
                    try:
                        jobs, unusable = await asyncio.to_thread(self._tick, batch, free)
                    except Exception:
                        finished = batch + finished  # recorded on the next turn, not lost
                        raise
                    finished.extend(unusable)  # failed before sending: recorded next turn
                    in_flight.update(asyncio.create_task(self._deliver(job)) for job in jobs)
                if in_flight:
                    done, in_flight = await asyncio.wait(
                        in_flight, timeout=IDLE_POLL, return_when=asyncio.FIRST_COMPLETED
                    )
                    finished.extend(t.result() for t in done)
                elif not stop.is_set():
                    await _sleep_unless(stop, IDLE_POLL)
            except Exception:  # a database hiccup must not stop deliveries for good
                log.exception("webhook worker turn failed; retrying")
                await _sleep_unless(stop, 1.0)
        await self._transport.close()

    def _tick(self, results: list[Result], free: int) -> tuple[list[Job], list[Result]]:
        if not results and free <= 0:
            return [], []
        sealers = claims.sealers_for(results, self._records)  # key lookups before the lock
        now = self._clock.now()
        try:
            with self._db.transaction() as conn:
                if results:
                    records = claims.record(conn, results, now, self.name, sealers, self._rand)
                    self._audit.store.append(conn, records)
                if free <= 0:
                    return [], []
                self._fan_out_in(conn, now)
                jobs = claims.claim(conn, now, free, self._lease)
        except Exception:
            self._audit.signer.forget()  # a key made in the rolled-back checkpoint is gone too
            raise
        # After the commit: no key lookup under the lock.
        return claims.unseal(jobs, self._secrets, self._records, self._clock.now())

    # -- steps -----------------------------------------------------------------------------------
    def _fan_out(self) -> None:
        self._next_sweep = 0.0
        while True:
            with self._db.transaction() as conn:
                if self._fan_out_in(conn, self._clock.now()) < fanout.BATCH:
                    return

    def _fan_out_in(self, conn: Connection, now: datetime) -> int:
        """Fan out inside a savepoint: when another worker fanned out the same events first (a
        unique-key refusal), only the fan-out is undone, never the results recorded before it.
        Every `SWEEP_SECONDS` it looks past the platform watermark instead of its own cursor."""
        after = self._after
        sweep = time.monotonic() >= self._next_sweep
        try:
            with conn.begin_nested():
                if sweep:
                    after = fanout.advance_watermark(conn, now)
                    self._next_sweep = time.monotonic() + SWEEP_SECONDS
                count, highest = fanout.fan_out(conn, now, after)
        except IntegrityError:
            return 0  # nothing is lost: those events are someone else's now
        self._after = max(self._after, highest)
        return count

    def _claim(self, limit: int) -> tuple[list[Job], list[Result]]:
        with self._db.transaction() as conn:
            jobs = claims.claim(conn, self._clock.now(), limit, self._lease)
        return claims.unseal(jobs, self._secrets, self._records, self._clock.now())

    async def _deliver(self, job: Job) -> Result:
        at = self._clock.now()
        sent = headers(job.secrets, job.message_id, int(at.timestamp()), job.body)
        outcome = await self._transport.post(job.url, job.body, sent, job.ca_bundle)
        return Result(job, outcome, at)

    def _record(self, results: list[Result]) -> None:
        sealers = claims.sealers_for(results, self._records)
        now: datetime = self._clock.now()
        with self._db.transaction() as conn:
            records = claims.record(conn, results, now, self.name, sealers, self._rand)
            self._audit.store.append(conn, records)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return
