"""Operator actions on tenants' keys (S7, S8): provision an enterprise KEK (created by Vigil,
or the customer's own, configured), rotate, rewrap, and destroy a dealer's keys
(crypto-shredding). The CLI is a thin front over these; each is audited.

Rotation never needs downtime: a KEK rotation adds a version in the KMS (old wraps still unwrap),
a data-key rotation starts a new generation (old values name theirs in their header), and
`rewrap` moves stored wraps to the newest KEK version one compare-and-swap at a time, so it can
run beside live traffic and be interrupted and run again.
"""

from __future__ import annotations

import secrets
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
from vigil.crypto.errors import KmsError
from vigil.crypto.keyring import wrap_context
from vigil.crypto.keystore import Purpose, WrappedDataKey
from vigil.crypto.kms.port import KeyManager, Kms
from vigil.encryption import Encryption
from vigil.storage import sqlcipher
from vigil.storage.db import Database
from vigil.storage.tables import api_keys, data_keys, dealers
from vigil.tenancy.models import Plan


@dataclass(frozen=True, slots=True)
class Shredded:
    dealer_id: str
    data_keys_destroyed: int
    api_keys_revoked: int
    kms_keys_destroyed: tuple[str, ...]
    # A key the customer configured: its wraps of this dealer are gone, the key is theirs.
    kms_keys_left_to_customer: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Provisioned:
    dealer_id: str
    kms_key_ref: str
    managed: KeyManager
    new: bool  # False: the dealer was already under this key (an idempotent re-run)


@dataclass(frozen=True, slots=True)
class Rotated:
    kms_key_ref: str
    managed: KeyManager
    kek_rotated: bool  # False for a customer's key: rotating it is the customer's job


@dataclass(frozen=True, slots=True)
class _DealerKey:
    plan: str
    kms_key_ref: str | None
    managed: KeyManager


