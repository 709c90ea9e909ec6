"""JWKS encoding of Ed25519 checkpoint keys: pure, shared by the server and offline verifier."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk(
    kid: str, public_raw: bytes, created_at: datetime, retired_at: datetime | None
) -> dict[str, Any]:
    key: dict[str, Any] = {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(public_raw),
        "kid": kid,
        "use": "sig",
        "alg": "EdDSA",
        "vigil_created_at": created_at.isoformat(),
    }
    if retired_at is not None:
        key["vigil_retired_at"] = retired_at.isoformat()
    return key


def public_key_from_jwk(key: dict[str, Any]) -> Ed25519PublicKey:
    if key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
        raise ValueError(f"key {key.get('kid')!r} is not an Ed25519 key")
    return Ed25519PublicKey.from_public_bytes(b64url_decode(str(key["x"])))


def keys_by_kid(document: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    return {str(k["kid"]): public_key_from_jwk(k) for k in document.get("keys", [])}
