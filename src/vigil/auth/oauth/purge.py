"""Purging what can no longer be used: expired access and refresh tokens, authorization codes
past their life, and `jti` entries past their assertion's `exp`. Runs periodically inside
`vigil serve` and on demand with `vigil oauth purge`; idempotent, so several server processes
may run it at once.

What is kept, and why:
- a `jti` row until its assertion's `exp` + 60 s skew (the stored `expires_at`) **plus** another
  60 s: until then the verifier still accepts that assertion's `exp`, so the row is what refuses
  a replay; the extra minute covers clocks that differ between the purging and the verifying
  process (assertions.py `SKEW`).
- a code (used or not) until 10 minutes after its 60 s life: a replayed code must still find its
  row to revoke the tokens issued from it (RFC 6749 section 4.1.2), and replays come soon.
- a refresh token until its `expires_at`, which is its family's absolute end: a used one must
  stay while the family lives, or its reuse would no longer be detected (RFC 9700 4.14.2).
Revoked rows go at the same time as they would have expired: until then their row is what
refuses them (a missing row is refused as well, so deleting later is only bookkeeping).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.auth.assertions import SKEW
from vigil.core.clock import Clock
from vigil.storage.db import Database
from vigil.storage.tables import assertion_jtis, oauth_codes, oauth_tokens

CODE_REPLAY_WINDOW = timedelta(minutes=10)
JTI_MARGIN = timedelta(seconds=SKEW)


@dataclass(frozen=True, slots=True)
class Purged:
    tokens: int
    codes: int
    jtis: int
    cutoff: datetime

    @property
    def total(self) -> int:
        return self.tokens + self.codes + self.jtis

    def as_json(self) -> dict[str, object]:
        return {
            "tokens": self.tokens,
            "codes": self.codes,
            "jtis": self.jtis,
            "cutoff": self.cutoff.isoformat(),
        }


def purge(db: Database, audit: AuditLog, clock: Clock, actor: Actor) -> Purged:
    """Delete what can no longer be used; one `oauth.purged` record in the same transaction,
    written only when something was deleted (an hourly empty record would be noise)."""
    now = clock.now()
    with db.transaction() as conn:
        tokens = conn.execute(delete(oauth_tokens).where(oauth_tokens.c.expires_at < now))
        codes = conn.execute(
            delete(oauth_codes).where(oauth_codes.c.expires_at < now - CODE_REPLAY_WINDOW)
        )
        jtis = conn.execute(
            delete(assertion_jtis).where(assertion_jtis.c.expires_at < now - JTI_MARGIN)
        )
        purged = Purged(int(tokens.rowcount), int(codes.rowcount), int(jtis.rowcount), now)
        if purged.total:
            audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.OAUTH_PURGED,
                    target_type="oauth",
                    details=purged.as_json() | {"via": actor.via},
                ),
            )
    return purged
