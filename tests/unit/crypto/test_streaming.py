"""STREAM segmented AEAD: round trips around segment boundaries, tampering, range reads."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.crypto.conftest import MakeKey

from vigil.core.errors import RangeNotSatisfiable
from vigil.crypto import streaming
from vigil.crypto.binding import Binding
from vigil.crypto.datakey import DataKey
from vigil.crypto.errors import DecryptionFailed, KeyUnavailable, MalformedCiphertext
from vigil.crypto.material import SecretKey
from vigil.crypto.streaming import (
    CIPHER_SEGMENT_SIZE,
    HEADER_SIZE,
    SEGMENT_SIZE,
    decrypt_range,
    decrypt_stream,
    encrypt_stream,
    plaintext_size,
    plan_range,
)

S = SEGMENT_SIZE
BOUNDARY_SIZES = [0, 1, S - 1, S, S + 1, 2 * S - 1, 2 * S, 2 * S + 1, 3 * S + 17]
KEY = DataKey(
    SecretKey(os.urandom(32)), keyset_id=os.urandom(16), version=3, dealer_id="d", purpose="o"
)
BINDING = Binding("dlr_a", "production", "snapshot", "snp_1", "content")
DATA = os.urandom(3 * S + 100)


def resolve(keyset_id: bytes, version: int) -> DataKey:
    """Like `Keyring.resolver`: a header naming any other key finds nothing."""
    if (keyset_id, version) != (KEY.keyset_id, KEY.version):
        raise KeyUnavailable("No such key for this tenant.")
    return KEY


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def encrypt(data: bytes, chunk: int = 10_000, binding: Binding = BINDING) -> bytes:
    return b"".join(encrypt_stream(KEY, binding, chunked(data, chunk)))


def decrypt(ciphertext: bytes, chunk: int = 7_777, binding: Binding = BINDING) -> bytes:
    return b"".join(decrypt_stream(resolve, binding, chunked(ciphertext, chunk)))


def segments(ciphertext: bytes) -> tuple[bytes, list[bytes]]:
    body = ciphertext[HEADER_SIZE:]
    return ciphertext[:HEADER_SIZE], [
        body[i : i + CIPHER_SEGMENT_SIZE] for i in range(0, len(body), CIPHER_SEGMENT_SIZE)
    ]


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_round_trip_at_segment_boundaries(size: int) -> None:
    plaintext = DATA[:size]
    ciphertext = encrypt(plaintext)
    assert len(ciphertext) == streaming.ciphertext_size(size)
    assert plaintext_size(len(ciphertext)) == size
    assert decrypt(ciphertext) == plaintext


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(
        st.sampled_from(BOUNDARY_SIZES),
        st.integers(min_value=0, max_value=3 * S + 100),
        st.sampled_from(BOUNDARY_SIZES).flatmap(
            lambda b: st.integers(max(0, b - 3), min(len(DATA), b + 3))
        ),
    ),
    in_chunk=st.integers(min_value=1, max_value=2 * S + 5),
    out_chunk=st.integers(min_value=1, max_value=2 * S + 5),
    mutable=st.booleans(),
)
def test_round_trip_property(size: int, in_chunk: int, out_chunk: int, mutable: bool) -> None:
    """Any size, cut into input and ciphertext chunks of any size, comes back identical."""
    plaintext = DATA[:size]
    pieces: list[bytes | bytearray] = [
        bytearray(p) if mutable else p for p in chunked(plaintext, in_chunk)
    ]
    ciphertext = b"".join(encrypt_stream(KEY, BINDING, pieces))
    assert plaintext_size(len(ciphertext)) == size
    assert decrypt(ciphertext, out_chunk) == plaintext


def test_mutable_input_buffers_reused_by_the_producer_are_safe() -> None:
    buffer = bytearray(S)

    def producer() -> object:
        for i in range(3):
            buffer[:] = DATA[i * S : (i + 1) * S]
            yield buffer  # the same object every time, overwritten after we move on

    ciphertext = b"".join(encrypt_stream(KEY, BINDING, producer()))  # type: ignore[arg-type]
    assert decrypt(ciphertext) == DATA[: 3 * S]


def test_memory_stays_flat_one_segment_per_output_chunk() -> None:
    out = list(encrypt_stream(KEY, BINDING, chunked(DATA, 1_000_000)))
    assert len(out[0]) == HEADER_SIZE
    assert all(len(c) <= CIPHER_SEGMENT_SIZE for c in out[1:])


@pytest.mark.parametrize("size", [0, S, 2 * S, 2 * S + 5])
def test_truncation_at_a_segment_boundary_fails(size: int) -> None:
    header, segs = segments(encrypt(DATA[:size]))
    for keep in range(len(segs)):
        with pytest.raises((DecryptionFailed, MalformedCiphertext)):
            decrypt(header + b"".join(segs[:keep]))


def test_truncation_inside_a_segment_fails() -> None:
    ciphertext = encrypt(DATA[: 2 * S + 5])
    for cut in (1, 15, 16, 17, CIPHER_SEGMENT_SIZE - 1, CIPHER_SEGMENT_SIZE + HEADER_SIZE + 3):
        with pytest.raises((DecryptionFailed, MalformedCiphertext)):
            decrypt(ciphertext[:-cut])


def test_reordered_segments_fail() -> None:
    header, segs = segments(encrypt(DATA[: 3 * S]))
    with pytest.raises(DecryptionFailed):
        decrypt(header + segs[1] + segs[0] + segs[2])


def test_duplicated_segment_fails() -> None:
    header, segs = segments(encrypt(DATA[: 2 * S + 1]))
    with pytest.raises(DecryptionFailed):
        decrypt(header + segs[0] + segs[0] + segs[1] + segs[2])


def test_spliced_from_another_object_fails() -> None:
    header_a, segs_a = segments(encrypt(DATA[: 2 * S + 1]))
    _, segs_b = segments(encrypt(DATA[: 2 * S + 1]))  # same key, same plaintext, new object
    with pytest.raises(DecryptionFailed):
        decrypt(header_a + segs_a[0] + segs_b[1] + segs_a[2])


def test_appended_data_after_the_last_segment_fails() -> None:
    ciphertext = encrypt(DATA[: S + 3])
    with pytest.raises(DecryptionFailed):
        decrypt(ciphertext + os.urandom(40))


def test_stream_moved_to_another_object_or_tenant_fails() -> None:
    ciphertext = encrypt(DATA[:1000])
    for other in (
        BINDING.with_field("thumbnail"),
        Binding("dlr_b", "production", "snapshot", "snp_1", "content"),
    ):
        with pytest.raises(DecryptionFailed):
            decrypt(ciphertext, binding=other)


@pytest.mark.parametrize("position", [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + S, -1])
def test_flipped_bits_fail(position: int) -> None:
    tampered = bytearray(encrypt(DATA[: 2 * S + 9]))
    tampered[position] ^= 0x01
    # Format byte: malformed; key id or version: no such key; anything else: authentication.
    with pytest.raises((DecryptionFailed, MalformedCiphertext, KeyUnavailable)):
        decrypt(bytes(tampered))


def test_wrong_key_fails() -> None:
    other = DataKey(
        SecretKey(os.urandom(32)), keyset_id=KEY.keyset_id, version=3, dealer_id="d", purpose="o"
    )
    with pytest.raises(DecryptionFailed):
        b"".join(decrypt_stream(lambda _k, _v: other, BINDING, [encrypt(DATA[:100])]))


@pytest.mark.parametrize("bad", [0, HEADER_SIZE, HEADER_SIZE + 15, HEADER_SIZE + S + 16 + 16])
def test_impossible_sizes_are_rejected_without_a_key(bad: int) -> None:
    with pytest.raises(MalformedCiphertext):
        plaintext_size(bad)


RANGE_OBJECT_SIZE = 3 * S + 100
RANGE_CIPHERTEXT = encrypt(DATA[:RANGE_OBJECT_SIZE])


def read_range(start: int, stop: int | None, chunk: int = 5000) -> tuple[bytes, int]:
    plan = plan_range(start, stop, len(RANGE_CIPHERTEXT))
    span = RANGE_CIPHERTEXT[plan.ciphertext_start : plan.ciphertext_stop]
    out = decrypt_range(
        resolve, BINDING, RANGE_CIPHERTEXT[:HEADER_SIZE], plan, chunked(span, chunk)
    )
    return b"".join(out), plan.last_segment - plan.first_segment + 1


@settings(max_examples=80, deadline=None)
@given(st.integers(0, RANGE_OBJECT_SIZE - 1), st.integers(1, RANGE_OBJECT_SIZE + 10))
def test_range_decryption_matches_the_plaintext(start: int, length: int) -> None:
    got, _ = read_range(start, start + length)
    assert got == DATA[start : min(start + length, RANGE_OBJECT_SIZE)]


def test_range_decrypts_only_the_segments_it_needs() -> None:
    got, segments_read = read_range(S + 10, S + 20)
    assert got == DATA[S + 10 : S + 20]
    assert segments_read == 1
    got, segments_read = read_range(S - 1, S + 1)
    assert (got, segments_read) == (DATA[S - 1 : S + 1], 2)
    got, _ = read_range(3 * S + 50, None)  # open-ended: to the end, last segment flag checked
    assert got == DATA[3 * S + 50 : RANGE_OBJECT_SIZE]


def test_range_outside_the_object_is_not_satisfiable() -> None:
    with pytest.raises(RangeNotSatisfiable):
        plan_range(RANGE_OBJECT_SIZE, None, len(RANGE_CIPHERTEXT))
    with pytest.raises(RangeNotSatisfiable):
        plan_range(0, None, len(encrypt(b"")))


def test_range_with_bytes_from_another_segment_fails() -> None:
    plan = plan_range(S + 10, S + 20, len(RANGE_CIPHERTEXT))
    wrong = RANGE_CIPHERTEXT[HEADER_SIZE : HEADER_SIZE + CIPHER_SEGMENT_SIZE]  # segment 0
    with pytest.raises(DecryptionFailed):
        b"".join(decrypt_range(resolve, BINDING, RANGE_CIPHERTEXT[:HEADER_SIZE], plan, [wrong]))


def test_range_truncated_fails() -> None:
    plan = plan_range(S + 10, 2 * S + 20, len(RANGE_CIPHERTEXT))
    span = RANGE_CIPHERTEXT[plan.ciphertext_start : plan.ciphertext_stop - 1]
    with pytest.raises(DecryptionFailed):
        b"".join(decrypt_range(resolve, BINDING, RANGE_CIPHERTEXT[:HEADER_SIZE], plan, [span]))


def test_stream_key_is_derived_per_object(make_key: MakeKey) -> None:
    """Two objects under one data key never share a GCM key: the same plaintext at the same
    segment index gives unrelated ciphertexts (the HKDF salt differs)."""
    key = make_key(purpose="objects")
    one = b"".join(encrypt_stream(key, BINDING, [b"a" * 100]))
    two = b"".join(encrypt_stream(key, BINDING, [b"a" * 100]))
    assert one[HEADER_SIZE:] != two[HEADER_SIZE:]
    assert key.uses == 0  # objects do not spend the data key's GCM message budget
