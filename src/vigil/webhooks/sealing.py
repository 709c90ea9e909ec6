"""Webhook signing secrets at rest (S6): sealed with the dealer's `secrets` data keys and bound
to dealer / environment / `webhook_endpoint` / endpoint id / field, so a ciphertext copied to
another endpoint, column, environment or dealer does not open (docs/encryption.md). Message
payloads are sealed with the dealer's `records` keys (`message_payload_binding`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vigil.crypto.binding import Binding, BindingScope
from vigil.crypto.fields import FieldCipher
from vigil.events.outbox import payload_binding

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


MESSAGE_RECORD_TYPE = "webhook_message"


def message_payload_binding(
    dealer_id: str, environment: str, event_id: str | None, message_id: str
) -> Binding:
    """What a message's sealed payload is bound to: its event's (the fan-out copies the outbox
    ciphertext as is), or, for a message with no event (`webhook.test`), the message itself."""
    if event_id is not None:
        return payload_binding(dealer_id, environment, event_id)
    return BindingScope(dealer_id, environment, MESSAGE_RECORD_TYPE).bind(message_id, "payload")
