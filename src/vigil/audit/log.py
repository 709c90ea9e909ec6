"""The audit service: the single way records are written (S14, S15).

Callers either append a record on its own (API calls, failures: durable before the response is
released) or write it inside their own transaction (state changes: the change and its record
commit together).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert

from vigil.audit.record import AuditRecord
from vigil.audit.writer import GroupCommitWriter
from vigil.storage.db import Database
from vigil.storage.tables import audit_events


class AuditLog:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._writer = GroupCommitWriter(self._write_batch)

    def write_in(self, conn: Connection, record: AuditRecord) -> None:
        """Write `record` in the caller's transaction: it commits with the change it describes."""
        conn.execute(insert(audit_events), [record.as_row()])

    def write_now(self, record: AuditRecord) -> None:
        """Write and commit `record` synchronously (CLI and other one-off callers)."""
        self._write_batch([record])

    async def append(self, record: AuditRecord) -> None:
        """Return once `record` is durable; concurrent callers share one commit."""
        await self._writer.append(record)

    def _write_batch(self, records: Sequence[AuditRecord]) -> None:
        with self._db.transaction() as conn:
            conn.execute(insert(audit_events), [r.as_row() for r in records])

    def close(self) -> None:
        self._writer.stop()
