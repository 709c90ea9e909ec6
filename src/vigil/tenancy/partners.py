"""Assertion partners (S11): service principals that sign JWTs with their own private keys.

Their public keys are uploaded as a JWKS (CLI or API), never fetched from a URL a token names;
several are active at once, told apart by `kid`, and each can be retired from a date on, so a
partner rotates by uploading the next key before retiring the last. A partner acts for a dealer
only once that dealer has authorized it, and only within the scopes it authorized.

Taking trust back takes the tokens with it: withdrawing or narrowing a dealer's authorization
revokes the partner's live tokens for that dealer, and disabling a partner revokes all of its
tokens, in the transaction that records the change (effective on the next request). Revoking
rather than trimming scopes keeps one rule: a token never outlives the consent it came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, false, insert, or_, select, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.auth.apikeys.lookup import RawLookup
from vigil.auth.assertions import check_key
from vigil.auth.oauth.token_store import revoke_where
from vigil.auth.principal import ActorType, Environment
from vigil.auth.scopes import Scope, decode_scopes, encode_scopes
from vigil.core.clock import Clock
from vigil.core.errors import InvalidInput, NotFound
from vigil.core.ids import new_id
from vigil.storage.db import Database
from vigil.storage.tables import (
    dealers,
    oauth_tokens,
    partner_authorizations,
    partner_keys,
    partners,
)
from vigil.tenancy.models import IpNetwork, parse_networks

MAX_KEYS = 20


@dataclass(frozen=True, slots=True)
class Partner:
    id: str
    name: str
    environment: Environment
    scopes: frozenset[Scope]
    created_at: datetime
    disabled_at: datetime | None = None
    ip_allow_list: tuple[IpNetwork, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "environment": self.environment.value,
            "scopes": sorted(s.value for s in self.scopes),
            "created_at": self.created_at.isoformat(),
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
            "ip_allow_list": [str(n) for n in self.ip_allow_list],
        }


def public_keys_of(jwks: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    keys = jwks.get("keys")
    if not isinstance(keys, list) or not keys or len(keys) > MAX_KEYS:
        raise InvalidInput(f"A JWKS is {{'keys': [...]}} with 1 to {MAX_KEYS} public keys.")
    checked = []
    for jwk in keys:
        if not isinstance(jwk, dict):
            raise InvalidInput("Every JWKS entry is a JSON object.")
        try:
            kid, _ = check_key(jwk)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        public = {
            k: v
            for k, v in jwk.items()
            if k in ("kty", "crv", "x", "y", "n", "e", "kid", "alg", "use")
        }
        checked.append((kid, public))
    if len({kid for kid, _ in checked}) != len(checked):
        raise InvalidInput("Key ids (kid) must be unique.")
    return checked


class PartnerService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock) -> None:
        self._db, self._audit, self._clock = db, audit, clock

    def create(
        self,
        actor: Actor,
        *,
        name: str,
        environment: Environment,
        scopes: Iterable[Scope],
        jwks: Mapping[str, Any],
        ip_allow_list: Iterable[str] = (),
    ) -> Partner:
        name = name.strip()
        if not 0 < len(name) <= 200:
            raise InvalidInput("A partner name is 1 to 200 characters.")
        granted = frozenset(scopes)
        if not granted:
            raise InvalidInput("A partner needs at least one scope.")
        keys = public_keys_of(jwks)
        networks = _networks(ip_allow_list)
        now = self._clock.now()
        partner = Partner(new_id("ptn"), name, environment, granted, now, None, networks)
        with self._db.transaction() as conn:
            conn.execute(
                insert(partners).values(
                    id=partner.id,
                    name=name,
                    environment=environment.value,
                    scopes=encode_scopes(granted),
                    created_at=now,
                    ip_allow_list=[str(n) for n in networks],
                )
            )
            self._insert_keys(conn, partner.id, keys, now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.PARTNER_CREATED,
                    target_type="partner",
                    target_id=partner.id,
                    environment=environment.value,
                    details={
                        "scopes": encode_scopes(granted),
                        "kids": [k for k, _ in keys],
                        "ip_allow_list": [str(n) for n in networks],
                    },
                ),
            )
        return partner

    def _insert_keys(
        self, conn: Any, partner_id: str, keys: list[tuple[str, dict[str, Any]]], now: datetime
    ) -> None:
        for kid, jwk in keys:
            conn.execute(
                insert(partner_keys).values(partner_id=partner_id, kid=kid, jwk=jwk, created_at=now)
            )

    def add_keys(self, actor: Actor, partner_id: str, jwks: Mapping[str, Any]) -> list[str]:
        keys = public_keys_of(jwks)
        now = self._clock.now()
        with self._db.transaction() as conn:
            self._get(conn, partner_id)
            existing = set(
                conn.execute(
                    select(partner_keys.c.kid).where(partner_keys.c.partner_id == partner_id)
                ).scalars()
            )
            reused = sorted({k for k, _ in keys} & existing)
            if reused:
                raise InvalidInput("Key ids already registered: " + ", ".join(reused) + ".")
            self._insert_keys(conn, partner_id, keys, now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.PARTNER_KEY_ADDED,
                    target_type="partner",
                    target_id=partner_id,
                    details={"kids": [k for k, _ in keys]},
                ),
            )
        return [k for k, _ in keys]

    def retire_key(self, actor: Actor, partner_id: str, kid: str, at: datetime) -> None:
        now = self._clock.now()
        with self._db.transaction() as conn:
            done = conn.execute(
                update(partner_keys)
                .where(partner_keys.c.partner_id == partner_id, partner_keys.c.kid == kid)
                .values(retire_at=at)
            )
            if done.rowcount != 1:
                raise NotFound(f"No key '{kid}' for partner '{partner_id}'.")
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.PARTNER_KEY_RETIRED,
                    target_type="partner",
                    target_id=partner_id,
                    details={"kid": kid, "retire_at": at.isoformat()},
                ),
            )

    def authorize(
        self, actor: Actor, partner_id: str, dealer_id: str, scopes: Iterable[Scope]
    ) -> frozenset[Scope]:
        """The dealer's consent for the partner to act for it within `scopes` (replaces any
        earlier authorization; an empty set withdraws it)."""
        granted = frozenset(scopes)
        now = self._clock.now()
        with self._db.transaction() as conn:
            self._get(conn, partner_id)
            if conn.execute(select(dealers.c.id).where(dealers.c.id == dealer_id)).first() is None:
                raise NotFound(f"No dealer '{dealer_id}'.")
            key = and_(
                partner_authorizations.c.partner_id == partner_id,
                partner_authorizations.c.dealer_id == dealer_id,
            )
            revoked_at = None if granted else now
            before = conn.execute(
                select(partner_authorizations.c.scopes, partner_authorizations.c.revoked_at)
                .where(key)
                .with_for_update()
            ).first()
            if before is not None:
                conn.execute(
                    update(partner_authorizations)
                    .where(key)
                    .values(scopes=encode_scopes(granted), revoked_at=revoked_at)
                )
            else:
                conn.execute(
                    insert(partner_authorizations).values(
                        partner_id=partner_id,
                        dealer_id=dealer_id,
                        scopes=encode_scopes(granted),
                        created_at=now,
                        revoked_at=revoked_at,
                    )
                )
            held = (
                decode_scopes(before.scopes)
                if before is not None and before.revoked_at is None
                else frozenset()
            )
            withdrawn = held - granted
            revoked = 0
            if withdrawn or not granted:
                revoked = revoke_where(
                    conn,
                    now,
                    oauth_tokens.c.actor_id == partner_id,
                    oauth_tokens.c.actor_type == ActorType.PARTNER.value,
                    oauth_tokens.c.dealer_id == dealer_id,
                )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.PARTNER_AUTHORIZED,
                    target_type="partner",
                    target_id=partner_id,
                    dealer_id=dealer_id,
                    details={
                        "scopes": encode_scopes(granted),
                        "withdrawn": encode_scopes(withdrawn),
                        "tokens_revoked": revoked,
                    },
                ),
            )
        return granted

    def set_disabled(self, actor: Actor, partner_id: str, disabled: bool) -> int:
        """Disable (no new token; every live token revoked at once) or enable again. Returns
        how many tokens were revoked."""
        now = self._clock.now()
        with self._db.transaction() as conn:
            self._get(conn, partner_id)
            conn.execute(
                update(partners)
                .where(partners.c.id == partner_id)
                .values(disabled_at=now if disabled else None)
            )
            revoked = 0
            if disabled:
                revoked = revoke_where(
                    conn,
                    now,
                    oauth_tokens.c.actor_id == partner_id,
                    oauth_tokens.c.actor_type == ActorType.PARTNER.value,
                )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.PARTNER_DISABLED if disabled else AuditAction.PARTNER_ENABLED,
                    target_type="partner",
                    target_id=partner_id,
                    details={"tokens_revoked": revoked},
                ),
            )
        return revoked

    def set_ip_allow_list(self, actor: Actor, partner_id: str, networks: Iterable[str]) -> Partner:
        """Addresses the partner's tokens may be used from (empty: anywhere), checked on every
        request like an app's allow list for its keys (S9)."""
        parsed = _networks(networks)
        now = self._clock.now()
        with self._db.transaction() as conn:
            self._get(conn, partner_id)
            listed = [str(n) for n in parsed]
            conn.execute(
                update(partners).where(partners.c.id == partner_id).values(ip_allow_list=listed)
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.PARTNER_ALLOW_LIST_SET,
                    target_type="partner",
                    target_id=partner_id,
                    details={"ip_allow_list": listed},
                ),
            )
            return self._get(conn, partner_id)

    def _get(self, conn: Any, partner_id: str) -> Partner:
        row = conn.execute(select(partners).where(partners.c.id == partner_id)).mappings().first()
        if row is None:
            raise NotFound(f"No partner '{partner_id}'.")
        return Partner(
            row["id"],
            row["name"],
            Environment(row["environment"]),
            decode_scopes(row["scopes"]),
            row["created_at"],
            row["disabled_at"],
            parse_networks(list(row["ip_allow_list"] or [])),
        )

    def get(self, partner_id: str) -> Partner:
        with self._db.read() as conn:
            return self._get(conn, partner_id)

    def exists(self, partner_id: str) -> bool:
        with self._db.read() as conn:
            found = conn.execute(select(partners.c.id).where(partners.c.id == partner_id)).first()
        return found is not None

    def active_key(self, partner_id: str, kid: str) -> dict[str, Any] | None:
        """The registered public JWK, unless retired by now."""
        now = self._clock.now()
        query = select(partner_keys.c.jwk).where(
            partner_keys.c.partner_id == partner_id,
            partner_keys.c.kid == kid,
            or_(partner_keys.c.retire_at.is_(None), partner_keys.c.retire_at > now),
        )
        with self._db.read() as conn:
            jwk = conn.execute(query).scalar_one_or_none()
        return dict(jwk) if jwk is not None else None

    def authorization(self, partner_id: str, dealer_id: str) -> frozenset[Scope] | None:
        query = select(partner_authorizations.c.scopes).where(
            partner_authorizations.c.partner_id == partner_id,
            partner_authorizations.c.dealer_id == dealer_id,
            partner_authorizations.c.revoked_at.is_(None),
        )
        with self._db.read() as conn:
            scopes = conn.execute(query).scalar_one_or_none()
        return decode_scopes(scopes) if scopes is not None else None


