"""Key material that does not leak by accident.

`SecretKey` keeps the bytes in a `bytearray` so they can be overwritten when the key is dropped
(`destroy`). Python cannot promise more: `bytes` objects made from it (HKDF input, KMS responses,
base64 decoding) and OpenSSL's own key schedule inside `AESGCM` are copies we cannot reach. What we
can promise is that the material never appears in a `repr`, a log line or an exception.
"""

from __future__ import annotations

import hmac
from typing import NoReturn


class SecretKey:
    """A symmetric key: length-checked, unprintable, zeroed on `destroy`."""

    __slots__ = ("_buf", "_destroyed")

    def __init__(self, material: bytes | bytearray | memoryview) -> None:
        if len(material) != 32:
            raise ValueError("a key must be 32 bytes (AES-256)")
        self._buf = bytearray(material)
        self._destroyed = False

    def reveal(self) -> bytes:
        """A copy of the material for a primitive that needs it. Checked *after* copying, so a
        concurrent `destroy` (which flags before zeroing) can never hand out zeros as a key."""
        copy = bytes(self._buf)
        if self._destroyed:
            raise ValueError("key was destroyed")
        return copy

    def destroy(self) -> None:
        self._destroyed = True
        for index in range(len(self._buf)):
            self._buf[index] = 0

    @property
    def destroyed(self) -> bool:
        return self._destroyed

    def equals(self, other: SecretKey) -> bool:
        return hmac.compare_digest(self._buf, other._buf)

    def __repr__(self) -> str:
        return "<SecretKey destroyed>" if self._destroyed else "<SecretKey 256-bit>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("key material is not picklable")
