"""A client's SHA-256 of what it sends, from `Repr-Digest` / `Content-Digest` (RFC 9530).

Both are structured-field dictionaries (RFC 8941) such as `sha-256=:<base64>:, sha-512=:…:`.
Vigil checks `sha-256` and ignores algorithms it does not use, as RFC 9530 section 3 allows;
uploads carry no content coding, so the two fields describe the same bytes.
"""

from __future__ import annotations

import base64
import binascii

from vigil.core.errors import InvalidInput


def sha256_of_field(name: str, value: str | None) -> str | None:
    """The `sha-256` member as lowercase hex, None if absent; malformed is 422."""
    if value is None:
        return None
    for member in value.split(","):
        key, sep, rest = member.strip().partition("=")
        if key.strip().lower() != "sha-256":
            continue
        item = rest.split(";", 1)[0].strip()
        if not sep or len(item) < 2 or item[0] != ":" or item[-1] != ":":
            raise InvalidInput(f"{name}: sha-256 is a byte sequence, e.g. sha-256=:<base64>:.")
        try:
            raw = base64.b64decode(item[1:-1], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{name}: sha-256 is not valid base64.") from None
        if len(raw) != 32:
            raise InvalidInput(f"{name}: a SHA-256 digest is 32 bytes.")
        return raw.hex()
    return None


def expected_sha256(
    query: str | None, repr_digest: str | None, content_digest: str | None
) -> str | None:
    """The one digest the client stated, wherever it stated it (`?sha256=` hex or the fields)."""
    found = {
        digest
        for digest in (
            query.lower() if query else None,
            sha256_of_field("Repr-Digest", repr_digest),
            sha256_of_field("Content-Digest", content_digest),
        )
        if digest is not None
    }
    if len(found) > 1:
        raise InvalidInput("The SHA-256 digests sent with this upload disagree.")
    return found.pop() if found else None
