"""An `ObjectStore` that encrypts before bytes leave the process (S6) and decrypts on the way
back, over any other `ObjectStore` (local directory, S3).

Keys are `<dealer>/<environment>/<record id>` (the callers build them from ids), so the object's
AAD binding comes from its key: tenant, environment and id, record type `object`, field
`content`. An object copied under another key or tenant derives another object key and fails on
its first segment. Sizes and ranges are in plaintext bytes to callers; only the segments a range
needs are fetched and authenticated (`streaming.plan_range`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from vigil.crypto import streaming
from vigil.crypto.binding import Binding
from vigil.crypto.objects import ObjectCipher
from vigil.storage.objects.port import InvalidKey, ObjectStore, ObjectWriter, check_key

RECORD_TYPE = "object"
FIELD = "content"


def binding_of(key: str) -> Binding:
    parts = check_key(key).split("/")
    if len(parts) < 3:
        raise InvalidKey("encrypted objects live under <dealer>/<environment>/<id>")
    return Binding(parts[0], parts[1], RECORD_TYPE, "/".join(parts[2:]), FIELD)


class EncryptingWriter:
    def __init__(self, inner: ObjectWriter, sealer: streaming.StreamSealer) -> None:
        self._inner, self._sealer = inner, sealer
        inner.write(sealer.header)

    def write(self, chunk: bytes) -> None:
        for segment in self._sealer.update(chunk):
            self._inner.write(segment)

    def commit(self) -> int:
        self._inner.write(self._sealer.finish())
        return streaming.plaintext_size(self._inner.commit())

    def abort(self) -> None:
        self._inner.abort()


class EncryptedObjectStore:
    def __init__(self, inner: ObjectStore, cipher: ObjectCipher) -> None:
        self.inner, self._cipher = inner, cipher

    def writer(self, key: str) -> EncryptingWriter:
        sealer = self._cipher.sealer(binding_of(key))
        return EncryptingWriter(self.inner.writer(key), sealer)

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Plaintext [start, end). The first segment is decrypted before returning, so a wrong
        key, a moved or tampered object fails here (a clean error), not mid-response."""
        binding = binding_of(key)
        stored = self.inner.size(key)
        if start == 0 and end is None:
            chunks = self._cipher.decrypt(binding, self.inner.read(key))
        else:
            plan = streaming.plan_range(start, end, stored)
            header = b"".join(self.inner.read(key, 0, streaming.HEADER_SIZE))
            span = self.inner.read(key, plan.ciphertext_start, plan.ciphertext_stop)
            chunks = self._cipher.decrypt_range(binding, header, plan, span)
        first = next(chunks, None)
        return chunks if first is None else itertools.chain((first,), chunks)

    def size(self, key: str) -> int:
        return streaming.plaintext_size(self.inner.size(key))

    def delete(self, key: str) -> None:
        self.inner.delete(key)
