"""Client digests from `Repr-Digest` / `Content-Digest` (RFC 9530) and `?sha256=`."""

from __future__ import annotations

import base64
import hashlib

import pytest

from vigil.api.digest_fields import expected_sha256, sha256_of_field
from vigil.core.errors import InvalidInput

DIGEST = hashlib.sha256(b"content").digest()
FIELD = f"sha-256=:{base64.b64encode(DIGEST).decode()}:"


def test_sha256_member_is_read_and_other_algorithms_ignored() -> None:
    assert sha256_of_field("Repr-Digest", f"sha-512=:AAAA:, {FIELD}") == DIGEST.hex()
    assert sha256_of_field("Repr-Digest", "sha-512=:AAAA:") is None
    assert sha256_of_field("Repr-Digest", None) is None


@pytest.mark.parametrize(
    "value", ["sha-256=abc", "sha-256=:not base64!:", "sha-256=:AAAA:", "sha-256"]
)
def test_malformed_sha256_member_is_invalid_input(value: str) -> None:
    with pytest.raises(InvalidInput):
        sha256_of_field("Repr-Digest", value)


def test_every_stated_digest_must_agree() -> None:
    assert expected_sha256(DIGEST.hex().upper(), FIELD, FIELD) == DIGEST.hex()
    assert expected_sha256(None, None, None) is None
    with pytest.raises(InvalidInput):
        expected_sha256("0" * 64, FIELD, None)
