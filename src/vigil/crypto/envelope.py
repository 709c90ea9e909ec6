"""Field-level envelope encryption: AES-256-GCM with a versioned header and AAD binding.

Layout of one sealed value (33 bytes of overhead before the ciphertext, 16 after)::

    offset  size  field
    0       1     format version (1)
    1       16    keyset id      (which tenant/purpose data keys)
    17      4     key version    (big-endian generation within the keyset)
    21      12    nonce          (random, `os.urandom`)
    33      n     ciphertext
    33+n    16    GCM tag

Associated data = bytes 0..21 (the key header) followed by `Binding.aad` (tenant, environment,
record type, record id, field). The nonce is GCM's IV and so already authenticated. Moving the
value to another row, column, tenant or environment, editing the header, or flipping any bit
makes `open_value` raise `DecryptionFailed`.

Nonces are random 96-bit values (NIST SP 800-38D section 8.2.2); `DataKey.charge` keeps each key
far below the 2^32-message bound that choice implies.

Speed: the header and its part of the AAD are precomputed per key, the binding's per record.
Small values take one `AESGCM.encrypt` and one concatenation (copying a few KiB is cheaper than
setting up anything else). Large values (>= 64 KiB) are encrypted with `update_into` straight
into one preallocated buffer that already holds the header, because `cryptography` < 47 (pinned
by sslyze) has no `AESGCM.encrypt_into` and concatenating would copy the whole value again; they
are returned as that `bytearray`. On decryption large ciphertexts are passed as a `memoryview`, so
nothing is copied before AES runs.
"""

from __future__ import annotations

import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vigil.crypto.binding import Binding
from vigil.crypto.datakey import FORMAT_VERSION, KEY_HEADER, DataKey
from vigil.crypto.errors import DataKeyExhausted, DecryptionFailed, MalformedCiphertext

NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
HEADER_SIZE: Final = KEY_HEADER.size  # 21
PREFIX_SIZE: Final = HEADER_SIZE + NONCE_SIZE  # 33
OVERHEAD: Final = PREFIX_SIZE + TAG_SIZE  # 49

LARGE: Final = 64 * 1024

_urandom = os.urandom
_FORMAT_BYTE: Final = FORMAT_VERSION


def seal(
    key: DataKey, binding: Binding, plaintext: bytes | bytearray | memoryview
) -> bytes | bytearray:
    """Encrypt `plaintext` under `key`, bound to `binding`."""
    # Inlined `DataKey.charge`, and `binding[0]` is `binding.aad`: one call less each.
    if next(key.counter) >= key.budget_end:
        raise DataKeyExhausted("data key message budget spent")
    nonce = _urandom(12)
    header = key.header
    if len(plaintext) < LARGE:
        return header + nonce + key.encrypt(nonce, plaintext, header + binding[0])
    return _seal_large(key, nonce, header + binding[0], plaintext)


def _seal_large(
    key: DataKey, nonce: bytes, aad: bytes, plaintext: bytes | bytearray | memoryview
) -> bytearray:
    size = len(plaintext)
    out = bytearray(PREFIX_SIZE + size + TAG_SIZE)
    out[:HEADER_SIZE] = key.header
    out[HEADER_SIZE:PREFIX_SIZE] = nonce
    # `reveal` refuses a destroyed key, so an evicted key can never encrypt under zeros.
    encryptor = Cipher(algorithms.AES(key.reveal()), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    with memoryview(out) as view:
        # update_into wants room for one extra block; the tag's 16 bytes provide it.
        written = encryptor.update_into(plaintext, view[PREFIX_SIZE:])
        encryptor.finalize()
        if written != size:
            raise AssertionError("AES-GCM wrote an unexpected length")
        view[PREFIX_SIZE + size :] = encryptor.tag
    return out


def key_ref(sealed: bytes | bytearray | memoryview) -> tuple[bytes, int]:
    """(keyset id, key version) of a sealed value: which data key `open_value` needs."""
    if len(sealed) < OVERHEAD or sealed[0] != _FORMAT_BYTE:
        raise MalformedCiphertext("Not a sealed value of a known format.")
    _, keyset_id, version = KEY_HEADER.unpack_from(sealed)
    return keyset_id, version


def open_value(key: DataKey, binding: Binding, sealed: bytes | bytearray | memoryview) -> bytes:
    """Decrypt a value produced by `seal`, checking it was sealed for exactly this binding."""
    header = key.header
    size = len(sealed)
    # Literal offsets (21 = HEADER_SIZE, 33 = PREFIX_SIZE, 49 = OVERHEAD): module constant
    # lookups are measurable on the 1 KiB path.
    if size < 49 or sealed[:21] != header:
        # Wrong format or a different key than the header names: the caller fetched the key with
        # `key_ref`, so this is tampering or a mix-up, reported like any other failure.
        raise DecryptionFailed()
    if size >= LARGE:
        sealed = memoryview(sealed)  # slices of a view are not copies
    try:
        return key.decrypt(sealed[21:33], sealed[33:], header + binding[0])
    except InvalidTag:
        raise DecryptionFailed() from None