def _networks(values: Iterable[str]) -> tuple[IpNetwork, ...]:
    try:
        return parse_networks([v.strip() for v in values if v.strip()])
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


@dataclass(frozen=True, slots=True)
class AssertionFacts:
    """Everything a JWT-bearer grant needs about (partner, kid, dealer), read in one query."""

    jwk: dict[str, Any]
    environment: Environment
    scopes: frozenset[Scope]
    authorized: frozenset[Scope] | None


# Built once: the grant's only read. The authorization is read for the `sub` the (not yet
# verified) assertion names; the claim check then accepts `sub` only if this row authorizes it.
_FACTS = (
    select(
        partner_keys.c.jwk,
        partner_keys.c.retire_at,
        partners.c.environment,
        partners.c.scopes,
        partner_authorizations.c.scopes.label("authorized"),
    )
    .join(partners, partners.c.id == partner_keys.c.partner_id)
    .outerjoin(
        partner_authorizations,
        and_(
            partner_authorizations.c.partner_id == partner_keys.c.partner_id,
            partner_authorizations.c.dealer_id == bindparam("dealer_id"),
            partner_authorizations.c.revoked_at.is_(None),
        ),
    )
    .where(
        partner_keys.c.partner_id == bindparam("partner_id"),
        partner_keys.c.kid == bindparam("kid"),
        partners.c.disabled_at.is_(None),  # a disabled partner's keys verify nothing
    )
)


