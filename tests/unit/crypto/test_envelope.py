"""Envelope encryption: round trips, AAD binding, tampering, wrong keys, message budget."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.crypto.conftest import MakeKey

from vigil.crypto import envelope
from vigil.crypto.binding import Binding, BindingScope
from vigil.crypto.errors import (
    DataKeyExhausted,
    DecryptionFailed,
    InvalidBinding,
    MalformedCiphertext,
)


def test_round_trip_returns_the_plaintext(make_key: MakeKey, binding: Binding) -> None:
    key = make_key()
    sealed = envelope.seal(key, binding, b"panel 3 tamper, zone 12")
    assert envelope.open_value(key, binding, sealed) == b"panel 3 tamper, zone 12"
    assert b"tamper" not in sealed
    assert len(sealed) == len(b"panel 3 tamper, zone 12") + envelope.OVERHEAD


@given(st.binary(max_size=4096))
def test_round_trip_any_value(value: bytes) -> None:
    from vigil.crypto.datakey import DataKey
    from vigil.crypto.material import SecretKey

    key = DataKey(
        SecretKey(bytes(32)), keyset_id=bytes(16), version=1, dealer_id="d", purpose="r", budget=9
    )
    b = Binding("d", "sandbox", "t", "1", "f")
    assert envelope.open_value(key, b, memoryview(envelope.seal(key, b, value))) == value


def test_header_names_the_key(make_key: MakeKey, binding: Binding) -> None:
    key = make_key(version=7)
    sealed = envelope.seal(key, binding, b"x")
    assert envelope.key_ref(sealed) == (key.keyset_id, 7)
    assert sealed[0] == 1  # format version


def test_same_plaintext_gives_different_ciphertexts(make_key: MakeKey, binding: Binding) -> None:
    key = make_key()
    assert envelope.seal(key, binding, b"same") != envelope.seal(key, binding, b"same")


@pytest.mark.parametrize(
    "moved",
    [
        Binding("dlr_b", "production", "alarm", "alm_1", "details"),  # another tenant
        Binding("dlr_a", "sandbox", "alarm", "alm_1", "details"),  # another environment
        Binding("dlr_a", "production", "annotation", "alm_1", "details"),  # another record type
        Binding("dlr_a", "production", "alarm", "alm_2", "details"),  # another record
        Binding("dlr_a", "production", "alarm", "alm_1", "timeline"),  # another field
    ],
    ids=["tenant", "environment", "record_type", "record_id", "field"],
)
def test_ciphertext_moved_elsewhere_fails(
    make_key: MakeKey, binding: Binding, moved: Binding
) -> None:
    key = make_key()
    sealed = envelope.seal(key, binding, b"alarm details")
    with pytest.raises(DecryptionFailed):
        envelope.open_value(key, moved, sealed)


def test_binding_encoding_is_unambiguous() -> None:
    # Shifting text between adjacent fields must not give the same AAD.
    assert Binding("a", "b", "c", "d", "ef").aad != Binding("a", "b", "c", "de", "f").aad
    with pytest.raises(InvalidBinding):
        Binding("a\0b", "x", "y", "z", "w")
    with pytest.raises(InvalidBinding):
        Binding("a", "", "y", "z", "w")


def test_every_flipped_bit_fails(make_key: MakeKey, binding: Binding) -> None:
    key = make_key(budget=10)
    sealed = envelope.seal(key, binding, b"0123456789")
    for bit in range(len(sealed) * 8):
        tampered = bytearray(sealed)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(DecryptionFailed):
            envelope.open_value(key, binding, bytes(tampered))


def test_truncated_value_fails(make_key: MakeKey, binding: Binding) -> None:
    key = make_key()
    sealed = envelope.seal(key, binding, b"0123456789")
    for cut in range(len(sealed)):
        with pytest.raises(DecryptionFailed):
            envelope.open_value(key, binding, sealed[:cut])
    with pytest.raises(MalformedCiphertext):
        envelope.key_ref(sealed[:10])


def test_wrong_key_fails_even_with_a_forged_header(make_key: MakeKey, binding: Binding) -> None:
    right, wrong = make_key(), make_key()
    sealed = envelope.seal(right, binding, b"secret")
    with pytest.raises(DecryptionFailed):
        envelope.open_value(wrong, binding, sealed)
    forged = wrong.header + sealed[envelope.HEADER_SIZE :]
    with pytest.raises(DecryptionFailed):
        envelope.open_value(wrong, binding, forged)


def test_message_budget_forces_a_new_key(make_key: MakeKey, binding: Binding) -> None:
    key = make_key(budget=3)
    for _ in range(3):
        envelope.seal(key, binding, b"x")
    with pytest.raises(DataKeyExhausted):
        envelope.seal(key, binding, b"x")
    # Refused attempts are counted too (the counter is an upper bound on invocations), so a
    # one-message top-up is already used by the refusal above.
    key.extend_budget(1)
    with pytest.raises(DataKeyExhausted):
        envelope.seal(key, binding, b"x")
    key.extend_budget(10)
    envelope.seal(key, binding, b"x")
    assert key.has_budget()


def test_key_material_never_printed(make_key: MakeKey) -> None:
    key = make_key()
    raw = key.reveal()
    for text in (repr(key), str(key), repr(key._secret)):
        assert raw.hex() not in text
        assert repr(raw) not in text


def test_destroyed_key_refuses_to_reveal(make_key: MakeKey, binding: Binding) -> None:
    key = make_key()
    sealed = envelope.seal(key, binding, b"x")
    key.destroy()
    with pytest.raises(ValueError, match="destroyed"):
        key.reveal()
    # Values sealed before still open with the AES-GCM state already built (OpenSSL's copy).
    assert envelope.open_value(key, binding, sealed) == b"x"


@pytest.mark.parametrize("size", [envelope.LARGE - 1, envelope.LARGE, envelope.LARGE + 1, 1 << 20])
def test_small_and_large_paths_share_one_format(
    make_key: MakeKey, binding: Binding, size: int
) -> None:
    key = make_key()
    plaintext = os.urandom(size)
    sealed = envelope.seal(key, binding, plaintext)
    assert len(sealed) == size + envelope.OVERHEAD
    assert envelope.open_value(key, binding, sealed) == plaintext
    # Plain AES-GCM over the documented layout reads it: no hidden framing on either path.
    raw = AESGCM(key.reveal()).decrypt(
        bytes(sealed[21:33]), bytes(sealed[33:]), bytes(sealed[:21]) + binding.aad
    )
    assert raw == plaintext
    tampered = bytearray(sealed)
    tampered[size // 2 + 33] ^= 0x80
    with pytest.raises(DecryptionFailed):
        envelope.open_value(key, binding, tampered)


def test_destroyed_key_cannot_seal_large_values(make_key: MakeKey, binding: Binding) -> None:
    key = make_key()
    key.destroy()
    with pytest.raises(ValueError, match="destroyed"):
        envelope.seal(key, binding, bytes(envelope.LARGE))


def test_binding_scope_binds_like_a_full_binding(make_key: MakeKey) -> None:
    scope = BindingScope("dlr_a", "production", "alarm")
    bound = scope.bind("alm_1", "details")
    assert bound == Binding("dlr_a", "production", "alarm", "alm_1", "details")
    assert bound.aad == Binding("dlr_a", "production", "alarm", "alm_1", "details").aad
    assert (bound.tenant, bound.record_id, bound.field) == ("dlr_a", "alm_1", "details")
    key = make_key()
    sealed = envelope.seal(key, bound, b"x")
    assert envelope.open_value(key, Binding(*bound[1:]), sealed) == b"x"
    with pytest.raises(DecryptionFailed):
        envelope.open_value(key, scope.bind("alm_2", "details"), sealed)
    for bad in (("", "f"), ("r", ""), ("r\0x", "f"), ("r", "f\0")):
        with pytest.raises(InvalidBinding):
            scope.bind(*bad)
    with pytest.raises(InvalidBinding):
        BindingScope("dlr\0a", "production", "alarm")
