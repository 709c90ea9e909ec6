"""The audit service: the single way records are written (S14, S15, S16).

Callers either append a record on its own (API calls, failures: durable before the response is
released) or write it inside their own transaction (state changes: the change and its record
commit together). Either way the record is linked onto its dealer's hash chain.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Coroutine, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from vigil.audit.record import AuditRecord
from vigil.audit.sealing import PLAINTEXT, Details
from vigil.audit.signing import AuditSigner
from vigil.audit.store import AuditStore
from vigil.audit.writer import GroupCommitWriter
from vigil.core.clock import Clock
from vigil.storage.db import Database


class AuditLog:
    def __init__(
        self,
        db: Database,
        signer: AuditSigner,
        clock: Clock,
        *,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        details: Details = PLAINTEXT,
    ) -> None:
        """`details` seals records' details at rest under the platform audit key (the
        services pass one; bare stores in tests and benchmarks may keep plaintext)."""
        self._db = db
        self.signer = signer
        self.details = details
        self.store = AuditStore(signer, clock, checkpoint_every, details)
        self._checkpoint_age = timedelta(seconds=checkpoint_seconds)
        self._writer = GroupCommitWriter(
            self._write_group, tick=self.checkpoint_stale, tick_seconds=min(5.0, checkpoint_seconds)
        )
        # The writer thread's own connection, kept between batches: a pool checkout per batch
        # (with PostgreSQL's pre-ping round trip and the reset on return) cost more than
        # linking a dozen records.
        self._group_conn: Connection | None = None

    def seal_details(self, details: Details) -> None:
        """Seal details from now on (the composition root wires the platform audit key in once
        encryption is built: encryption records the keys it makes in this log). Loads the key
        at once, outside any transaction (see `vigil.encryption.AuditDetailsSealer`)."""
        self.details = details
        self.store.details = details
        details.ready()

    def prepare_write(self) -> None:
        """Call before opening a transaction that will `write_in` records from a thread of its
        own: tops up the details key outside it (see `seal_details`)."""
        self.details.ready()

    def write_in(self, conn: Connection, record: AuditRecord) -> None:
        """Write `record` in the caller's transaction: it commits with the change it describes."""
        self.store.append(conn, [record])

    def write_now(self, record: AuditRecord) -> None:
        """Write and commit `record` synchronously (CLI and other one-off callers)."""
        self.details.ready()
        self._write_batch([record])

    def append(self, record: AuditRecord) -> Coroutine[Any, Any, None]:
        """Await it: it returns once `record` is durable; concurrent callers share one commit.
        (The writer's coroutine itself, without a second one wrapped around it per request.)"""
        return self._writer.append(record)

    def checkpoint_stale(self) -> int:
        """Sign chains whose newest records have waited longer than the checkpoint interval.
        (The writer's idle tick: also keeps the details key ready for `write_in` callers.)"""
        self.details.ready()
        with self._db.transaction() as conn:
            return self.store.checkpoint_stale(conn, self._checkpoint_age)

    def checkpoint_all(self) -> int:
        """Sign every chain's head now (shutdown, exports, verification runs)."""
        from sqlalchemy import select

        from vigil.storage.tables import audit_chain_heads

        with self._db.transaction() as conn:
            chains = [r[0] for r in conn.execute(select(audit_chain_heads.c.chain_id))]
            return self.store.checkpoint_chains(conn, chains)

    def _write_batch(self, records: Sequence[AuditRecord]) -> None:
        try:
            with self._db.transaction() as conn:
                self.store.append(conn, records)
        except Exception:
            self.signer.forget()
            raise

    def _write_group(self, records: Sequence[AuditRecord]) -> None:
        """A group-commit batch, on the writer thread's connection. A connection that broke
        (a database restart) is replaced and the batch tried once more: the records' unique
        ids make a second insert of an already committed batch fail rather than duplicate."""
        self.details.ready()  # before the transaction: it may write to the key store
        for attempt in (1, 2):
            if self._group_conn is None:
                self._group_conn = self._db.engine.connect().execution_options(vigil_write=True)
            try:
                with self._db.write_lock(), self._group_conn.begin():
                    self.store.append(self._group_conn, records)
            except Exception as exc:
                self.signer.forget()
                broken = isinstance(exc, DBAPIError) and exc.connection_invalidated
                self._drop_group_connection()
                if attempt == 2 or not broken:
                    raise
            else:
                return

    def _drop_group_connection(self) -> None:
        conn, self._group_conn = self._group_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Drain pending appends, then sign every chain head so a clean shutdown leaves no
        unsigned tail."""
        self._writer.stop()
        self._drop_group_connection()
        try:
            self.checkpoint_all()
        except Exception:  # never block shutdown; the next start signs stale heads
            logging.getLogger(__name__).exception("final audit checkpoint failed")
