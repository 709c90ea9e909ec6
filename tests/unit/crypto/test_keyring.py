"""Keyring: per-tenant keys, cache TTL and bound, zeroing on eviction, single-flight misses,
no KMS call for a cached tenant, message budgets, rotation, rewrap and crypto-shredding."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from vigil.config import Settings
from vigil.crypto import envelope, streaming
from vigil.crypto.binding import Binding
from vigil.crypto.datakey import DataKey
from vigil.crypto.errors import DecryptionFailed, KeyUnavailable, KmsError
from vigil.crypto.fields import FieldCipher
from vigil.crypto.keyring import Keyring
from vigil.crypto.keystore import InMemoryWrappedKeyStore, Purpose
from vigil.crypto.kms.local import LocalKms
from vigil.crypto.kms.port import EncryptionContext, GeneratedDataKey
from vigil.crypto.material import SecretKey
from vigil.crypto.objects import ObjectCipher

RECORDS = Purpose.RECORDS


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowKms(LocalKms):
    """The real local KMS, with a delay on unwrap so concurrent misses overlap."""

    def __init__(self, keys_dir: Path, delay: float) -> None:
        super().__init__(keys_dir)
        self.delay = delay
        self.unwraps = 0
        self._count_lock = threading.Lock()

    def decrypt_data_key(
        self, key_ref: str, wrapped: bytes, context: EncryptionContext
    ) -> SecretKey:
        with self._count_lock:
            self.unwraps += 1
        time.sleep(self.delay)
        return super().decrypt_data_key(key_ref, wrapped, context)

    def generate_data_key(self, key_ref: str, context: EncryptionContext) -> GeneratedDataKey:
        time.sleep(self.delay)
        return super().generate_data_key(key_ref, context)


@pytest.fixture
def kms(tmp_path: Path) -> LocalKms:
    kms = LocalKms(tmp_path / "keys")
    kms.ensure_platform_key()
    return kms


@pytest.fixture
def store() -> InMemoryWrappedKeyStore:
    return InMemoryWrappedKeyStore()


def binding(dealer: str = "dlr_a", record: str = "alm_1") -> Binding:
    return Binding(dealer, "production", "alarm", record, "details")


def test_cached_tenant_makes_no_kms_call(kms: LocalKms, store: InMemoryWrappedKeyStore) -> None:
    keyring = Keyring(kms, store)
    cipher = FieldCipher(keyring)
    sealed = cipher.seal(binding(), b"first")  # creates the data key: one KMS call
    assert keyring.kms_calls == 1
    for i in range(100):
        sealed = cipher.seal(binding(record=f"alm_{i}"), b"value")
        assert cipher.open(binding(record=f"alm_{i}"), sealed) == b"value"
    assert keyring.kms_calls == 1


def test_each_tenant_and_purpose_has_its_own_data_key(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    keyring = Keyring(kms, store)
    a = keyring.encryption_key("dlr_a", RECORDS)
    b = keyring.encryption_key("dlr_b", RECORDS)
    a_objects = keyring.encryption_key("dlr_a", Purpose.OBJECTS)
    assert len({a.keyset_id, b.keyset_id, a_objects.keyset_id}) == 3
    assert not SecretKey(a.reveal()).equals(SecretKey(b.reveal()))


def test_one_tenants_key_cannot_open_another_tenants_data(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    cipher = FieldCipher(Keyring(kms, store))
    sealed = cipher.seal(binding("dlr_a"), b"dealer a only")
    # Asking for dealer b: the header names dealer a's key, which the keyring refuses to hand out.
    with pytest.raises(KeyUnavailable):
        cipher.open(binding("dlr_b"), sealed)
    # Another record of the same dealer: same key, wrong binding.
    with pytest.raises(DecryptionFailed):
        cipher.open(binding("dlr_a", "alm_2"), sealed)


def test_entries_expire_after_the_ttl(kms: LocalKms, store: InMemoryWrappedKeyStore) -> None:
    clock = FakeClock()
    keyring = Keyring(kms, store, ttl_seconds=60, clock=clock)
    key = keyring.encryption_key("dlr_a", RECORDS)
    clock.now += 59
    assert keyring.encryption_key("dlr_a", RECORDS) is key
    assert keyring.kms_calls == 1
    clock.now += 2
    again = keyring.encryption_key("dlr_a", RECORDS)
    assert again is not key
    assert (again.keyset_id, again.version) == (key.keyset_id, key.version)
    assert keyring.kms_calls == 2  # unwrapped again
    assert key.destroyed  # the expired copy was zeroed


def test_cache_is_bounded_and_zeroes_what_it_evicts(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    keyring = Keyring(kms, store, max_entries=2)
    keys = [keyring.encryption_key(f"dlr_{i}", RECORDS) for i in range(3)]
    assert keys[0].destroyed
    assert keys[0]._secret._buf == bytearray(32)
    assert not keys[1].destroyed
    assert not keys[2].destroyed
    keyring.encryption_key("dlr_1", RECORDS)  # touch: now most recently used
    keyring.encryption_key("dlr_3", RECORDS)
    assert keys[2].destroyed
    assert not keys[1].destroyed


def test_concurrent_misses_make_one_kms_call(
    tmp_path: Path, store: InMemoryWrappedKeyStore
) -> None:
    kms = SlowKms(tmp_path / "keys", delay=0.2)
    kms.ensure_platform_key()
    cipher = FieldCipher(Keyring(kms, store))
    sealed = cipher.seal(binding(), b"hello")  # creates the key (cached)

    cold = Keyring(kms, store)  # another process start: empty cache
    cold_cipher = FieldCipher(cold)
    barrier = threading.Barrier(16)
    results: list[bytes] = []

    def reader() -> None:
        barrier.wait()
        results.append(cold_cipher.open(binding(), sealed))

    threads = [threading.Thread(target=reader) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [b"hello"] * 16
    assert kms.unwraps == 1
    assert cold.kms_calls == 1


def test_concurrent_first_writes_create_one_data_key(
    tmp_path: Path, store: InMemoryWrappedKeyStore
) -> None:
    kms = SlowKms(tmp_path / "keys", delay=0.1)
    kms.ensure_platform_key()
    keyring = Keyring(kms, store)
    barrier = threading.Barrier(8)
    found: list[DataKey] = []

    def writer() -> None:
        barrier.wait()
        found.append(keyring.encryption_key("dlr_new", RECORDS))

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(k) for k in found}) == 1
    assert keyring.kms_calls == 1
    assert len(list(store.list_keys("dlr_new"))) == 1


def test_two_processes_racing_to_create_share_one_generation(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    one, two = Keyring(kms, store), Keyring(kms, store)
    a = one.encryption_key("dlr_a", RECORDS)
    b = two.encryption_key("dlr_a", RECORDS)
    assert (a.keyset_id, a.version) == (b.keyset_id, b.version)


def test_a_failed_kms_call_is_not_cached_and_waiters_see_the_error(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    class Down(LocalKms):
        def generate_data_key(self, key_ref: str, context: EncryptionContext) -> GeneratedDataKey:
            raise KmsError("Transit unreachable: ConnectError.")

    keyring = Keyring(Down(kms._file.directory), store)
    with pytest.raises(KmsError):
        keyring.encryption_key("dlr_a", RECORDS)
    keyring = Keyring(kms, store)
    assert keyring.encryption_key("dlr_a", RECORDS).version == 1


def test_spent_budget_moves_to_a_new_generation(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    keyring = Keyring(kms, store, max_messages=10, reservation=4)
    cipher = FieldCipher(keyring)
    sealed = [cipher.seal(binding(record=f"r{i}"), f"v{i}".encode()) for i in range(25)]
    per_version = Counter(envelope.key_ref(value)[1] for value in sealed)
    # Blocks of 4 under a limit of 10: a generation gets two blocks (8 invocations, of which a
    # refused attempt before each top-up is one), then the next generation takes over.
    assert sum(per_version.values()) == 25
    assert len(per_version) > 1
    assert max(per_version.values()) <= 8
    rows = sorted(store.list_keys("dlr_a"), key=lambda row: row.version)
    assert all(row.messages_reserved <= 10 for row in rows)
    assert [row.retired for row in rows] == [True] * (len(rows) - 1) + [False]
    for i, value in enumerate(sealed):  # every generation still decrypts
        assert cipher.open(binding(record=f"r{i}"), value) == f"v{i}".encode()


def test_budget_is_shared_between_processes_through_the_store(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    one = Keyring(kms, store, max_messages=8, reservation=4)
    two = Keyring(kms, store, max_messages=8, reservation=4)
    a = one.encryption_key("dlr_a", RECORDS)
    b = two.encryption_key("dlr_a", RECORDS)
    assert a.version == b.version == 1  # two blocks of 4: exactly the limit
    three = Keyring(kms, store, max_messages=8, reservation=4)
    assert three.encryption_key("dlr_a", RECORDS).version == 2


def test_rotated_data_key_serves_new_writes_and_old_data_stays_readable(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    keyring = Keyring(kms, store)
    cipher = FieldCipher(keyring)
    old = cipher.seal(binding(), b"before")
    new_key = keyring.rotate_data_key("dlr_a", RECORDS)
    assert new_key.version == 2
    new = cipher.seal(binding(), b"after")
    assert new[17:21] == (2).to_bytes(4, "big")
    assert cipher.open(binding(), old) == b"before"
    assert cipher.open(binding(), new) == b"after"


def test_rewrap_after_kek_rotation_keeps_everything_readable(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    keyring = Keyring(kms, store)
    cipher = FieldCipher(keyring)
    sealed = cipher.seal(binding(), b"survives rotation")
    before = {row.keyset_id: row.wrapped for row in store.list_keys()}
    kms.rotate("platform")
    done = list(keyring.rewrap())
    assert len(done) == 1
    after = {row.keyset_id: row.wrapped for row in store.list_keys()}
    assert after != before
    assert after[next(iter(after))][3:7] == (2).to_bytes(4, "big")  # now under KEK v2
    assert FieldCipher(Keyring(kms, store)).open(binding(), sealed) == b"survives rotation"


def test_enterprise_dealer_keys_are_wrapped_by_its_own_kek(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    enterprise = {"dlr_ent": kms.create_tenant_key("dlr_ent")}
    keyring = Keyring(kms, store, kek_for=lambda d: enterprise.get(d, kms.platform_key_ref))
    keyring.encryption_key("dlr_ent", RECORDS)
    keyring.encryption_key("dlr_std", RECORDS)
    refs = {row.dealer_id: row.kms_key_ref for row in store.list_keys()}
    assert refs == {"dlr_ent": "dealer-dlr_ent", "dlr_std": "platform"}


def test_rewrap_moves_keys_made_under_the_platform_kek_to_the_dealers_own(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    """Dealers from before every dealer had a KEK: their generations are under the platform
    KEK until `vigil kms rewrap` moves them; new generations already use the dealer's."""
    before = Keyring(kms, store)  # kek_for: the platform KEK for everyone
    sealed = FieldCipher(before).seal(binding("dlr_old"), b"made under the platform KEK")
    own = {"dlr_old": kms.create_dealer_key("dlr_old")}
    after = Keyring(kms, store, kek_for=lambda d: own.get(d, kms.platform_key_ref))
    assert [row.kms_key_ref for row in store.list_keys("dlr_old")] == ["platform"]
    assert len(list(after.rewrap())) == 1
    assert [row.kms_key_ref for row in store.list_keys("dlr_old")] == ["standard-dlr_old"]
    fresh = FieldCipher(Keyring(kms, store))
    assert fresh.open(binding("dlr_old"), sealed) == b"made under the platform KEK"
    kms.destroy_tenant_key("standard-dlr_old")
    with pytest.raises(KmsError):
        FieldCipher(Keyring(kms, store)).open(binding("dlr_old"), sealed)


