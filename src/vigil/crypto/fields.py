"""Seal and open record fields for a tenant: the keyring plus the envelope, in one call.

This is what repositories plug in: `FieldCipher.seal(binding, plaintext)` picks the dealer's
current data key (`binding.tenant` is the dealer id), and `open` finds the generation the header
names, refusing keys of any other dealer. A spent message budget is handled here, invisibly.
"""

from __future__ import annotations

from collections.abc import Iterable

from vigil.crypto import envelope
from vigil.crypto.binding import Binding
from vigil.crypto.datakey import DataKey
from vigil.crypto.errors import DataKeyExhausted, InvalidBinding, KeyUnavailable
from vigil.crypto.keyring import Keyring
from vigil.crypto.keystore import Purpose

# Messages a `TenantSealer` is sure to have in hand when it is made: far more than any one
# transaction seals (an alarm change emits one or two events), far less than a reservation
# block (2^20), so topping up is rare and happens outside the transaction.
SEALER_HEADROOM = 4096


class FieldCipher:
    """Field-level encryption for one purpose (records or secrets)."""

    __slots__ = ("_keyring", "_purpose")

    def __init__(self, keyring: Keyring, purpose: Purpose = Purpose.RECORDS) -> None:
        self._keyring, self._purpose = keyring, purpose

    def seal(
        self, binding: Binding, plaintext: bytes | bytearray | memoryview
    ) -> bytes | bytearray:
        key = self._keyring.encryption_key(binding.tenant, self._purpose)
        try:
            return envelope.seal(key, binding, plaintext)
        except DataKeyExhausted:
            key = self._keyring.replenish(key)
            return envelope.seal(key, binding, plaintext)

    def open(self, binding: Binding, sealed: bytes | bytearray | memoryview) -> bytes:
        keyset_id, version = envelope.key_ref(sealed)
        key = self._keyring.decryption_key(binding.tenant, self._purpose, keyset_id, version)
        return envelope.open_value(key, binding, sealed)

    def sealer(self, tenant: str) -> TenantSealer:
        """A sealer for one tenant holding its data key, to be made BEFORE a write transaction
        and used inside it: `seal` then never calls the key store (which on SQLite would wait
        on the write lock the transaction holds) unless the headroom is spent."""
        key = self._keyring.encryption_key(tenant, self._purpose)
        if key.budget_end - key.uses <= SEALER_HEADROOM:
            key = self._keyring.replenish(key, headroom=SEALER_HEADROOM)
        return TenantSealer(self._keyring, key, tenant)

    def sealers(self, tenants: Iterable[str]) -> dict[str, TenantSealer | None]:
        """`sealer` for each of several tenants (platform jobs spanning dealers). None for a
        tenant whose keys are gone (a deleted dealer: nothing of it may be sealed any more);
        a KMS outage raises."""
        out: dict[str, TenantSealer | None] = {}
        for tenant in sorted(set(tenants)):
            try:
                out[tenant] = self.sealer(tenant)
            except KeyUnavailable:
                out[tenant] = None
        return out

    def seal_many(
        self, tenant: str, items: Iterable[tuple[Binding, bytes | bytearray | memoryview]]
    ) -> list[bytes | bytearray]:
        """Seal a batch for one tenant with one key lookup (telemetry ingest: hundreds of small
        values per call, where a lookup per value would cost as much as the encryption)."""
        key = self._keyring.encryption_key(tenant, self._purpose)
        seal = envelope.seal
        out: list[bytes | bytearray] = []
        for binding, plaintext in items:
            if binding.tenant != tenant:
                raise InvalidBinding("every value of a batch must belong to its tenant")
            try:
                out.append(seal(key, binding, plaintext))
            except DataKeyExhausted:
                key = self._keyring.replenish(key)
                out.append(seal(key, binding, plaintext))
        return out


class TenantSealer:
    """Seals values of one tenant with a data key fetched in advance (`FieldCipher.sealer`): what
    code that must seal inside a write transaction (outbox events) holds."""

    __slots__ = ("_key", "_keyring", "tenant")

    def __init__(self, keyring: Keyring, key: DataKey, tenant: str) -> None:
        self._keyring, self._key, self.tenant = keyring, key, tenant

    def seal(self, binding: Binding, plaintext: bytes | bytearray | memoryview) -> bytes:
        if binding.tenant != self.tenant:
            raise InvalidBinding("a sealer seals only its own tenant's values")
        try:
            return bytes(envelope.seal(self._key, binding, plaintext))
        except DataKeyExhausted:
            # Only if another thread spent the whole headroom meanwhile: fine on PostgreSQL,
            # a wait for the lock on SQLite. Never a value sealed past the budget.
            self._key = self._keyring.replenish(self._key)
            return bytes(envelope.seal(self._key, binding, plaintext))

    def __repr__(self) -> str:
        return f"TenantSealer({self.tenant!r}, {self._key!r})"
