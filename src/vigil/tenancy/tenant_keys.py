"""Operator actions on tenants' keys (S7, S8): provision an enterprise KEK, rotate, rewrap, and
destroy a dealer's keys (crypto-shredding). The CLI is a thin front over these; each is audited.

Rotation never needs downtime: a KEK rotation adds a version in the KMS (old wraps still unwrap),
a data-key rotation starts a new generation (old values name theirs in their header), and
`rewrap` moves stored wraps to the newest KEK version one compare-and-swap at a time, so it can
run beside live traffic and be interrupted and run again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.audit.record import AuditRecord
from vigil.auth.actor import Actor
from vigil.auth.apikeys.models import KeyStatus
from vigil.core.clock import Clock
from vigil.core.errors import Conflict, InvalidInput, NotFound
from vigil.crypto.keystore import Purpose, WrappedDataKey
from vigil.encryption import Encryption
from vigil.storage import sqlcipher
from vigil.storage.db import Database
from vigil.storage.tables import api_keys, dealers
from vigil.tenancy.models import Plan


@dataclass(frozen=True, slots=True)
class Shredded:
    dealer_id: str
    data_keys_destroyed: int
    api_keys_revoked: int
    kms_keys_destroyed: tuple[str, ...]


class TenantKeyService:
    def __init__(
        self, db: Database, audit: AuditLog, clock: Clock, encryption: Encryption, keys_dir: Path
    ) -> None:
        self._db, self._audit, self._clock, self._enc = db, audit, clock, encryption
        self._keys_dir = keys_dir

    def _dealer(self, dealer_id: str, *, deleted_ok: bool = False) -> tuple[str, str | None]:
        query = select(dealers.c.plan, dealers.c.kms_key_ref, dealers.c.deleted_at)
        with self._db.read() as conn:
            row = conn.execute(query.where(dealers.c.id == dealer_id)).first()
        if row is None:
            raise NotFound(f"No dealer '{dealer_id}'.")
        if row.deleted_at is not None and not deleted_ok:
            raise Conflict(f"Dealer '{dealer_id}' was deleted; its keys are destroyed.")
        return row.plan, row.kms_key_ref

    def provision(self, actor: Actor, dealer_id: str) -> str:
        """Give an enterprise dealer a KEK of its own (idempotent), then start new data-key
        generations under it: values sealed from now on are under the dealer's KMS key."""
        plan, existing = self._dealer(dealer_id)
        if plan != Plan.ENTERPRISE.value:
            raise InvalidInput("Only enterprise dealers get a KMS key of their own.")
        ref = self._enc.kms.create_tenant_key(dealer_id)
        with self._db.transaction() as conn:
            conn.execute(update(dealers).where(dealers.c.id == dealer_id).values(kms_key_ref=ref))
            details = {"kms_key_ref": ref, "new": existing != ref}
            record = self._record(actor, AuditAction.KMS_KEY_PROVISIONED, dealer_id, details)
            self._audit.write_in(conn, record)
        if existing != ref:
            self._new_generations(dealer_id)
        return ref

    def rotate(self, actor: Actor, dealer_id: str | None = None) -> str:
        """Without a dealer: a new version of the platform KEK. With one: a new version of its own
        KEK (enterprise) and new data-key generations for it. Old data stays readable."""
        if dealer_id is None:
            ref = self._enc.kms.platform_key_ref
            self._enc.kms.rotate(ref)
        else:
            _plan, own = self._dealer(dealer_id)
            ref = own or self._enc.kms.platform_key_ref
            if own is not None:
                self._enc.kms.rotate(own)
            self._new_generations(dealer_id)
        details = {"kms_key_ref": ref, "dealer": dealer_id}
        self._audit.write_now(self._record(actor, AuditAction.KMS_KEY_ROTATED, dealer_id, details))
        return ref

    def rewrap(self, dealer_id: str | None = None) -> Iterator[WrappedDataKey]:
        """Re-wrap stored data keys (and, platform-wide, the database key file) under the newest
        KEK version, yielding each as it is done. Call `record_rewrap` with the count after."""
        if dealer_id is not None:
            self._dealer(dealer_id)
        else:
            sqlcipher.rewrap_database_key(self._enc.kms, self._keys_dir)
        yield from self._enc.keyring.rewrap(dealer_id)

    def pending_rewrap(self, dealer_id: str | None = None) -> int:
        return sum(1 for _ in self._enc.store.list_keys(dealer_id))

    def record_rewrap(self, actor: Actor, dealer_id: str | None, count: int) -> None:
        details = {"count": count, "dealer": dealer_id}
        record = self._record(actor, AuditAction.DATA_KEYS_REWRAPPED, dealer_id, details)
        self._audit.write_now(record)

    def delete_dealer(self, actor: Actor, dealer_id: str) -> Shredded:
        """Crypto-shredding (S8): destroy every wrapped data key of the dealer and every KEK of
        its own in the KMS (the enterprise one and the platform-managed one), so its rows and
        objects can no longer be decrypted, in the database and in any backup of it taken
        before; refuse new keys for it and revoke its API keys. Audit records stay (their
        details belong under the platform audit key), so `vigil audit verify` keeps passing."""
        _plan, own_kek = self._dealer(dealer_id, deleted_ok=True)  # a re-run finishes the job
        now = self._clock.now()
        rows = list(self._enc.store.list_keys(dealer_id))
        doomed = len(rows)
        kms = self._enc.kms
        # Whatever may have wrapped its keys at some point: the current KEK, the standard one
        # (before an enterprise provisioning), and any KEK a row names. Never the platform's: a
        # row still under it (before `vigil kms rewrap` moved it) dies with the row only.
        keks = {own_kek, kms.dealer_key_ref(dealer_id), *(r.kms_key_ref for r in rows)}
        keks -= {None, kms.platform_key_ref}
        platform_wrapped = sum(1 for r in rows if r.kms_key_ref == kms.platform_key_ref)
        with self._db.transaction() as conn:
            # First the tombstone (no new keys, no more API access), committed with its audit
            # record; then the keys. Interrupted in between, a re-run destroys what is left.
            conn.execute(
                update(dealers)
                .where(dealers.c.id == dealer_id, dealers.c.deleted_at.is_(None))
                .values(deleted_at=now)
            )
            revoked = conn.execute(
                update(api_keys)
                .where(api_keys.c.dealer_id == dealer_id, api_keys.c.revoked_at.is_(None))
                .values(status=KeyStatus.REVOKED.value, revoked_at=now)
            ).rowcount
            details = {
                "data_keys_destroyed": doomed,
                "api_keys_revoked": revoked,
                "kms_keys_destroyed": sorted(k for k in keks if k is not None),
                "platform_wrapped": platform_wrapped or None,
            }
            self._audit.write_in(
                conn, self._record(actor, AuditAction.DEALER_DELETED, dealer_id, details)
            )
        destroyed = self._enc.store.delete_dealer(dealer_id)
        self._enc.keyring.forget_dealer(dealer_id)
        gone = tuple(sorted(k for k in keks if k is not None))
        for kek in gone:
            # With the dealer's own KEKs gone, the wrapped data keys in every database backup
            # are useless too (idempotent: a re-run or a key never created is fine).
            kms.destroy_tenant_key(kek)
        return Shredded(dealer_id, destroyed, revoked, gone)

    def _new_generations(self, dealer_id: str) -> None:
        for purpose in Purpose:
            if self._enc.store.current(dealer_id, purpose) is not None:
                self._enc.keyring.rotate_data_key(dealer_id, purpose)

    def _record(
        self,
        actor: Actor,
        action: AuditAction,
        dealer_id: str | None,
        details: Mapping[str, object],
    ) -> AuditRecord:
        return actor.record(
            self._clock.now(),
            action,
            target_type="dealer" if dealer_id else "platform",
            target_id=dealer_id,
            dealer_id=dealer_id,
            details={k: v for k, v in details.items() if v is not None},
        )
