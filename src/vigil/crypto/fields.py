"""Seal and open record fields for a tenant: the keyring plus the envelope, in one call.

This is what repositories plug in: `FieldCipher.seal(binding, plaintext)` picks the dealer's
current data key (`binding.tenant` is the dealer id), and `open` finds the generation the header
names, refusing keys of any other dealer. A spent message budget is handled here, invisibly.
"""

from __future__ import annotations

from collections.abc import Iterable

from vigil.crypto import envelope
from vigil.crypto.binding import Binding
from vigil.crypto.errors import DataKeyExhausted, InvalidBinding
from vigil.crypto.keyring import Keyring
from vigil.crypto.keystore import Purpose


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