def assertion_facts(
    db: Database, partner_id: str, kid: str, dealer_id: str, now: datetime
) -> AssertionFacts | None:
    """None when the key is unknown or retired by `now`, or the partner is disabled."""
    with db.read() as conn:
        row = (
            conn.execute(_FACTS, {"partner_id": partner_id, "kid": kid, "dealer_id": dealer_id})
            .mappings()
            .first()
        )
    return _facts(row, now)


def _facts(row: Any, now: datetime) -> AssertionFacts | None:
    if row is None or (row["retire_at"] is not None and row["retire_at"] <= now):
        return None
    authorized, jwk = row["authorized"], row["jwk"]
    return AssertionFacts(
        json.loads(jwk) if isinstance(jwk, str | bytes) else dict(jwk),
        Environment(row["environment"]),
        decode_scopes(row["scopes"]),
        decode_scopes(authorized) if authorized is not None else None,
    )


def still_authorized(
    conn: Connection, partner_id: str, dealer_id: str, scopes: frozenset[Scope]
) -> bool:
    """Re-read, inside the transaction that issues a partner token, that the partner is enabled
    and the dealer still authorizes `scopes`. The authorization row is locked (FOR UPDATE on
    PostgreSQL; SQLite serialises writers), so a withdrawal either commits first and is seen
    here, or waits for this token and then revokes it: no token escapes a withdrawal."""
    row = conn.execute(
        _STILL_AUTHORIZED, {"partner_id": partner_id, "dealer_id": dealer_id}
    ).first()
    return row is not None and scopes <= decode_scopes(row.scopes)


