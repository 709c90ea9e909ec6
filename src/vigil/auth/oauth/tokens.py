"""Wire format of OAuth secrets, shaped like API keys: `vgl_<kind>_<id>_<secret><checksum>`.

Kinds: `at` access token, `rt` refresh token, `ac` authorization code, `cs` client secret. The
prefix lets secret scanners recognise a leaked token and lets the edge dispatch on it without
any database work; the id finds the row, only the secret's SHA-256 is stored, and the CRC32
checksum rejects made-up tokens offline (vigil.auth.apikeys.format explains each choice).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from vigil.auth.apikeys.format import (
    CHECKSUM_WIDTH,
    KEY_ID_BYTES,
    KEY_ID_WIDTH,
    SECRET_BYTES,
    SECRET_WIDTH,
    checksum,
    hash_secret,
)
from vigil.core.ids import base62, ordered_base62


class Kind(StrEnum):
    ACCESS = "at"
    REFRESH = "rt"
    CODE = "ac"
    CLIENT_SECRET = "cs"


ID_PREFIX = {Kind.ACCESS: "at_", Kind.REFRESH: "rt_", Kind.CODE: "ac_", Kind.CLIENT_SECRET: "cs_"}
_PATTERN = re.compile(
    rf"^vgl_(at|rt|ac|cs)_([0-9A-Za-z]{{{KEY_ID_WIDTH}}})_"
    rf"([0-9A-Za-z]{{{SECRET_WIDTH}}})([0-9A-Za-z]{{{CHECKSUM_WIDTH}}})$"
)
ACCESS_PREFIX = "vgl_at_"


@dataclass(frozen=True, slots=True)
class Minted:
    """A fresh secret. `value` is handed out once and never stored."""

    kind: Kind
    id: str
    value: str
    secret_hash: bytes

    def __repr__(self) -> str:
        return f"Minted(kind={self.kind!s}, id={self.id!r}, value=***)"


@dataclass(frozen=True, slots=True)
class Presented:
    kind: Kind
    id: str
    secret_hash: bytes

    def __repr__(self) -> str:
        return f"Presented(kind={self.kind!s}, id={self.id!r})"

    def matches(self, stored_hash: bytes) -> bool:
        return hmac.compare_digest(stored_hash, self.secret_hash)


def mint(kind: Kind, *, time_ordered: bool = False) -> Minted:
    """`time_ordered`: the id's first six bytes are the time in milliseconds (vigil.core.ids
    `ordered_base62`, same width and alphabet), for tokens minted at a high rate (JWT-bearer
    grants): each insert then lands at the right-hand end of the id index instead of on a
    random page that SQLCipher re-encrypts at every commit. The id only finds the row; the
    256-bit secret is what proves possession, and the row stores the creation time anyway."""
    if time_ordered:
        raw_id = ordered_base62(KEY_ID_BYTES)
    else:
        raw_id = base62(int.from_bytes(secrets.token_bytes(KEY_ID_BYTES), "big"), KEY_ID_WIDTH)
    secret = base62(int.from_bytes(secrets.token_bytes(SECRET_BYTES), "big"), SECRET_WIDTH)
    body = f"vgl_{kind.value}_{raw_id}_{secret}"
    return Minted(kind, ID_PREFIX[kind] + raw_id, body + checksum(body), hash_secret(secret))


def parse(value: str, kind: Kind) -> Presented | None:
    """A well-formed, checksum-valid secret of `kind`, else None."""
    match = _PATTERN.match(value)
    if match is None or match.group(1) != kind.value:
        return None
    _, raw_id, secret, check = match.groups()
    if not hmac.compare_digest(checksum(value[:-CHECKSUM_WIDTH]), check):
        return None
    return Presented(kind, ID_PREFIX[kind] + raw_id, hash_secret(secret))
