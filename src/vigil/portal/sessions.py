"""Server-side portal sessions behind the `__Host-vigil_session` cookie.

The cookie holds 256 random bits; the database keeps only their SHA-256, so neither a database
copy nor a log line can be replayed as a session. A session ends after 30 idle minutes or 12
hours whatever happens (OWASP session management: short idle, bounded absolute), when its user
signs out, or when every session of that user is revoked ("sign out everywhere", password or
MFA reset). A new id is issued whenever privilege changes (password accepted, second factor
accepted, environment switched), so an id planted before sign-in is worthless (fixation).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from vigil.audit.log import AuditLog
from vigil.audit.record import AuditRecord
from vigil.auth.principal import Environment
from vigil.core.clock import Clock
from vigil.storage.db import Database
from vigil.storage.tables import portal_sessions

COOKIE = "__Host-vigil_session"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
# last_seen_at is written at most this often: every page view need not be a database write.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user_id: str
    dealer_id: str
    environment: Environment
    csrf: str
    mfa_pending: bool
    created_at: datetime

    @property
    def short_id(self) -> str:
        """A non-secret handle for audit records: a prefix of the stored hash, never the id."""
        return "ses_" + _hash(self.token).hex()[:16]


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class SessionStore:
    """Each change may carry its audit record, committed in the same transaction (S15)."""

    def __init__(self, db: Database, audit: AuditLog, clock: Clock) -> None:
        self._db, self._audit, self._clock = db, audit, clock

    def open(
        self,
        user_id: str,
        dealer_id: str,
        environment: Environment,
        *,
        mfa_pending: bool,
        record: AuditRecord | None = None,
        created_at: datetime | None = None,
    ) -> Session:
        now = self._clock.now()
        session = Session(
            secrets.token_urlsafe(32),
            user_id,
            dealer_id,
            environment,
            secrets.token_urlsafe(32),
            mfa_pending,
            created_at or now,
        )
        with self._db.transaction() as conn:
            conn.execute(
                insert(portal_sessions).values(
                    id_hash=_hash(session.token),
                    user_id=user_id,
                    dealer_id=dealer_id,
                    environment=environment.value,
                    csrf_secret=session.csrf,
                    mfa_pending=mfa_pending,
                    created_at=session.created_at,
                    last_seen_at=now,
                )
            )
            if record is not None:
                self._audit.write_in(conn, record)
        return session

    def load(self, token: str | None) -> Session | None:
        if not token or len(token) > 100:
            return None
        now = self._clock.now()
        key = _hash(token)
        with self._db.read() as conn:
            row = (
                conn.execute(select(portal_sessions).where(portal_sessions.c.id_hash == key))
                .mappings()
                .first()
            )
        if row is None or row["revoked_at"] is not None:
            return None
        if now - row["last_seen_at"] > IDLE or now - row["created_at"] > ABSOLUTE:
            return None
        if now - row["last_seen_at"] > TOUCH_EVERY:
            with self._db.transaction() as conn:
                conn.execute(
                    update(portal_sessions)
                    .where(portal_sessions.c.id_hash == key)
                    .values(last_seen_at=now)
                )
        return Session(
            token,
            row["user_id"],
            row["dealer_id"],
            Environment(row["environment"]),
            row["csrf_secret"],
            bool(row["mfa_pending"]),
            row["created_at"],
        )

    def renew(
        self,
        old: Session,
        *,
        environment: Environment | None = None,
        mfa_pending: bool = False,
        record: AuditRecord | None = None,
    ) -> Session:
        """Privilege changed: end the old id and issue a new one (the absolute limit still
        counts from the first sign-in step, so renewing never extends a session's life)."""
        self.revoke(old.token)
        return self.open(
            old.user_id,
            old.dealer_id,
            environment or old.environment,
            mfa_pending=mfa_pending,
            record=record,
            created_at=old.created_at,
        )

    def revoke(self, token: str, record: AuditRecord | None = None) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                update(portal_sessions)
                .where(portal_sessions.c.id_hash == _hash(token))
                .values(revoked_at=self._clock.now())
            )
            if record is not None:
                self._audit.write_in(conn, record)

    def revoke_all(self, user_id: str, record: AuditRecord | None = None) -> int:
        with self._db.transaction() as conn:
            result = conn.execute(
                update(portal_sessions)
                .where(portal_sessions.c.user_id == user_id, portal_sessions.c.revoked_at.is_(None))
                .values(revoked_at=self._clock.now())
            )
            if record is not None:
                self._audit.write_in(conn, record)
        return int(result.rowcount or 0)
