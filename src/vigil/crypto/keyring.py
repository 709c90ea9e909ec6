"""Per-tenant data keys: created through the KMS, stored wrapped, cached unwrapped.

Hierarchy (S7, S8): the dealer's own KMS key-encryption key (`kek_for`: an enterprise dealer's
provisioned one, a standard dealer's platform-managed one) wraps data keys, one keyset per
(dealer, purpose), each keyset a series of generations. Records are sealed with the current
generation; any generation still decrypts.

The cache is what keeps the KMS off the request path: a dealer whose key is cached costs no KMS
call and no store read (`kms_calls` counts them so tests can prove it). It is bounded (LRU,
`max_entries`) and entries expire (`ttl_seconds`) so a key destroyed or rotated elsewhere stops
being used within the TTL, and a memory dump holds a bounded number of tenants' keys. Evicted
keys are zeroed (`SecretKey.destroy`), within what Python allows. A miss is single-flight: when
many requests for one tenant miss at once, one thread asks the KMS and the others wait for its
answer, so a cold cache or an expiry never turns into a burst of KMS calls (a "stampede").

Message budgets (NIST SP 800-38D, see `datakey.py`): a generation may seal at most
`max_messages` values across all processes; each process reserves blocks of `reservation` in the
store, and a generation whose budget is spent is retired and replaced.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vigil.crypto.datakey import KEYSET_ID_SIZE, MAX_MESSAGES_PER_KEY, DataKey
from vigil.crypto.errors import DataKeyExhausted, KeyUnavailable
from vigil.crypto.keystore import Purpose, WrappedDataKey, WrappedKeyStore
from vigil.crypto.kms.port import EncryptionContext, Kms
from vigil.crypto.material import SecretKey

if TYPE_CHECKING:
    from vigil.config import Settings

RESERVATION_BLOCK = 2**20


def wrap_context(dealer_id: str, purpose: str, keyset_id: bytes, version: int) -> dict[str, str]:
    """What each wrapped key is bound to in the KMS: a row moved to another dealer, purpose or
    generation no longer unwraps."""
    return {
        "vigil:dealer": dealer_id,
        "vigil:purpose": purpose,
        "vigil:keyset": keyset_id.hex(),
        "vigil:version": str(version),
    }


@dataclass(slots=True)
class _Entry:
    key: DataKey
    expires: float


class Keyring:
    """Thread-safe source of data keys for the envelope and streaming layers."""

    def __init__(
        self,
        kms: Kms,
        store: WrappedKeyStore,
        *,
        ttl_seconds: float = 300.0,
        max_entries: int = 1024,
        kek_for: Callable[[str], str] | None = None,
        max_messages: int = MAX_MESSAGES_PER_KEY,
        reservation: int = RESERVATION_BLOCK,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_entries < 1 or ttl_seconds <= 0:
            raise ValueError("cache needs max_entries >= 1 and ttl_seconds > 0")
        self._kms, self._store = kms, store
        self._ttl, self._max_entries = ttl_seconds, max_entries
        self._kek_for = kek_for or (lambda _dealer: kms.platform_key_ref)
        self._max_messages, self._reservation = max_messages, min(reservation, max_messages)
        self._clock, self._now = clock, now
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[bytes, int], _Entry] = OrderedDict()
        self._current: dict[tuple[str, str], tuple[bytes, int]] = {}
        self._inflight: dict[Hashable, Future[DataKey]] = {}
        self._budget_lock = threading.Lock()
        self._kms_calls = 0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        kms: Kms,
        store: WrappedKeyStore,
        *,
        kek_for: Callable[[str], str] | None = None,
    ) -> Keyring:
        """The keyring the composition root builds: cache TTL and size from `VIGIL_KEY_CACHE_*`;
        `kek_for` maps enterprise dealers to their own KEK (default: the platform KEK)."""
        return cls(
            kms,
            store,
            ttl_seconds=settings.key_cache_ttl_seconds,
            max_entries=settings.key_cache_size,
            kek_for=kek_for,
        )

    # ------------------------------------------------------------------ lookups

    @property
    def kms_calls(self) -> int:
        """KMS requests made so far (generate + unwrap + rewrap)."""
        return self._kms_calls

    def encryption_key(self, dealer_id: str, purpose: Purpose) -> DataKey:
        """The current generation for (dealer, purpose), created on first use."""
        pointer = self._current.get((dealer_id, purpose))
        if pointer is not None:
            cached = self._cached(pointer)
            if cached is not None:
                return cached
        return self._single_flight(
            ("current", dealer_id, purpose), lambda: self._load_current(dealer_id, purpose)
        )

    def decryption_key(
        self, dealer_id: str, purpose: Purpose, keyset_id: bytes, version: int
    ) -> DataKey:
        """The generation a ciphertext header names, if it belongs to this dealer and purpose."""
        cached = self._cached((keyset_id, version))
        if cached is None:
            # The flight includes the dealer: a forged header naming another dealer's key fails
            # on its own, without an unwrap and without failing that dealer's concurrent reads.
            cached = self._single_flight(
                ("key", dealer_id, purpose, keyset_id, version),
                lambda: self._load(dealer_id, purpose, keyset_id, version),
            )
        if cached.dealer_id != dealer_id or cached.purpose != purpose:
            # A header naming another tenant's key: refuse before any decryption is attempted.
            raise KeyUnavailable("No such key for this tenant.")
        return cached

    def resolver(self, dealer_id: str, purpose: Purpose) -> Callable[[bytes, int], DataKey]:
        """A `streaming.KeyResolver` limited to one dealer and purpose."""
        return lambda keyset_id, version: self.decryption_key(
            dealer_id, purpose, keyset_id, version
        )

    def replenish(self, key: DataKey, *, headroom: int = 0) -> DataKey:
        """After `DataKeyExhausted` (or when fewer than `headroom` messages are left): reserve
        another block for `key`, or retire it and return the next generation when its lifetime
        budget is spent."""
        with self._budget_lock:
            if key.budget_end - key.uses > headroom:
                return key  # another thread already topped it up
            if self._store.reserve(
                key.keyset_id, key.version, self._reservation, self._max_messages
            ):
                key.extend_budget(self._reservation)
                return key
            self._store.retire(key.keyset_id, key.version)
            with self._lock:
                if self._current.get((key.dealer_id, key.purpose)) == (key.keyset_id, key.version):
                    del self._current[(key.dealer_id, key.purpose)]
        return self.encryption_key(key.dealer_id, Purpose(key.purpose))

    # --------------------------------------------------------------- operations

    def rotate_data_key(self, dealer_id: str, purpose: Purpose) -> DataKey:
        """Retire the current generation; new writes use a fresh one, old data stays readable."""
        row = self._store.current(dealer_id, purpose)
        if row is not None:
            self._store.retire(row.keyset_id, row.version)
        with self._lock:
            self._current.pop((dealer_id, purpose), None)
        return self.encryption_key(dealer_id, purpose)

    def rewrap(self, dealer_id: str | None = None) -> Iterator[WrappedDataKey]:
        """Re-wrap stored data keys under the newest version of their dealer's KEK (after
        `kms.rotate`), moving any still wrapped by another KEK (the platform's, from before
        dealers had keys of their own; a standard key before enterprise provisioning) to the
        dealer's current one. Yields each row as it is done (progress); safe to interrupt and
        run again. Rows of a deleted dealer (an interrupted shred) are skipped."""
        for row in self._store.list_keys(dealer_id):
            try:
                target = self._kek_for(row.dealer_id)
            except KeyUnavailable:
                continue
            context = wrap_context(row.dealer_id, row.purpose, row.keyset_id, row.version)
            self._count_kms_call()
            if target == row.kms_key_ref:
                new = self._kms.rewrap(row.kms_key_ref, row.wrapped, context)
            else:
                new = self._kms.move(row.kms_key_ref, row.wrapped, context, target)
            self._store.replace_wrapped(row.keyset_id, row.version, row.wrapped, new, target)
            yield row

    def forget_dealer(self, dealer_id: str) -> None:
        """Drop (and zero) every cached key of a dealer: after its keys are destroyed, nothing in
        this process can still decrypt its data."""
        with self._lock:
            doomed = [k for k, e in self._cache.items() if e.key.dealer_id == dealer_id]
            for k in doomed:
                self._cache.pop(k).key.destroy()
            for pointer in [p for p in self._current if p[0] == dealer_id]:
                del self._current[pointer]

    def clear(self) -> None:
        with self._lock:
            for entry in self._cache.values():
                entry.key.destroy()
            self._cache.clear()
            self._current.clear()

    # ------------------------------------------------------------------- cache

    def _count_kms_call(self) -> None:
        with self._lock:
            self._kms_calls += 1

    def _cached(self, cache_key: tuple[bytes, int]) -> DataKey | None:
        with self._lock:
            entry = self._cache.get(cache_key)
            if entry is None:
                return None
            if entry.expires <= self._clock():
                del self._cache[cache_key]
                entry.key.destroy()
                return None
            self._cache.move_to_end(cache_key)
            return entry.key

    def _remember(self, key: DataKey) -> None:
        cache_key = (key.keyset_id, key.version)
        with self._lock:
            old = self._cache.pop(cache_key, None)
            if old is not None and old.key is not key:
                old.key.destroy()
            self._cache[cache_key] = _Entry(key, self._clock() + self._ttl)
            while len(self._cache) > self._max_entries:
                _, evicted = self._cache.popitem(last=False)
                evicted.key.destroy()

    def _single_flight(self, flight: Hashable, load: Callable[[], DataKey]) -> DataKey:
        with self._lock:
            future = self._inflight.get(flight)
            leader = future is None
            if future is None:
                future = self._inflight[flight] = Future()
        if not leader:
            return future.result()
        try:
            key = load()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            self._remember(key)
            future.set_result(key)
            return key
        finally:
            with self._lock:
                del self._inflight[flight]

    # ------------------------------------------------------------------ loading

    def _unwrap(self, row: WrappedDataKey, budget: int) -> DataKey:
        context = wrap_context(row.dealer_id, row.purpose, row.keyset_id, row.version)
        self._count_kms_call()
        secret = self._kms.decrypt_data_key(row.kms_key_ref, row.wrapped, context)
        return self._data_key(secret, row, budget)

    def _data_key(self, secret: SecretKey, row: WrappedDataKey, budget: int) -> DataKey:
        return DataKey(
            secret,
            keyset_id=row.keyset_id,
            version=row.version,
            dealer_id=row.dealer_id,
            purpose=row.purpose.value,
            budget=budget,
        )

    def _load(self, dealer_id: str, purpose: Purpose, keyset_id: bytes, version: int) -> DataKey:
        row = self._store.get(keyset_id, version)
        if row is None or row.dealer_id != dealer_id or row.purpose != purpose:
            raise KeyUnavailable("No such key for this tenant.")
        return self._unwrap(row, budget=0)

    def _load_current(self, dealer_id: str, purpose: Purpose) -> DataKey:
        for _attempt in range(3):
            row = self._store.current(dealer_id, purpose)
            if row is None:
                key = self._create(dealer_id, purpose)
                if key is None:
                    continue  # another process created this generation first: use theirs
            elif self._store.reserve(
                row.keyset_id, row.version, self._reservation, self._max_messages
            ):
                cached = self._cached((row.keyset_id, row.version))
                if cached is not None:
                    cached.extend_budget(self._reservation)
                    key = cached
                else:
                    key = self._unwrap(row, budget=self._reservation)
            else:
                self._store.retire(row.keyset_id, row.version)
                continue
            with self._lock:
                self._current[(dealer_id, purpose)] = (key.keyset_id, key.version)
            return key
        raise DataKeyExhausted("could not obtain a data key with budget left")

    def _create(self, dealer_id: str, purpose: Purpose) -> DataKey | None:
        previous = [row for row in self._store.list_keys(dealer_id) if row.purpose == purpose]
        if previous:
            keyset_id = previous[0].keyset_id
            version = max(row.version for row in previous) + 1
        else:
            keyset_id, version = os.urandom(KEYSET_ID_SIZE), 1
        kek = self._kek_for(dealer_id)
        context: EncryptionContext = wrap_context(dealer_id, purpose, keyset_id, version)
        self._count_kms_call()
        generated = self._kms.generate_data_key(kek, context)
        row = WrappedDataKey(
            keyset_id=keyset_id,
            version=version,
            dealer_id=dealer_id,
            purpose=purpose,
            kms_key_ref=generated.kms_key_ref,
            wrapped=generated.wrapped,
            created_at=self._now(),
            messages_reserved=self._reservation,
        )
        if not self._store.add(row):
            generated.plaintext.destroy()
            return None
        return self._data_key(generated.plaintext, row, budget=self._reservation)