class TenantKeyService:
    def __init__(
        self, db: Database, audit: AuditLog, clock: Clock, encryption: Encryption, keys_dir: Path
    ) -> None:
        self._db, self._audit, self._clock, self._enc = db, audit, clock, encryption
        self._keys_dir = keys_dir

    def _dealer(self, dealer_id: str, *, deleted_ok: bool = False) -> _DealerKey:
        c = dealers.c
        query = select(c.plan, c.kms_key_ref, c.kms_key_managed, c.deleted_at)
        with self._db.read() as conn:
            row = conn.execute(query.where(c.id == dealer_id)).first()
        if row is None:
            raise NotFound(f"No dealer '{dealer_id}'.")
        if row.deleted_at is not None and not deleted_ok:
            raise Conflict(f"Dealer '{dealer_id}' was deleted; its keys are destroyed.")
        return _DealerKey(row.plan, row.kms_key_ref, KeyManager(row.kms_key_managed))

    def provision(self, actor: Actor, dealer_id: str, key_ref: str | None = None) -> Provisioned:
        """Put an enterprise dealer under a KEK of its own, then start new data-key generations
        under it: values sealed from now on are under that key (idempotent).

        Without `key_ref` Vigil creates the key (and destroys it with the dealer). With one, the
        dealer is put under an existing key the customer controls (BYOK), after proving that
        Vigil can use it for this dealer; Vigil never rotates or destroys that key. A refusal
        changes nothing and is audited (`result: refused`)."""
        current = self._dealer(dealer_id)
        try:
            ref, managed = self._kek(current, dealer_id, key_ref)
        except (InvalidInput, KmsError) as exc:
            refused = {"kms_key_ref": (key_ref or "")[:200] or None, "reason": exc.detail}
            self._audit.write_now(
                self._record(actor, AuditAction.KMS_KEY_PROVISIONED, dealer_id, refused, "refused")
            )
            raise
        new = (current.kms_key_ref, current.managed) != (ref, managed)
        with self._db.transaction() as conn:
            conn.execute(
                update(dealers)
                .where(dealers.c.id == dealer_id)
                .values(kms_key_ref=ref, kms_key_managed=managed.value)
            )
            details = {
                "kms_key_ref": ref,
                "managed": managed.value,
                "source": "configured" if managed is KeyManager.CUSTOMER else "created",
                "new": new,
                "previous_kms_key_ref": current.kms_key_ref if new else None,
            }
            record = self._record(actor, AuditAction.KMS_KEY_PROVISIONED, dealer_id, details)
            self._audit.write_in(conn, record)
        if new:
            self._new_generations(dealer_id)
        return Provisioned(dealer_id, ref, managed, new)

    def _kek(
        self, current: _DealerKey, dealer_id: str, key_ref: str | None
    ) -> tuple[str, KeyManager]:
        if current.plan != Plan.ENTERPRISE.value:
            raise InvalidInput("Only enterprise dealers get a KMS key of their own.")
        if key_ref is None:
            return self._enc.kms.create_tenant_key(dealer_id), KeyManager.PLATFORM
        return self._customer_key(dealer_id, key_ref), KeyManager.CUSTOMER

    def _customer_key(self, dealer_id: str, key_ref: str) -> str:
        """The canonical ref of a customer's key, once it is proven usable for this dealer:
        the provider's checks (exists, enabled, right kind, not Vigil's), not another dealer's
        (one KEK per tenant, S8), and a real round trip with this dealer's context."""
        kms = self._enc.kms
        try:
            ref = kms.customer_key_ref(key_ref)
            self._unshared(ref, dealer_id)
            _prove(kms, ref, dealer_id)
        except KmsError as exc:
            raise InvalidInput(
                f"KMS key {key_ref[:200]!r} cannot be used for dealer {dealer_id}: "
                f"{exc.detail.rstrip('.')}. Nothing was changed."
            ) from None
        return ref

    def _unshared(self, ref: str, dealer_id: str) -> None:
        """One KEK per tenant (S8): a key another dealer is or was under is refused (its
        deletion would otherwise reach this dealer, and its key policy is another tenant's)."""
        c, k = dealers.c, data_keys.c
        with self._db.read() as conn:
            other = (
                conn.execute(
                    select(c.id).where(c.kms_key_ref == ref, c.id != dealer_id).limit(1)
                ).first()
                or conn.execute(
                    select(k.dealer_id)
                    .where(k.kms_key_ref == ref, k.dealer_id != dealer_id)
                    .limit(1)
                ).first()
            )
        if other is not None:
            raise KmsError("that key is (or was) another dealer's: one KMS key per tenant")

    def rotate(self, actor: Actor, dealer_id: str | None = None) -> Rotated:
        """Without a dealer: a new version of the platform KEK. With one: a new version of its own
        KEK and new data-key generations for it. Old data stays readable. A key the customer
        configured is not Vigil's to rotate: only the data-key generations are new, and the
        customer rotates its key in its KMS (old wraps keep working there)."""
        managed, rotated = KeyManager.PLATFORM, True
        if dealer_id is None:
            ref = self._enc.kms.platform_key_ref
            self._enc.kms.rotate(ref)
        else:
            own = self._dealer(dealer_id)
            ref, managed = own.kms_key_ref or self._enc.kms.platform_key_ref, own.managed
            rotated = own.kms_key_ref is not None and managed is KeyManager.PLATFORM
            if rotated:
                self._enc.kms.rotate(ref)
            self._new_generations(dealer_id)
        details = {
            "kms_key_ref": ref,
            "dealer": dealer_id,
            "managed": managed.value,
            "kek_rotated": rotated,
        }
        self._audit.write_now(self._record(actor, AuditAction.KMS_KEY_ROTATED, dealer_id, details))
        return Rotated(ref, managed, rotated)

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
        """Crypto-shredding (S8): destroy every wrapped data key of the dealer and every KEK
        Vigil made for it in the KMS (the enterprise one and the platform-managed one), so its
        rows and objects can no longer be decrypted, in the database and in any backup of it
        taken before; refuse new keys for it and revoke its API keys. A key the customer
        configured is theirs: its wraps die with the rows, the key is left (and said so). Audit
        records stay (their details are under the platform audit key), so `vigil audit
        verify` keeps passing."""
        own = self._dealer(dealer_id, deleted_ok=True)  # a re-run finishes the job
        now = self._clock.now()
        rows = list(self._enc.store.list_keys(dealer_id))
        doomed = len(rows)
        kms = self._enc.kms
        # Only keys Vigil made for this dealer, found by the names it gives them (whatever its
        # rows name: an earlier customer key must not be touched either), never the platform's;
        # a row still under the platform KEK (before `vigil kms rewrap`) dies with the row.
        keks = {kms.dealer_key_ref(dealer_id)}
        if own.plan == Plan.ENTERPRISE.value:
            keks.add(kms.tenant_key_ref(dealer_id))
        customer: tuple[str, ...] = ()
        if own.kms_key_ref is not None:
            if own.managed is KeyManager.PLATFORM:
                keks.add(own.kms_key_ref)
            else:
                customer = (own.kms_key_ref,)
        gone = tuple(sorted(keks - {kms.platform_key_ref, *customer}))
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
                "kms_keys_destroyed": list(gone),
                "kms_keys_left_to_customer": list(customer) or None,
                "platform_wrapped": platform_wrapped or None,
            }
            self._audit.write_in(
                conn, self._record(actor, AuditAction.DEALER_DELETED, dealer_id, details)
            )
        destroyed = self._enc.store.delete_dealer(dealer_id)
        self._enc.keyring.forget_dealer(dealer_id)
        for kek in gone:
            # With the dealer's own KEKs gone, the wrapped data keys in every database backup
            # are useless too (idempotent: a re-run or a key never created is fine).
            kms.destroy_tenant_key(kek)
        return Shredded(dealer_id, destroyed, revoked, gone, customer)

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
        result: str = "success",
    ) -> AuditRecord:
        return actor.record(
            self._clock.now(),
            action,
            target_type="dealer" if dealer_id else "platform",
            target_id=dealer_id,
            result=result,
            dealer_id=dealer_id,
            details={k: v for k, v in details.items() if v is not None},
        )


def _prove(kms: Kms, ref: str, dealer_id: str) -> None:
    """A real round trip under `ref` with this dealer's encryption context (what every data key
    of the dealer will be bound to): a data key generated and given back, and refused under
    another dealer's context (the binding S8 relies on). Raises `KmsError` saying which failed."""
    context = wrap_context(dealer_id, "key_check", secrets.token_bytes(16), 0)
    generated = kms.generate_data_key(ref, context)
    try:
        back = kms.decrypt_data_key(ref, generated.wrapped, context)
        same = back.equals(generated.plaintext)
        back.destroy()
        if not same:
            raise KmsError("the key did not give the data key back")
        try:
            other = {**context, "vigil:dealer": f"{dealer_id}-binding-check"}
            kms.decrypt_data_key(ref, generated.wrapped, other).destroy()
        except KmsError:
            return
        raise KmsError("the key does not bind the encryption context")
    finally:
        generated.plaintext.destroy()
