"""Standard Webhooks signatures (https://www.standardwebhooks.com): receivers verify deliveries
with that specification's libraries.

`webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`; during a secret
rotation's overlap every current secret signs, space-separated, so a receiver holding either
secret accepts the delivery and can switch over at its own pace.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

PREFIX = "whsec_"
SECRET_BYTES = 32  # 256-bit HMAC key: the key length the specification recommends (24-64)


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """A `whsec_…` secret. Its repr never shows the key (it must not reach logs or errors)."""

    value: str
    # The decoded HMAC key, decoded once rather than on every signature.
    key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", base64.b64decode(self.value.removeprefix(PREFIX)))

    def __repr__(self) -> str:
        return "SigningSecret(whsec_…)"


def new_secret() -> SigningSecret:
    return SigningSecret(PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode())


def signature(secret: SigningSecret, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.digest(secret.key, signed, "sha256")  # OpenSSL's one-shot HMAC
    return "v1," + base64.b64encode(digest).decode()


def signature_header(
    secrets_now: Sequence[SigningSecret], msg_id: str, timestamp: int, body: bytes
) -> str:
    return " ".join(signature(s, msg_id, timestamp, body) for s in secrets_now)


def headers(
    secrets_now: Sequence[SigningSecret], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_now, msg_id, timestamp, body),
    }
