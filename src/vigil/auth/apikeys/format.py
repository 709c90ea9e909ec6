"""The API key wire format: `vgl_<live|test>_<key id>_<secret><checksum>`.

- The prefix makes a leaked key recognisable to secret scanners and says which environment it
  opens (S9, S13).
- The key id (96 random bits) finds the stored record without touching the secret.
- The secret is 256 bits from `secrets`; only its SHA-256 is stored. A hash without a salt or a
  slow KDF is right here: the input is uniformly random and too large to guess, unlike a password.
- The CRC32 checksum lets a scanner (or our edge, before any database work) reject a mistyped or
  made-up key offline. It is not a MAC and protects nothing by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

from vigil.auth.principal import Environment
from vigil.core.ids import base62

ENV_TAGS = {Environment.PRODUCTION: "live", Environment.SANDBOX: "test"}
_TAG_ENV = {tag: env for env, tag in ENV_TAGS.items()}

KEY_ID_BYTES = 12
SECRET_BYTES = 32
KEY_ID_WIDTH = 17
SECRET_WIDTH = 43
CHECKSUM_WIDTH = 6

KEY_PATTERN = re.compile(
    rf"^vgl_(live|test)_([0-9A-Za-z]{{{KEY_ID_WIDTH}}})_"
    rf"([0-9A-Za-z]{{{SECRET_WIDTH}}})([0-9A-Za-z]{{{CHECKSUM_WIDTH}}})$"
)
KEY_ID_PREFIX = "key_"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    environment: Environment
    key_id: str
    secret: str

    def __repr__(self) -> str:
        return f"ParsedKey(environment={self.environment!s}, key_id={self.key_id!r}, secret=***)"

    def secret_hash(self) -> bytes:
        return hash_secret(self.secret)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly minted key. `token` is shown once and never stored."""

    key_id: str
    token: str
    secret_hash: bytes

    def __repr__(self) -> str:
        return f"IssuedKey(key_id={self.key_id!r}, token=***)"


def checksum(body: str) -> str:
    return base62(zlib.crc32(body.encode("ascii")), CHECKSUM_WIDTH)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def mint(environment: Environment) -> IssuedKey:
    key_id = base62(int.from_bytes(secrets.token_bytes(KEY_ID_BYTES), "big"), KEY_ID_WIDTH)
    secret = base62(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big"), SECRET_WIDTH)
    body = f"vgl_{ENV_TAGS[environment]}_{key_id}_{secret}"
    return IssuedKey(
        key_id=KEY_ID_PREFIX + key_id,
        token=body + checksum(body),
        secret_hash=hash_secret(secret),
    )


def looks_like_key(token: str) -> bool:
    return token.startswith("vgl_live_") or token.startswith("vgl_test_")


def parse(token: str) -> ParsedKey | None:
    """Parse and checksum-verify a presented key; None if it is not a well-formed Vigil key."""
    match = KEY_PATTERN.match(token)
    if match is None:
        return None
    tag, key_id, secret, check = match.groups()
    body = token[:-CHECKSUM_WIDTH]
    if not hmac.compare_digest(checksum(body), check):
        return None
    return ParsedKey(environment=_TAG_ENV[tag], key_id=KEY_ID_PREFIX + key_id, secret=secret)


def secrets_match(stored_hash: bytes, presented: ParsedKey) -> bool:
    return hmac.compare_digest(stored_hash, presented.secret_hash())
