"""Webhook signing secrets at rest (S6): sealed with the dealer's `secrets` data keys and bound
to dealer / environment / `webhook_endpoint` / endpoint id / field, so a ciphertext copied to
another endpoint, column, environment or dealer does not open (docs/encryption.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.crypto.binding import Binding, BindingScope
from vigil.crypto.fields import FieldCipher

RECORD_TYPE = "webhook_endpoint"
CURRENT = "signing_secret"
PREVIOUS = "previous_signing_secret"


def secret_binding(
    dealer_id: str, environment: str, endpoint_id: str, *, previous: bool = False
) -> Binding:
    return BindingScope(dealer_id, environment, RECORD_TYPE).bind(
        endpoint_id, PREVIOUS if previous else CURRENT
    )


def open_secret(cipher: FieldCipher, row: Mapping[Any, Any], *, previous: bool = False) -> str:
    """The plaintext `whsec_…` secret of an endpoint row (needs dealer_id, environment, id and
    the sealed column). Raises the cipher's errors (DecryptionFailed, KeyUnavailable)."""
    column = "previous_secret_sealed" if previous else "secret_sealed"
    binding = secret_binding(row["dealer_id"], row["environment"], row["id"], previous=previous)
    return cipher.open(binding, row[column]).decode()