# Built once (it runs in every grant batch): building the statement and its cache key per call
# cost more than running it.
_STILL_AUTHORIZED = (
    select(partner_authorizations.c.scopes)
    .join(partners, partners.c.id == partner_authorizations.c.partner_id)
    .where(
        partner_authorizations.c.partner_id == bindparam("partner_id"),
        partner_authorizations.c.dealer_id == bindparam("dealer_id"),
        partner_authorizations.c.revoked_at.is_(None),
        partners.c.disabled_at.is_(None),
    )
    .with_for_update(of=partner_authorizations)
)


class _FactsLookup(RawLookup):
    DATETIMES = ("retire_at",)
    BYTES = ()


# RawLookup also prepares a bookkeeping update; reading the facts keeps none.
_NO_TOUCH = update(partner_keys).where(false()).values(retire_at=bindparam("at"))


class AssertionFactsLookup:
    """`assertion_facts` on the API key lookup's raw-driver path (vigil.auth.apikeys.lookup):
    the same query, current on every grant (a kept row is dropped once any process commits a
    write to the tables it reads, so a retired key or a withdrawn authorization counts at
    once), without SQLAlchemy's per-execution machinery. It keeps one connection
    per thread, so it is meant for the event loop's thread (the batched grant path)."""

    def __init__(self, db: Database) -> None:
        self._lookup = _FactsLookup(db, _FACTS, _NO_TOUCH)

    def __call__(
        self, partner_id: str, kid: str, dealer_id: str, now: datetime
    ) -> AssertionFacts | None:
        row = self._lookup.fetch(partner_id=partner_id, kid=kid, dealer_id=dealer_id)
        return _facts(row, now)
