"""Pure OAuth logic: token wire format, redirect URI matching, PKCE, the assertion claim table."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from hypothesis import given
from hypothesis import strategies as st

from vigil.auth.assertions import CLAIM_CHECKS, Expected
from vigil.auth.oauth import pkce, redirects, tokens

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", list(tokens.Kind))
def test_minted_tokens_parse_only_as_their_own_kind(kind: tokens.Kind) -> None:
    minted = tokens.mint(kind)
    assert minted.value.startswith(f"vgl_{kind.value}_")
    parsed = tokens.parse(minted.value, kind)
    assert parsed is not None
    assert parsed.id == minted.id
    assert parsed.matches(minted.secret_hash)
    assert minted.value not in repr(minted)
    for other in set(tokens.Kind) - {kind}:
        assert tokens.parse(minted.value, other) is None


@given(position=st.integers(min_value=7, max_value=120), char=st.sampled_from(string.ascii_letters))
def test_any_single_character_change_is_rejected_or_mismatched(position: int, char: str) -> None:
    minted = tokens.mint(tokens.Kind.ACCESS)
    if position >= len(minted.value) or minted.value[position] == char:
        return
    changed = minted.value[:position] + char + minted.value[position + 1 :]
    parsed = tokens.parse(changed, tokens.Kind.ACCESS)
    assert parsed is None or parsed.id != minted.id or not parsed.matches(minted.secret_hash)


@given(st.text(max_size=200))
def test_arbitrary_text_never_parses(text: str) -> None:
    assert tokens.parse(text, tokens.Kind.ACCESS) is None


REGISTERED = ["https://app.example/cb", "http://127.0.0.1/native"]


@pytest.mark.parametrize(
    ("presented", "ok"),
    [
        ("https://app.example/cb", True),
        ("https://app.example/cb/", False),
        ("https://app.example/c", False),
        ("https://App.example/cb", False),
        ("https://app.example/cb?x=1", False),
        ("https://app.example:443/cb", False),
        ("http://127.0.0.1:5000/native", True),
        ("http://127.0.0.1/native", True),
        ("http://127.0.0.1:5000/native/x", False),
        ("http://[::1]:5000/native", False),
        ("http://localhost:5000/native", False),
    ],
)
def test_redirect_matching(presented: str, ok: bool) -> None:
    assert redirects.matches(REGISTERED, presented) is ok


def test_pkce_s256_only() -> None:
    verifier = "a" * 43
    challenge = create_s256_code_challenge(verifier)
    assert pkce.valid_challenge(challenge, "S256") is None
    assert pkce.valid_challenge(challenge, "plain") is not None
    assert pkce.valid_challenge(None, "S256") is not None
    assert pkce.verifier_matches(verifier, challenge)
    assert not pkce.verifier_matches("b" * 43, challenge)
    assert not pkce.verifier_matches("a" * 42, challenge)  # too short to be a verifier


def expected() -> Expected:
    return Expected(
        issuer_of=lambda iss: iss == "ptn_1",
        audience="https://vigil.example",
        subject_ok=lambda iss, sub: sub == "dlr_1",
        now=NOW,
    )


GOOD = {
    "iss": "ptn_1",
    "sub": "dlr_1",
    "aud": "https://vigil.example",
    "exp": NOW.timestamp() + 120,
    "iat": NOW.timestamp(),
    "jti": "j1",
}


def failures(claims: dict[str, object]) -> set[str]:
    return {
        name
        for name, check in CLAIM_CHECKS.items()
        if check(claims.get(name), expected(), claims) is not None
    }


@pytest.mark.parametrize(
    ("change", "failed"),
    [
        ({}, set()),
        ({"aud": ["https://vigil.example"]}, set()),
        ({"aud": ["https://vigil.example", "https://x"]}, {"aud"}),
        ({"aud": "https://vigil.example/oauth/token"}, {"aud"}),
        ({"exp": NOW.timestamp() - 61}, {"exp"}),
        ({"exp": NOW.timestamp() - 30}, set()),  # within the 60 s skew
        ({"exp": NOW.timestamp() + 361}, {"exp"}),
        ({"exp": "tomorrow"}, {"exp"}),
        ({"nbf": NOW.timestamp() + 61}, {"nbf"}),
        ({"iat": NOW.timestamp() + 61}, {"iat"}),
        ({"iat": NOW.timestamp() - 400}, {"iat"}),
        ({"jti": ""}, {"jti"}),
        ({"jti": None}, {"jti"}),
        ({"sub": "dlr_2"}, {"sub"}),
        ({"iss": "ptn_2"}, {"iss"}),
    ],
)
def test_claim_table(change: dict[str, object], failed: set[str]) -> None:
    assert failures(GOOD | change) == failed
