"""Verifying signed JWT assertions (RFC 7523), for partners' JWT-bearer grants (section 2.1)
and `private_key_jwt` client authentication (section 2.2), held to RFC 8725 (JWT BCP).

Every check is named. Header first (algorithm allow-list, no key material or key URLs in the
token, explicit `typ` when present, a `kid` that names a registered, unretired key of the
claimed issuer), then the signature with exactly that key and algorithm (joserfc), then the
claims through the `CLAIM_CHECKS` table, and last the `jti`, inserted once into the database so
a replay loses the race in every server process.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import Connection, insert
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from vigil.storage.db import Database
from vigil.storage.tables import assertion_jtis

SKEW = 60  # seconds of clock difference tolerated on exp/iat/nbf (RFC 7519 section 4.1.4)
MAX_AHEAD = 300  # an assertion lives at most 5 minutes: a stolen one is useless soon
MAX_BYTES = 8192
MIN_RSA_BITS = 2048

# Algorithm -> key type (and curve): a key may only verify the algorithm it was made for, which
# is what defeats algorithm confusion (an HMAC "signed" with a public key). `none` and HMAC are
# absent, so never accepted.
ALGORITHMS: dict[str, tuple[type[Any], str | None]] = {
    "ES256": (ECKey, "P-256"),
    "EdDSA": (OKPKey, "Ed25519"),
    "Ed25519": (OKPKey, "Ed25519"),
    "PS256": (RSAKey, None),
    "RS256": (RSAKey, None),
}
# Header parameters that would let the token choose its own verification key (RFC 8725 3.10).
FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c")
ACCEPTED_TYPES = frozenset({"jwt", "application/jwt"})


class AssertionRefused(Exception):
    """`reason` is a stable slug for the audit log; the message is for the caller."""

    def __init__(self, reason: str, message: str, issuer: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.issuer = reason, issuer


@dataclass(frozen=True, slots=True)
class Expected:
    issuer_of: Callable[[str], bool]  # the claimed `iss` names a registered party
    audience: str  # this server's issuer identifier, exactly
    subject_ok: Callable[[str, str], bool]  # (iss, sub) -> acceptable
    now: datetime


def _ts(now: datetime) -> float:
    return now.timestamp()


def _int(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _iss(v: object, e: Expected, c: Mapping[str, Any]) -> str | None:
    return None if isinstance(v, str) and e.issuer_of(v) else "iss is not a registered party"


def _sub(v: object, e: Expected, c: Mapping[str, Any]) -> str | None:
    ok = isinstance(v, str) and e.subject_ok(str(c.get("iss")), v)
    return None if ok else "sub is not acceptable for this issuer"


def _aud(v: object, e: Expected, c: Mapping[str, Any]) -> str | None:
    # Exactly our issuer identifier: not the token endpoint URL, not a list with extra members
    # (an assertion meant for several servers could be replayed at each).
    if v == e.audience or v == [e.audience]:
        return None
    return "aud must be exactly this server's issuer identifier"


def _exp(v: object, e: Expected, c: Mapping[str, Any]) -> str | None:
    if not _int(v):
        return "exp must be a number"
    now = _ts(e.now)
    if float(v) <= now - SKEW:  # type: ignore[arg-type]
        return "the assertion has expired"
    if float(v) > now + MAX_AHEAD + SKEW:  # type: ignore[arg-type]
        return f"exp is more than {MAX_AHEAD} s ahead"
    return None


def _iat(v: object, e: Expected, c: Mapping[str, Any]) -> str | None:
    if v is None:
        return None
    if not _int(v):
        return "iat must be a number"
    now = _ts(e.now)
    if float(v) > now + SKEW:  # type: ignore[arg-type]
        return "iat is in the future"
    if float(v) < now - MAX_AHEAD - SKEW:  # type: ignore[arg-type]
        return "iat is too old"
    return None


def _nbf(v: object, e: Expected, c: Mapping[str, Any]) -> str | None:
    if v is None:
        return None
    if not _int(v):
        return "nbf must be a number"
    return "nbf is in the future" if float(v) > _ts(e.now) + SKEW else None  # type: ignore[arg-type]


def _jti(v: object, e: Expected, c: Mapping[str, Any]) -> str | None:
    ok = isinstance(v, str) and 0 < len(v) <= 200
    return None if ok else "jti must be a string of 1 to 200 characters"


# Claim -> check. Required claims are checked even when absent (the check sees None).
CLAIM_CHECKS: dict[str, Callable[[object, Expected, Mapping[str, Any]], str | None]] = {
    "iss": _iss,
    "sub": _sub,
    "aud": _aud,
    "exp": _exp,
    "iat": _iat,
    "nbf": _nbf,
    "jti": _jti,
}


def _rsa_bits(modulus: object) -> int:
    """The modulus size, read before importing (joserfc would warn about a small key)."""
    if not isinstance(modulus, str) or len(modulus) > 2000:
        return 0
    try:
        raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    except ValueError:
        return 0
    return int.from_bytes(raw, "big").bit_length()


def check_key(jwk: Mapping[str, Any]) -> tuple[str, Any]:
    """A public JWK fit to register: its `kid`, and the imported key. Refuses private keys,
    symmetric keys, unsupported curves and RSA under 2048 bits."""
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= 200:
        raise ValueError("every key needs a 'kid' of 1 to 200 characters")
    if "d" in jwk or "k" in jwk:
        raise ValueError(f"key '{kid}': upload public keys only")
    kty = jwk.get("kty")
    try:
        if kty == "EC" and jwk.get("crv") == "P-256":
            key: Any = ECKey.import_key(dict(jwk))
        elif kty == "OKP" and jwk.get("crv") == "Ed25519":
            key = OKPKey.import_key(dict(jwk))
        elif kty == "RSA":
            if _rsa_bits(jwk.get("n")) < MIN_RSA_BITS:
                raise ValueError(f"key '{kid}': RSA keys need at least {MIN_RSA_BITS} bits")
            key = RSAKey.import_key(dict(jwk))
        else:
            raise ValueError(f"key '{kid}': only EC P-256, Ed25519 and RSA keys are accepted")
    except JoseError as exc:
        raise ValueError(f"key '{kid}' is not a valid JWK: {exc}") from None
    alg = jwk.get("alg")
    if alg is not None and alg not in ALGORITHMS:
        raise ValueError(f"key '{kid}': algorithm '{alg}' is not allowed")
    return kid, key


def imported_key(jwk: Mapping[str, Any]) -> Any:
    """`check_key(jwk)`'s key, imported once per distinct key: the cache is keyed by the key
    material itself, so it can never hand out a key other than the one the caller read (a
    retired or replaced key is simply no longer read, and falls out of the cache unused)."""
    return _import(json.dumps(jwk, sort_keys=True, separators=(",", ":")))


@lru_cache(maxsize=1024)
def _import(canonical: str) -> Any:
    return check_key(json.loads(canonical))[1]


# One registry per algorithm, built once: the allow-list of a verification is exactly the
# algorithm the header named (already checked against ALGORITHMS).
_REGISTRIES = {alg: jws.JWSRegistry(algorithms=[alg]) for alg in ALGORITHMS}


def _header(value: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    try:
        compact = jws.extract_compact(value.encode("ascii"))
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeError) as exc:
        raise AssertionRefused("malformed", "The assertion is not a compact JWS.") from exc
    if not isinstance(claims, dict):
        raise AssertionRefused("malformed", "The assertion's payload is not a JSON object.")
    return compact, dict(compact.headers()), claims


KeyLookup = Callable[[str, str], Mapping[str, Any] | None]  # (iss, kid) -> public JWK


class AssertionVerifier:
    def __init__(self, db: Database) -> None:
        self._db = db

    def verify(
        self, value: str, keys: KeyLookup, expected: Expected, *, consume: bool = True
    ) -> dict[str, Any]:
        """The verified claims, or AssertionRefused naming the failed check. With
        `consume=False` the caller must `consume_jti` inside the transaction that acts on the
        assertion (one commit instead of two, and no token without its `jti` recorded)."""
        if len(value) > MAX_BYTES:
            raise AssertionRefused("malformed", "The assertion is too large.")
        compact, header, unverified = _header(value)
        claimed = unverified.get("iss") if isinstance(unverified.get("iss"), str) else None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AssertionRefused("algorithm", f"Algorithm '{alg}' is not allowed.", claimed)
        for name in FORBIDDEN_HEADERS:
            if name in header:
                raise AssertionRefused("header", f"Header '{name}' is not accepted.", claimed)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
            raise AssertionRefused("typ", "typ must be JWT when present.", claimed)
        if "crit" in header:
            raise AssertionRefused("header", "No critical extensions are understood.", claimed)
        kid = header.get("kid")
        jwk = keys(claimed, kid) if claimed and isinstance(kid, str) else None
        if jwk is None:
            raise AssertionRefused("kid", "No active registered key for this iss and kid.", claimed)
        key_type, curve = ALGORITHMS[alg]
        key = imported_key(jwk)
        if not isinstance(key, key_type) or (curve and jwk.get("crv") != curve):
            raise AssertionRefused("algorithm", "The key does not fit the algorithm.", claimed)
        if jwk.get("alg") not in (None, alg):
            raise AssertionRefused("algorithm", "The key is registered for another alg.", claimed)
        # The signature over the very bytes parsed above (parsed once, verified once); the
        # claims are trusted only from here on.
        try:
            valid = jws.validate_compact(compact, key, registry=_REGISTRIES[alg])
        except JoseError:
            valid = False
        if not valid:
            raise AssertionRefused("signature", "The signature does not verify.", claimed)
        claims = unverified
        for name, check in CLAIM_CHECKS.items():
            problem = check(claims.get(name), expected, claims)
            if problem is not None:
                raise AssertionRefused(name, f"Claim check failed: {problem}.", claimed)
        if consume:
            try:
                with self._db.transaction() as conn:
                    consume_jti(conn, claims, expected.now)
            except IntegrityError:
                raise replayed(claims) from None
        return claims


def replayed(claims: Mapping[str, Any]) -> AssertionRefused:
    return AssertionRefused("jti", "This jti has been used already.", str(claims["iss"]))


def _keep_until(claims: Mapping[str, Any], now: datetime) -> datetime:
    return datetime.fromtimestamp(float(claims["exp"]) + SKEW, tz=now.tzinfo)


def consume_jti(conn: Connection, claims: Mapping[str, Any], now: datetime) -> None:
    """First use wins: the primary key makes the insert atomic in every process. A replay
    raises IntegrityError, which aborts the caller's transaction (see `replayed`). The row is
    kept until `exp` + skew, when the `exp` check refuses the assertion by itself; deleting it
    after that is the purge job's (vigil.auth.oauth.purge)."""
    conn.execute(
        insert(assertion_jtis).values(
            issuer=str(claims["iss"]), jti=str(claims["jti"]), expires_at=_keep_until(claims, now)
        )
    )


def consume_jtis(
    conn: Connection, claims: Sequence[Mapping[str, Any]], now: datetime
) -> list[bool]:
    """`consume_jti` for a batch of assertions, in one statement: True where this call
    recorded the `jti` first, False for a replay (recorded before by any process, or earlier
    in this batch). The same primary key decides; a replay skips its row (`ON CONFLICT DO
    NOTHING`) instead of aborting the transaction, so the batch's other grants go on."""
    keys = [(str(c["iss"]), str(c["jti"])) for c in claims]
    first: dict[tuple[str, str], int] = {}
    rows = []
    for i, (key, c) in enumerate(zip(keys, claims, strict=True)):
        if key not in first:
            first[key] = i
            rows.append({"issuer": key[0], "jti": key[1], "expires_at": _keep_until(c, now)})
    if not rows:
        return []
    dialect_insert = sqlite_insert if conn.dialect.name == "sqlite" else postgres_insert
    statement = (
        dialect_insert(assertion_jtis)
        .on_conflict_do_nothing()
        .returning(assertion_jtis.c.issuer, assertion_jtis.c.jti)
    )
    won = {(r[0], r[1]) for r in conn.execute(statement, rows)}
    return [first[key] == i and key in won for i, key in enumerate(keys)]
