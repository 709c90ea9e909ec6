"""Dealer lifecycle: the tenants of the platform."""

from __future__ import annotations

from sqlalchemy import Row, insert, select

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput, NotFound
from vigil.core.ids import new_id
from vigil.storage.db import Database
from vigil.storage.tables import dealers
from vigil.tenancy.models import MAX_RETENTION_DAYS, STANDARD_RETENTION_DAYS, Dealer, Plan


def _dealer(row: Row[tuple[object, ...]]) -> Dealer:
    m = row._mapping
    return Dealer(
        id=m["id"],
        name=m["name"],
        plan=Plan(m["plan"]),
        audit_retention_days=m["audit_retention_days"],
        created_at=m["created_at"],
    )


class DealerService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock) -> None:
        self._db, self._audit, self._clock = db, audit, clock

    def create(
        self, actor: Actor, *, name: str, plan: Plan, retention_days: int | None = None
    ) -> Dealer:
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidInput("A dealer name is 1 to 200 characters.")
        retention = _retention_for(plan, retention_days)
        now = self._clock.now()
        dealer = Dealer(new_id("dlr"), name, plan, retention, now)
        with self._db.transaction() as conn:
            conn.execute(insert(dealers).values(dealer.as_json() | {"created_at": now}))
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.DEALER_CREATED,
                    target_type="dealer",
                    target_id=dealer.id,
                    dealer_id=dealer.id,
                    details={"plan": plan.value, "audit_retention_days": retention},
                ),
            )
        return dealer

    def list(self) -> list[Dealer]:
        with self._db.read() as conn:
            return [
                _dealer(r) for r in conn.execute(select(dealers).order_by(dealers.c.created_at))
            ]

    def get(self, dealer_id: str) -> Dealer:
        with self._db.read() as conn:
            row = conn.execute(select(dealers).where(dealers.c.id == dealer_id)).first()
        if row is None:
            raise NotFound(f"No dealer '{dealer_id}'.")
        return _dealer(row)


def _retention_for(plan: Plan, requested: int | None) -> int:
    """Standard dealers keep 365 days; enterprise may choose 365 to 2,557 days (S17)."""
    if requested is None:
        return STANDARD_RETENTION_DAYS
    if plan is Plan.STANDARD and requested != STANDARD_RETENTION_DAYS:
        raise InvalidInput("Audit retention is fixed at 365 days on the standard plan.")
    if not STANDARD_RETENTION_DAYS <= requested <= MAX_RETENTION_DAYS:
        raise InvalidInput("Audit retention must be between 365 and 2557 days.")
    return requested
