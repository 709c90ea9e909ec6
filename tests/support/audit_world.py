"""A populated audit store on a fresh database, and owner-level SQL for tampering with it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.audit.record import AuditRecord
from vigil.audit.signing import AuditSigner
from vigil.core.clock import FrozenClock
from vigil.storage.db import Database

SQLITE_TRIGGERS = [
    "audit_events_no_update",
    "audit_events_retention_guard",
    "audit_checkpoints_no_update",
    "audit_checkpoints_no_delete",
]


class AuditWorld:
    def __init__(self, home: Path, url: str, owner_url: str | None, *, every: int = 10) -> None:
        self.home, self.url, self.owner_url = home, url, owner_url
        self.db = Database(url)
        self.db.migrate(owner_url=owner_url)
        self.clock = FrozenClock()
        self.signer = AuditSigner(home / "keys" / "audit", self.clock, timedelta(days=30))
        self.log = AuditLog(self.db, self.signer, self.clock, checkpoint_every=every)

    def record(
        self, dealer_id: str | None, n: int, *, at: datetime | None = None, env: str = "production"
    ) -> None:
        if at is not None:
            self.clock._now = at
        for i in range(n):
            self.log.write_now(
                AuditRecord(
                    occurred_at=self.clock.now(),
                    action=AuditAction.API_REQUEST,
                    result="200",
                    actor_type="app",
                    actor_id=f"app_{i}",
                    dealer_id=dealer_id,
                    environment=env if dealer_id else None,
                    request_id=f"req_{dealer_id}_{i}",
                    details={"n": i},
                )
            )

    @contextmanager
    def owner(self) -> Iterator[Connection]:
        """A connection as the database owner with the storage's guards switched off: what an
        attacker with full database access could do."""
        engine = create_engine(self.owner_url or self.url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SET LOCAL session_replication_role = replica"))
                else:
                    for trigger in SQLITE_TRIGGERS:
                        conn.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
                yield conn
        finally:
            engine.dispose()

    def close(self) -> None:
        self.log.close()
        self.db.dispose()
