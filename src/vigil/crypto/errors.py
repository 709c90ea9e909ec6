"""Crypto failures as types the fronts already know how to map (`core/errors.py`).

Messages name what failed, never key material, plaintext or ciphertext bytes: exceptions end up in
logs and problem documents, and both outlive the keys they would otherwise leak.
"""

from __future__ import annotations

from vigil.core.errors import VigilError


class CryptoError(VigilError):
    """Stored data could not be protected or recovered; the caller did nothing wrong."""

    status = 500
    code = "crypto_error"
    title = "Encryption error"


class DecryptionFailed(CryptoError):
    """Authentication failed: wrong key, wrong binding (tenant, record, field), tampering,
    truncation or reordering. Deliberately one type with one message, so the failure does not
    tell an attacker which of these it was.

    409, not 500: the request was fine and the server did not fail; the stored record did (it
    was moved, edited or belongs elsewhere). A typed answer lets operators tell tampering from
    bugs, and no request can make the server "crash" by pointing it at a bad row."""

    status = 409
    code = "integrity_check_failed"
    title = "Stored data failed its integrity check"

    def __init__(self, detail: str = "Ciphertext failed authentication.") -> None:
        super().__init__(detail)


class MalformedCiphertext(DecryptionFailed):
    """The bytes are not in a format this version reads (bad header, impossible length)."""


class InvalidBinding(CryptoError):
    """An AAD binding field is empty or contains a NUL byte (which would make the encoding
    ambiguous). A programming error, not a data error."""

    status = 500


class DataKeyExhausted(CryptoError):
    """This process used up the messages reserved for a data key (NIST SP 800-38D section 8.3:
    at most 2^32 invocations with random 96-bit nonces). The keyring reserves more or moves to a
    new data key; callers normally never see this."""


class KeyUnavailable(CryptoError):
    """A data key is unknown, destroyed (crypto-shredded) or belongs to another tenant."""

    status = 404
    code = "key_unavailable"
    title = "Key unavailable"


class KmsError(CryptoError):
    """The KMS refused or failed an operation (unreachable, denied, bad wrapped key)."""

    status = 503
    code = "kms_unavailable"
    title = "Key management unavailable"
