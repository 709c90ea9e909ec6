"""Push-mode STREAM (`StreamSealer`, used by upload writers) produces streams the pull-mode
decryptor accepts, whatever the chunking, and only for the binding it was made with."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.crypto.binding import Binding
from vigil.crypto.errors import DecryptionFailed
from vigil.crypto.keyring import Keyring
from vigil.crypto.keystore import InMemoryWrappedKeyStore, Purpose
from vigil.crypto.kms.local import LocalKms
from vigil.crypto.streaming import SEGMENT_SIZE, StreamSealer, decrypt_stream

BINDING = Binding("dlr_a", "sandbox", "object", "snp_1", "content")


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    kms = LocalKms(tmp_path_factory.mktemp("kms"))
    kms.ensure_platform_key()
    return Keyring(kms, InMemoryWrappedKeyStore())


def _seal(ring: Keyring, data: bytes, chunk: int, binding: Binding = BINDING) -> list[bytes]:
    sealer = StreamSealer(ring.encryption_key(binding.tenant, Purpose.OBJECTS), binding)
    out = [sealer.header]
    for i in range(0, len(data), chunk):
        out += sealer.update(data[i : i + chunk])
    return [*out, sealer.finish()]


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from(
        [0, 1, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE]
    ),
    chunk=st.integers(min_value=1, max_value=2 * SEGMENT_SIZE + 3),
)
def test_push_sealed_streams_round_trip(ring: Keyring, size: int, chunk: int) -> None:
    data = os.urandom(size)
    sealed = _seal(ring, data, chunk)
    resolver = ring.resolver("dlr_a", Purpose.OBJECTS)
    assert b"".join(decrypt_stream(resolver, BINDING, sealed)) == data


def test_a_push_sealed_stream_fails_under_another_binding(ring: Keyring) -> None:
    sealed = _seal(ring, os.urandom(SEGMENT_SIZE + 10), 4096)
    other = BINDING.with_field("thumbnail")
    with pytest.raises(DecryptionFailed):
        list(decrypt_stream(ring.resolver("dlr_a", Purpose.OBJECTS), other, sealed))


def test_a_caller_may_reuse_its_buffer_once_update_returns(ring: Keyring) -> None:
    # Full segments are sealed straight from the caller's chunk; the held tail must be a copy.
    data = os.urandom(3 * SEGMENT_SIZE + 100)
    sealer = StreamSealer(ring.encryption_key("dlr_a", Purpose.OBJECTS), BINDING)
    out = [sealer.header]
    buffer = bytearray(2 * SEGMENT_SIZE + 50)
    for start in range(0, len(data), len(buffer)):
        piece = data[start : start + len(buffer)]
        buffer[: len(piece)] = piece
        out += sealer.update(memoryview(buffer)[: len(piece)])
        buffer[:] = bytes(len(buffer))  # the producer overwrites its buffer
    out.append(sealer.finish())
    assert b"".join(decrypt_stream(ring.resolver("dlr_a", Purpose.OBJECTS), BINDING, out)) == data
