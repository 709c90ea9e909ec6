"""The key format: prefix by environment, checksum that catches corruption, no secret in repr."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vigil.auth.apikeys import format as keyformat
from vigil.auth.principal import Environment


def test_prefix_follows_environment() -> None:
    assert keyformat.mint(Environment.PRODUCTION).token.startswith("vgl_live_")
    assert keyformat.mint(Environment.SANDBOX).token.startswith("vgl_test_")


def test_minted_key_parses_back_to_its_id_and_hash() -> None:
    issued = keyformat.mint(Environment.SANDBOX)
    parsed = keyformat.parse(issued.token)
    assert parsed is not None
    assert parsed.key_id == issued.key_id
    assert parsed.environment is Environment.SANDBOX
    assert keyformat.secrets_match(issued.secret_hash, parsed)


def test_secret_carries_at_least_256_bits() -> None:
    assert 62**keyformat.SECRET_WIDTH >= 2**256
    assert keyformat.SECRET_BYTES * 8 >= 256


def test_repr_never_shows_the_secret() -> None:
    issued = keyformat.mint(Environment.SANDBOX)
    parsed = keyformat.parse(issued.token)
    assert issued.token not in repr(issued)
    assert parsed is not None
    assert parsed.secret not in repr(parsed)


@given(st.text(max_size=120))
def test_random_text_is_never_a_valid_key(text: str) -> None:
    assert keyformat.parse(text) is None


@given(st.integers(min_value=9, max_value=75), st.sampled_from("0123456789abcdefXYZ"))
def test_any_single_substitution_is_caught(position: int, char: str) -> None:
    token = keyformat.mint(Environment.PRODUCTION).token
    if token[position] in (char, "_"):
        return
    assert keyformat.parse(token[:position] + char + token[position + 1 :]) is None