def test_crypto_shredding_makes_a_dealer_unreadable(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    keyring = Keyring(kms, store)
    cipher = FieldCipher(keyring)
    gone = cipher.seal(binding("dlr_a"), b"to be shredded")
    kept = cipher.seal(binding("dlr_b"), b"untouched")
    key = keyring.encryption_key("dlr_a", RECORDS)
    assert store.delete_dealer("dlr_a") == 1
    keyring.forget_dealer("dlr_a")
    assert key.destroyed
    with pytest.raises(KeyUnavailable):
        cipher.open(binding("dlr_a"), gone)
    with pytest.raises(KeyUnavailable):
        FieldCipher(Keyring(kms, store)).open(binding("dlr_a"), gone)
    assert cipher.open(binding("dlr_b"), kept) == b"untouched"


def test_wrapped_keys_are_never_printed(kms: LocalKms, store: InMemoryWrappedKeyStore) -> None:
    keyring = Keyring(kms, store)
    key = keyring.encryption_key("dlr_a", RECORDS)
    row = next(store.list_keys())
    assert repr(row.wrapped) not in repr(row)
    assert key.reveal().hex() not in repr(key)


def test_forged_header_naming_another_dealers_key_makes_no_kms_call(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    FieldCipher(Keyring(kms, store)).seal(binding("dlr_a"), b"a")
    victim = next(store.list_keys("dlr_a"))
    keyring = Keyring(kms, store)  # cold cache
    with pytest.raises(KeyUnavailable):
        keyring.decryption_key("dlr_b", RECORDS, victim.keyset_id, victim.version)
    assert keyring.kms_calls == 0


def test_object_cipher_streams_under_the_dealers_object_keys(
    kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    keyring = Keyring(kms, store)
    objects = ObjectCipher(keyring)
    snapshot = Binding("dlr_a", "production", "snapshot", "snp_1", "content")
    data = os.urandom(3 * streaming.SEGMENT_SIZE + 5)
    stored = b"".join(objects.encrypt(snapshot, [data[:100_000], data[100_000:]]))
    assert b"".join(objects.decrypt(snapshot, [stored])) == data
    assert {row.purpose for row in store.list_keys("dlr_a")} == {Purpose.OBJECTS}
    plan = streaming.plan_range(70_000, 140_000, len(stored))
    header = stored[: streaming.HEADER_SIZE]
    span = stored[plan.ciphertext_start : plan.ciphertext_stop]
    assert b"".join(objects.decrypt_range(snapshot, header, plan, [span])) == data[70_000:140_000]
    stolen = Binding("dlr_b", "production", "snapshot", "snp_1", "content")
    with pytest.raises(KeyUnavailable):
        b"".join(objects.decrypt(stolen, [stored]))


def test_keyring_from_settings_uses_the_cache_settings(
    tmp_path: Path, kms: LocalKms, store: InMemoryWrappedKeyStore
) -> None:
    settings = Settings(home=tmp_path, key_cache_size=1, key_cache_ttl_seconds=5)
    keyring = Keyring.from_settings(settings, kms, store)
    first = keyring.encryption_key("dlr_a", RECORDS)
    keyring.encryption_key("dlr_b", RECORDS)
    assert first.destroyed  # bound of one entry
