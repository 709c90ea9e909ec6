"""The KMS port: what Vigil needs from a key management service (S7).

Envelope encryption: the KMS generates a data key and returns it twice, in the clear (used in
memory, never stored) and wrapped under a key-encryption key (KEK) that never leaves the KMS
(stored). Reading data means asking the KMS to unwrap. Each wrap is bound to an *encryption
context* (dealer, purpose, keyset, version): a wrapped key copied into another dealer's row fails
to unwrap there (AWS EncryptionContext, Transit derived-key `context`, local AAD).

Key references (`key_ref`) are provider strings: a local key name, a Transit key name, an AWS key
ARN. Every dealer's data keys are wrapped by a KEK of that dealer's own, so destroying it
(crypto-shredding) reaches every backup of the database: enterprise dealers get one they can
have provisioned or configured (`create_tenant_key`), standard dealers a platform-managed one
created automatically on first use (`create_dealer_key`). The platform KEK wraps what belongs to
no dealer (the SQLCipher database key, platform keysets such as the audit one) (S8).

An enterprise may instead bring a key of its own (BYOK): `customer_key_ref` checks a reference
to a key the customer controls and answers its canonical form. Vigil wraps with such a key but
never rotates, disables or destroys it: `KeyManager` records who owns a dealer's KEK.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from vigil.crypto.errors import InvalidBinding
from vigil.crypto.material import SecretKey

EncryptionContext = Mapping[str, str]

_DEALER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def canonical_context(context: EncryptionContext) -> bytes:
    """Deterministic bytes for a context (sorted keys, no whitespace): same map, same bytes."""
    return json.dumps(dict(context), sort_keys=True, separators=(",", ":")).encode("utf-8")


def check_dealer_id(dealer_id: str) -> str:
    """Dealer ids become parts of key names; allow only characters every provider accepts."""
    if not _DEALER_ID.fullmatch(dealer_id):
        raise InvalidBinding("dealer id must be 1-64 characters of [A-Za-z0-9_-]")
    return dealer_id


class KeyManager(StrEnum):
    """Who owns a dealer's KEK (`dealers.kms_key_managed`)."""

    PLATFORM = "platform"  # made by Vigil (enterprise or standard): destroyed with the dealer
    CUSTOMER = "customer"  # configured by the enterprise (BYOK): left to it, never destroyed


@dataclass(frozen=True, slots=True)
class GeneratedDataKey:
    """A fresh data key: `plaintext` for use now, `wrapped` to store."""

    plaintext: SecretKey
    wrapped: bytes = field(repr=False)
    kms_key_ref: str


class Kms(Protocol):
    """One interface, three providers (`local`, `transit`, `aws`), chosen by `VIGIL_KMS`."""

    @property
    def provider(self) -> str: ...

    @property
    def platform_key_ref(self) -> str:
        """The KEK for standard dealers."""
        ...

    def ensure_platform_key(self) -> None:
        """Create the platform KEK if the provider can and it is missing; else check it exists."""
        ...

    def create_tenant_key(self, dealer_id: str) -> str:
        """A dedicated KEK for an enterprise dealer; idempotent (same dealer, same ref)."""
        ...

    def tenant_key_ref(self, dealer_id: str) -> str:
        """The name of the KEK `create_tenant_key` makes for a dealer, whether it exists or not."""
        ...

    def customer_key_ref(self, key_ref: str) -> str:
        """Check a reference to a key the customer controls (BYOK) and answer its canonical
        form (what wraps will name). Raises `KmsError` saying why when it is malformed, does not
        exist, cannot be read, is disabled, is not a symmetric encryption key that binds the
        encryption context, or is one of Vigil's own keys. Makes no data key: the caller proves
        the key with a round trip."""
        ...

    def dealer_key_ref(self, dealer_id: str) -> str:
        """The name of a standard dealer's platform-managed KEK, whether it exists yet or not."""
        ...

    def create_dealer_key(self, dealer_id: str) -> str:
        """The platform-managed KEK of a standard dealer, created if missing (idempotent)."""
        ...

    def destroy_tenant_key(self, key_ref: str) -> None:
        """Destroy a dealer's KEK, enterprise or platform-managed (crypto-shredding that reaches
        every backup of the database: the wraps in it no longer unwrap). Never the platform key.
        A key that does not exist (any more) is not an error. Irreversible (AWS: disabled now,
        deleted after the shortest window, 7 days)."""
        ...

    def generate_data_key(self, key_ref: str, context: EncryptionContext) -> GeneratedDataKey: ...

    def decrypt_data_key(
        self, key_ref: str, wrapped: bytes, context: EncryptionContext
    ) -> SecretKey:
        """Unwrap; raises `KmsError` on a wrong key, wrong context or tampered bytes."""
        ...

    def rotate(self, key_ref: str) -> None:
        """New KEK version: new wraps use it; existing wraps still unwrap."""
        ...

    def rewrap(self, key_ref: str, wrapped: bytes, context: EncryptionContext) -> bytes:
        """Re-encrypt a wrapped key under the newest KEK version without exposing it."""
        ...

    def move(
        self, source_ref: str, wrapped: bytes, context: EncryptionContext, target_ref: str
    ) -> bytes:
        """Re-wrap under another KEK (a dealer's data keys moving from the platform KEK to its
        own): unwrapped with `source_ref`, wrapped with `target_ref`'s newest version."""
        ...

    def close(self) -> None: ...
