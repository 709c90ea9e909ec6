"""The delivery worker: fan out new events, claim due messages, post them, record the results.

It runs inside `vigil serve` by default and on its own as `vigil worker`; several may run at
once against PostgreSQL (see `claims.py`). Database work runs in threads, HTTP on the event loop,
and up to `concurrency` deliveries are in flight at any time: a slow receiver holds one slot,
not the whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from vigil.audit.log import AuditLog
from vigil.core.clock import Clock
from vigil.core.ids import new_id
from vigil.crypto.fields import FieldCipher
from vigil.events.outbox import OUTBOX_TOPIC
from vigil.storage.db import Database
from vigil.webhooks import claims, fanout
from vigil.webhooks.claims import Job, Result
from vigil.webhooks.signing import headers
from vigil.webhooks.transport import Transport

log = logging.getLogger("vigil.webhooks")

SWEEP_SECONDS = 5.0  # how often a worker looks for events committed out of seq order
EXPIRED_LOOK_SECONDS = 1.0  # how often a worker's turn looks for messages whose lease ran out
# How often a turn claims due messages before fanning out new events (otherwise after, with the
# slots the new events left free: a claim that finds nothing is a round trip per turn).
DUE_LOOK_SECONDS = 0.1
PREFETCH = 3  # in flight plus claimed ahead, as a multiple of the concurrency
IDLE_POLL = 0.02
# An idle worker looks less and less often, up to this. Events committed in this process
# (`vigil serve`'s worker) wake it at once; a separate `vigil worker` finds them within this.
IDLE_POLL_MAX = 0.1
# Between two turns the database is left alone this long: turns no longer wait for deliveries,
# and back to back they would keep SQLite's one write lock from another process's worker.
TURN_REST = 0.005  # seconds between looks at an idle queue: the commit-to-receiver latency floor


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
        self._chunk = max(1, concurrency // 4)
        # Messages in flight plus claimed ahead: when a turn is slow (a loaded database), the
        # deliveries completed meanwhile make the next turn bigger, not the slots idle.
        self._ahead = PREFETCH * concurrency
        # How long a claimed message may wait in the buffer: its lease must still cover a
        # whole request (the timeout) and recording it, with room to spare.
        self._start_by = max(0.0, (lease.total_seconds() - transport.timeout_seconds) / 2)
        self._conn: Connection | None = None
        self._next_expired_look = 0.0
        self._next_due_look = 0.0
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
        claim due messages. One commit per turn, not three, is what keeps a durable database
        (synchronous=FULL, fsync on commit) off the hot path.

        The turn runs in a thread *while* deliveries go on: it claims up to twice `concurrency`
        messages ahead of the free slots (`ready`), so the slots are refilled from that buffer
        the moment a delivery ends instead of idling through the next turn's round trips. A
        buffered message is only started while its lease still outlasts a whole request
        (`_start_by`); one left over is not sent by this worker and its lease runs out, as if
        the worker had died (at least once, same `webhook-id`)."""
        in_flight: set[asyncio.Task[Result]] = set()
        ready: deque[tuple[float, Job]] = deque()
        finished: list[Result] = []
        turn: asyncio.Task[tuple[list[Job], list[Result]]] | None = None
        recording: list[Result] = []
        claiming = wakes = wakes_before = 0
        quiet_until = 0.0  # after a turn that found nothing, claim again no sooner than this
        idle = IDLE_POLL  # how long that is: doubles while nothing comes, up to IDLE_POLL_MAX
        next_turn = 0.0  # no turn before this: a short rest after each, a longer one on failure
        loop = asyncio.get_running_loop()
        # What the loop waits for (a turn ends, a delivery ends while no turn runs, an event is
        # committed in this process, the stop) sets `progress` from a callback. Waiting on
        # every task in flight (`asyncio.wait`) cost a callback added to and removed from each
        # of them at every turn of the loop, i.e. per delivery.
        progress = asyncio.Event()
        woken = asyncio.Event()  # an event committed in this process: look now
        completed: list[asyncio.Task[Result]] = []

        def on_commit() -> None:
            woken.set()
            progress.set()

        def wake() -> None:
            loop.call_soon_threadsafe(on_commit)

        def delivered(task: asyncio.Task[Result]) -> None:
            """A delivery ended: its slot is refilled from `ready` right here, and the loop is
            woken only when a turn may start (while one runs, results just collect)."""
            if task.cancelled() or task.exception() is not None:
                completed.append(task)  # raised by the loop, as it always was
                progress.set()
                return
            in_flight.discard(task)
            finished.append(task.result())
            self._start_ready(ready, in_flight, delivered)
            if turn is None:
                progress.set()

        def happened(_: object) -> None:
            progress.set()

        unsubscribe = self._db.subscribe(OUTBOX_TOPIC, wake)
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(happened)
        log.info("webhook worker %s started", self.name)
        try:
            while True:
                progress.clear()  # callbacks only run while this awaits: nothing is missed
                if woken.is_set():
                    woken.clear()
                    wakes += 1
                    quiet_until, idle = 0.0, IDLE_POLL
                if completed:
                    for delivery in completed:
                        in_flight.discard(delivery)
                        finished.append(delivery.result())
                    completed.clear()
                if turn is not None and turn.done():
                    ended, turn = turn, None
                    try:
                        jobs, unusable = ended.result()
                    except Exception:  # a database hiccup must not stop deliveries for good
                        log.exception("webhook worker turn failed; retrying")
                        finished = recording + finished  # recorded next turn, not lost
                        next_turn = time.monotonic() + 1.0
                    else:
                        next_turn = time.monotonic() + TURN_REST
                        finished.extend(unusable)  # failed before sending: recorded next turn
                        start_by = time.monotonic() + self._start_by
                        ready.extend((start_by, job) for job in jobs)
                        if jobs:
                            idle = IDLE_POLL
                        elif claiming and wakes == wakes_before and not woken.is_set():
                            # (an event committed while this turn ran may be past its claim)
                            quiet_until = time.monotonic() + idle
                            idle = min(idle * 2, IDLE_POLL_MAX)
                self._start_ready(ready, in_flight, delivered)
                stopping = stop.is_set()
                now = time.monotonic()
                wanted = 0 if stopping else self._ahead - len(in_flight) - len(ready)
                # Claim in chunks: a turn per completed delivery would commit per message.
                worth = wanted > 0 and (wanted >= self._chunk or not in_flight)
                claim = wanted > 0 and now >= quiet_until
                if turn is None and now >= next_turn and (finished or (claim and worth)):
                    recording, finished = finished, []
                    claiming, wakes_before = (wanted if claim else 0), wakes
                    turn = asyncio.create_task(asyncio.to_thread(self._tick, recording, claiming))
                    turn.add_done_callback(happened)
                elif turn is None and stopping and not (in_flight or ready or finished):
                    return
                # A turn, a delivery, a commit or the stop ends the wait, or else the moment
                # the next turn may start.
                timer = None
                if turn is None and (finished or worth):
                    at = next_turn if finished else max(next_turn, quiet_until)
                    timer = loop.call_later(min(max(at - now, 0.001), IDLE_POLL_MAX), progress.set)
                await progress.wait()
                if timer is not None:
                    timer.cancel()
        finally:
            unsubscribe()
            stopper.cancel()
            self._drop_connection()
            await self._transport.close()

    def _start_ready(
        self,
        ready: deque[tuple[float, Job]],
        in_flight: set[asyncio.Task[Result]],
        done: Callable[[asyncio.Task[Result]], None],
    ) -> None:
        now = time.monotonic()
        while ready and len(in_flight) < self._concurrency:
            start_by, job = ready.popleft()
            if now > start_by:  # its lease might run out mid-request: leave it to the lease
                log.warning(
                    "webhook message %s waited too long to start; left to its lease", job.message_id
                )
                continue
            task = asyncio.create_task(self._deliver(job))
            task.add_done_callback(done)
            in_flight.add(task)

    def _tick(self, results: list[Result], free: int) -> tuple[list[Job], list[Result]]:
        if not results and free <= 0:
            return [], []
        sealers = claims.sealers_for(results, self._records)  # key lookups before the lock
        self._audit.prepare_write()  # so is the audit details key's top-up
        now = self._clock.now()
        try:
            with self._transaction() as conn:
                if results:
                    records = claims.record(conn, results, now, self.name, sealers, self._rand)
                    self._audit.store.append(conn, records)
                if free <= 0:
                    return [], []
                # Fan out as many new events as there are free slots, their messages leased to
                # this worker as they are written (no claim reads and updates them again), then
                # claim due messages (retries, replays, a dead worker's) for the slots left.
                # So that a steady stream of new events cannot hold those back, due messages
                # are claimed FIRST at least every DUE_LOOK_SECONDS.
                jobs: list[claims.Job] = []
                due_first = time.monotonic() >= self._next_due_look
                if due_first:
                    jobs = self._claim_due(conn, now, free)
                if free > len(jobs):
                    room = free - len(jobs)
                    _, fresh = self._fan_out_step(conn, now, claim=room, batch=room)
                    jobs += claims.fanned_out_jobs(fresh, now)
                if free > len(jobs) and not due_first:
                    jobs += self._claim_due(conn, now, free - len(jobs))
        except Exception:
            self._audit.signer.forget()  # a key made in the rolled-back checkpoint is gone too
            self._drop_connection()
            raise
        # After the commit: no key lookup under the lock.
        return claims.unseal(jobs, self._secrets, self._records, self._clock.now())

    def _claim_due(self, conn: Connection, now: datetime, limit: int) -> list[claims.Job]:
        self._next_due_look = time.monotonic() + DUE_LOOK_SECONDS
        # Messages whose worker died are looked for once a second, not every turn: their
        # lease already kept them waiting for a minute.
        expired = time.monotonic() >= self._next_expired_look
        if expired:
            self._next_expired_look = time.monotonic() + EXPIRED_LOOK_SECONDS
        return claims.claim(conn, now, limit, self._lease, expired=expired)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """The turn's transaction on the worker's own connection, kept between turns: a pool
        checkout per turn costs PostgreSQL's pre-ping round trip. Only one turn runs at a time,
        so the connection is never shared; one that failed is dropped and opened anew."""
        with self._db.write_lock():
            if self._conn is None:
                self._conn = self._db.engine.connect().execution_options(vigil_write=True)
            with self._conn.begin():
                yield self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    # -- steps -----------------------------------------------------------------------------------
    def _fan_out(self) -> None:
        self._next_sweep = 0.0
        while True:
            with self._db.transaction() as conn:
                if self._fan_out_in(conn, self._clock.now()) < fanout.BATCH:
                    return

    def _fan_out_in(self, conn: Connection, now: datetime) -> int:
        """Fan out up to `fanout.BATCH` events; returns how many."""
        return self._fan_out_step(conn, now)[0]

    def _fan_out_step(
        self, conn: Connection, now: datetime, claim: int = 0, batch: int = fanout.BATCH
    ) -> tuple[int, list[dict[str, Any]]]:
        """Fan out inside a savepoint: when another worker fanned out the same events first (a
        unique-key refusal), only the fan-out is undone, never the results recorded before it.
        Every `SWEEP_SECONDS` it looks past the platform watermark instead of its own cursor.
        Up to `batch` events; returns (events handled, messages leased to this worker: up to
        `claim`)."""
        after = self._after
        try:
            if time.monotonic() >= self._next_sweep:
                with conn.begin_nested():
                    after = fanout.advance_watermark(conn, now)
                self._next_sweep = time.monotonic() + SWEEP_SECONDS
            # Looking costs one statement; the savepoint (two more round trips on PostgreSQL)
            # is only taken when there is something to fan out.
            events = fanout.waiting(conn, after, batch)
            if not events:
                return 0, []
            with conn.begin_nested():
                count, highest, leased = fanout.fan_out_events(
                    conn, now, events, after, claim=claim, lease_until=now + self._lease
                )
        except IntegrityError:
            return 0, []  # nothing is lost: those events are someone else's now
        self._after = max(self._after, highest)
        return count, leased

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
        self._audit.prepare_write()
        now: datetime = self._clock.now()
        with self._db.transaction() as conn:
            records = claims.record(conn, results, now, self.name, sealers, self._rand)
            self._audit.store.append(conn, records)
