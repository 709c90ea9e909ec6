"""Audit record details at rest: sealed under the platform's audit key, never a tenant's (S6-S8).

Details can carry what a caller sent (a path, an error, the fields a change touched), so they are
encrypted like any tenant text. But the key must outlive every tenant: `vigil dealers delete`
destroys that dealer's keys (crypto-shredding), and the dealer's audit evidence has to stay
readable until its retention ends. So details are sealed with data keys of the pseudo-tenant
`platform` for purpose `audit`, wrapped by the platform KMS key.

What the hash chain covers does not change: the canonical *plaintext* details. The chain stays
verifiable by anyone holding the records (a dealer's export carries the plaintext and verifies
offline), and a ciphertext swapped between records fails twice: its binding names the record id,
and the opened text would not hash to the stored link.

Stored form: the `details` column holds JSON. Plaintext details are always a JSON object; sealed
details are a JSON string `"sealed:v1:<base64 envelope>"`, so the two can never be confused and
records written before sealing existed stay readable. Empty details (`{}`) say nothing and are
stored as they are: most successful API calls have none, and they are the hot path.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Sequence
from typing import Protocol

from vigil.core.errors import VigilError

PLATFORM_TENANT = "platform"
EMPTY = "{}"
_PREFIX = '"sealed:v1:'
_PREFIX_LEN = len(_PREFIX)


class Sealer(Protocol):
    """What sealing needs from the crypto layer (`vigil.crypto.fields.FieldCipher` plus the
    binding it uses); a protocol so the audit package does not build keys itself."""

    def ready(self) -> None:
        """Load and top up the sealing key; called outside any database transaction."""
        ...

    def seal_details(self, items: Sequence[tuple[str, bytes]]) -> list[bytes]: ...

    def open_details(self, record_id: str, sealed: bytes) -> bytes: ...


class DetailsSealed(VigilError):
    """Sealed details met a reader without the platform audit key."""

    status = 500
    code = "audit_details_sealed"


class Details:
    """Turns canonical details text into its stored form and back. `Details()` (no sealer) is the
    plaintext codec: it writes plaintext and refuses to guess at sealed values."""

    __slots__ = ("_sealer",)

    def __init__(self, sealer: Sealer | None = None) -> None:
        self._sealer = sealer

    @property
    def seals(self) -> bool:
        return self._sealer is not None

    def ready(self) -> None:
        """Outside any transaction: see `vigil.encryption.AuditDetailsSealer`."""
        if self._sealer is not None:
            self._sealer.ready()

    def stored_forms(self, items: Sequence[tuple[str, str]]) -> list[str]:
        """(record id, canonical details text) -> the text to store, one batch, one key
        lookup."""
        if self._sealer is None:
            return [text for _, text in items]
        todo = [(i, rid, text) for i, (rid, text) in enumerate(items) if text != EMPTY]
        out = [text for _, text in items]
        if todo:
            sealed = self._sealer.seal_details([(rid, text.encode()) for _, rid, text in todo])
            for (i, _, _), blob in zip(todo, sealed, strict=True):
                out[i] = _PREFIX + binascii.b2a_base64(blob, newline=False).decode() + '"'
        return out

    def canonical(self, record_id: str, stored: str) -> str:
        """The canonical details text of a stored value (opened if sealed)."""
        if not stored.startswith(_PREFIX):
            return stored
        if self._sealer is None:
            raise DetailsSealed(
                "This audit record's details are sealed and no platform audit key was given."
            )
        blob = binascii.a2b_base64(stored[_PREFIX_LEN:-1])
        return self._sealer.open_details(record_id, blob).decode()

    def value(self, record_id: str, decoded: object) -> object:
        """A `details` value as the JSON column decoded it, opened if it is a sealed one."""
        if isinstance(decoded, str) and decoded.startswith(_PREFIX[1:]):
            return json.loads(self.canonical(record_id, f'"{decoded}"'))
        return decoded


def is_sealed(stored: str) -> bool:
    return stored.startswith(_PREFIX)


PLAINTEXT = Details()
