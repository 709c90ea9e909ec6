"""Encrypt and decrypt objects for a tenant: the keyring plus STREAM, in one call each.

This is what the object store port plugs in (snapshots, clips): `binding.tenant` is the dealer
whose `objects` data key is used; reads find the generation the object header names and refuse
keys of any other dealer. Chunks flow through; nothing holds a whole object in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vigil.crypto import streaming
from vigil.crypto.binding import Binding
from vigil.crypto.keyring import Keyring
from vigil.crypto.keystore import Purpose
from vigil.crypto.streaming import RangePlan, StreamSealer

Chunks = Iterable[bytes | bytearray | memoryview]


class ObjectCipher:
    """Streaming encryption of objects under each dealer's `objects` data keys."""

    __slots__ = ("_keyring",)

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def encrypt(self, binding: Binding, chunks: Chunks) -> Iterator[bytes]:
        key = self._keyring.encryption_key(binding.tenant, Purpose.OBJECTS)
        return streaming.encrypt_stream(key, binding, chunks)

    def sealer(self, binding: Binding) -> StreamSealer:
        """Push-mode encryption for a writer fed chunk by chunk (the object store wrapper)."""
        return StreamSealer(self._keyring.encryption_key(binding.tenant, Purpose.OBJECTS), binding)

    def decrypt(self, binding: Binding, chunks: Chunks) -> Iterator[bytes]:
        """Verified plaintext, segment by segment; an exception at any point means the object is
        bad (see `streaming.decrypt_stream`)."""
        resolver = self._keyring.resolver(binding.tenant, Purpose.OBJECTS)
        return streaming.decrypt_stream(resolver, binding, chunks)

    def decrypt_range(
        self, binding: Binding, header: bytes, plan: RangePlan, chunks: Chunks
    ) -> Iterator[bytes]:
        """Plaintext bytes [plan.start, plan.stop) from the segments `plan` names (HTTP Range):
        fetch `header` (the first `streaming.HEADER_SIZE` bytes) and the span
        [plan.ciphertext_start, plan.ciphertext_stop) from the store."""
        resolver = self._keyring.resolver(binding.tenant, Purpose.OBJECTS)
        return streaming.decrypt_range(resolver, binding, header, plan, chunks)
