"""Where wrapped data keys live: a small port so the keyring does not know about SQL.

A wrapped data key is safe to store next to the data (it is useless without the KMS key that
wrapped it), which is the point of envelope encryption (S7): the database holds only wrapped keys,
the KMS holds the key-encryption keys, and destroying a tenant's rows here (or its KMS key) makes
that tenant's data unreadable everywhere, backups included (S8, crypto-shredding).

The SQL table the lead adds is described in docs/encryption.md ("Key storage"); the in-memory
implementation below has the same semantics and is what the unit tests use.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Purpose(StrEnum):
    """Separate data keys per kind of data, so a key compromised or rotated for one use does not
    touch the others, and objects (HKDF roots) never share keys with records (direct GCM)."""

    RECORDS = "records"
    OBJECTS = "objects"
    SECRETS = "secrets"
    # Audit record details, under the pseudo-tenant "platform" only: they must survive the
    # destruction of any dealer's keys (see vigil.audit.sealing).
    AUDIT = "audit"


@dataclass(frozen=True, slots=True)
class WrappedDataKey:
    """One generation of one tenant's data key for one purpose, as stored."""

    keyset_id: bytes
    version: int
    dealer_id: str
    purpose: Purpose
    kms_key_ref: str
    wrapped: bytes = dataclasses.field(repr=False)
    created_at: datetime
    messages_reserved: int = 0
    retired: bool = False


class WrappedKeyStore(Protocol):
    """Persistence of wrapped data keys. Every method is atomic on its own."""

    def current(self, dealer_id: str, purpose: Purpose) -> WrappedDataKey | None:
        """The newest non-retired generation for (dealer, purpose), if any."""
        ...

    def get(self, keyset_id: bytes, version: int) -> WrappedDataKey | None: ...

    def add(self, key: WrappedDataKey) -> bool:
        """Insert a new generation. False if (keyset_id, version) or (dealer, purpose, version)
        already exists: another process won the race and the caller should re-read `current`."""
        ...

    def reserve(self, keyset_id: bytes, version: int, messages: int, limit: int) -> bool:
        """Atomically add `messages` to the generation's reserved count if the total stays within
        `limit` (SQL: UPDATE ... SET reserved = reserved + :n WHERE ... AND reserved + :n <=
        :limit). False when the key is spent or gone."""
        ...

    def retire(self, keyset_id: bytes, version: int) -> None:
        """Stop using a generation for new encryptions; it still decrypts."""
        ...

    def replace_wrapped(
        self, keyset_id: bytes, version: int, old: bytes, new: bytes, kms_key_ref: str
    ) -> bool:
        """Compare-and-swap the wrapped bytes (rewrap after a KMS rotation): False if someone
        else changed them first. Resumable: rows already rewrapped are simply skipped."""
        ...

    def list_keys(self, dealer_id: str | None = None) -> Iterator[WrappedDataKey]:
        """All generations (of one dealer, or all), for rewrap and audits."""
        ...

    def delete_dealer(self, dealer_id: str) -> int:
        """Crypto-shredding: remove every wrapped key of a dealer; returns how many."""
        ...


class InMemoryWrappedKeyStore:
    """A `WrappedKeyStore` in a dict, thread-safe, with the SQL table's uniqueness rules."""

    def __init__(self) -> None:
        self._rows: dict[tuple[bytes, int], WrappedDataKey] = {}
        self._lock = threading.Lock()

    def current(self, dealer_id: str, purpose: Purpose) -> WrappedDataKey | None:
        with self._lock:
            live = [
                row
                for row in self._rows.values()
                if row.dealer_id == dealer_id and row.purpose == purpose and not row.retired
            ]
        return max(live, key=lambda row: row.version, default=None)

    def get(self, keyset_id: bytes, version: int) -> WrappedDataKey | None:
        with self._lock:
            return self._rows.get((keyset_id, version))

    def add(self, key: WrappedDataKey) -> bool:
        with self._lock:
            clash = (key.keyset_id, key.version) in self._rows or any(
                row.dealer_id == key.dealer_id
                and row.purpose == key.purpose
                and row.version == key.version
                for row in self._rows.values()
            )
            if clash:
                return False
            self._rows[(key.keyset_id, key.version)] = key
            return True

    def reserve(self, keyset_id: bytes, version: int, messages: int, limit: int) -> bool:
        with self._lock:
            row = self._rows.get((keyset_id, version))
            if row is None or row.messages_reserved + messages > limit:
                return False
            self._rows[(keyset_id, version)] = dataclasses.replace(
                row, messages_reserved=row.messages_reserved + messages
            )
            return True

    def retire(self, keyset_id: bytes, version: int) -> None:
        with self._lock:
            row = self._rows.get((keyset_id, version))
            if row is not None:
                self._rows[(keyset_id, version)] = dataclasses.replace(row, retired=True)

    def replace_wrapped(
        self, keyset_id: bytes, version: int, old: bytes, new: bytes, kms_key_ref: str
    ) -> bool:
        with self._lock:
            row = self._rows.get((keyset_id, version))
            if row is None or row.wrapped != old:
                return False
            self._rows[(keyset_id, version)] = dataclasses.replace(
                row, wrapped=new, kms_key_ref=kms_key_ref
            )
            return True

    def list_keys(self, dealer_id: str | None = None) -> Iterator[WrappedDataKey]:
        with self._lock:
            rows = list(self._rows.values())
        return iter([row for row in rows if dealer_id is None or row.dealer_id == dealer_id])

    def delete_dealer(self, dealer_id: str) -> int:
        with self._lock:
            doomed = [k for k, row in self._rows.items() if row.dealer_id == dealer_id]
            for k in doomed:
                del self._rows[k]
            return len(doomed)
