"""Users: the people who can grant apps access (S10). Dealer operators see the dealer's whole
tenant; site users (a dealer's customers) only the sites chosen for them.

Passwords are stored as argon2id (argon2-cffi's defaults, RFC 9106's second recommended option
scaled to ~150 ms here, docs/oauth.md). A sign-in for an unknown e-mail still pays one argon2
verification, so response time does not reveal which addresses have accounts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update

from vigil.audit.actions import AuditAction
from vigil.audit.log import AuditLog
from vigil.auth.actor import Actor
from vigil.auth.oauth.token_store import revoke_where
from vigil.auth.principal import ActorType
from vigil.auth.scopes import Scope
from vigil.core.clock import Clock
from vigil.core.errors import Conflict, InvalidInput, NotFound
from vigil.core.ids import new_id
from vigil.storage.db import Database
from vigil.storage.tables import (
    dealers,
    oauth_grants,
    oauth_tokens,
    portal_sessions,
    sites,
    users,
)

MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 accepts more; bounding it keeps one request's cost bounded.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{1,63}$")


class Role(StrEnum):
    OPERATOR = "operator"
    SITE_USER = "site_user"


# What a site user can ever delegate: reading their own sites. Writing (creating sites, keys,
# webhooks) is dealer business, and a new site would fall outside their restriction anyway.
SITE_USER_SCOPES = frozenset(
    {
        Scope.SITES_READ,
        Scope.DEVICES_READ,
        Scope.TELEMETRY_READ,
        Scope.ALARMS_READ,
        Scope.SNAPSHOTS_READ,
    }
)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    dealer_id: str
    email: str
    role: Role
    site_ids: frozenset[str] | None
    created_at: datetime
    disabled_at: datetime | None

    @property
    def delegable(self) -> frozenset[Scope]:
        return SITE_USER_SCOPES if self.role is Role.SITE_USER else frozenset(Scope)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dealer_id": self.dealer_id,
            "email": self.email,
            "role": self.role.value,
            "site_ids": sorted(self.site_ids) if self.site_ids is not None else None,
            "created_at": self.created_at.isoformat(),
            "disabled_at": self.disabled_at.isoformat() if self.disabled_at else None,
        }


def _user(m: Any) -> User:
    site_ids = m["site_ids"]
    return User(
        id=m["id"],
        dealer_id=m["dealer_id"],
        email=m["email"],
        role=Role(m["role"]),
        site_ids=frozenset(site_ids) if site_ids is not None else None,
        created_at=m["created_at"],
        disabled_at=m["disabled_at"],
    )


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if len(value) > 254 or not _EMAIL.match(value):
        raise InvalidInput("That is not an e-mail address.")
    return value


class UserService:
    def __init__(self, db: Database, audit: AuditLog, clock: Clock) -> None:
        self._db, self._audit, self._clock = db, audit, clock
        self._hasher = PasswordHasher()
        self._dummy: str | None = None

    def _dummy_hash(self) -> str:
        """Verified against for unknown e-mails so both paths cost the same (made on first use:
        hashing costs ~150 ms, which every CLI command would otherwise pay)."""
        if self._dummy is None:
            self._dummy = self._hasher.hash("vigil-no-such-user-padding")
        return self._dummy

    def create(
        self,
        actor: Actor,
        *,
        dealer_id: str,
        email: str,
        role: Role,
        password: str,
        site_ids: Iterable[str] = (),
    ) -> User:
        email = normalize_email(email)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidInput(f"A password is {MIN_PASSWORD} to {MAX_PASSWORD} characters.")
        chosen = frozenset(s.strip() for s in site_ids if s.strip())
        if role is Role.SITE_USER and not chosen:
            raise InvalidInput("A site user needs at least one site (--sites).")
        if role is Role.OPERATOR and chosen:
            raise InvalidInput("Operators see the whole dealer; --sites is for site users.")
        now = self._clock.now()
        user = User(
            new_id("usr"),
            dealer_id,
            email,
            role,
            chosen if role is Role.SITE_USER else None,
            now,
            None,
        )
        password_hash = self._hasher.hash(password)
        with self._db.transaction() as conn:
            if conn.execute(select(dealers.c.id).where(dealers.c.id == dealer_id)).first() is None:
                raise NotFound(f"No dealer '{dealer_id}'.")
            if chosen:
                found = set(
                    conn.execute(
                        select(sites.c.id).where(
                            sites.c.dealer_id == dealer_id, sites.c.id.in_(sorted(chosen))
                        )
                    ).scalars()
                )
                if found != chosen:
                    raise NotFound("No site " + ", ".join(sorted(chosen - found)) + ".")
            taken = select(users.c.id).where(users.c.dealer_id == dealer_id, users.c.email == email)
            if conn.execute(taken).first() is not None:
                raise Conflict("This dealer already has a user with that e-mail.")
            conn.execute(
                insert(users).values(
                    id=user.id,
                    dealer_id=dealer_id,
                    email=email,
                    role=role.value,
                    password_hash=password_hash,
                    site_ids=sorted(chosen) if user.site_ids is not None else None,
                    created_at=now,
                )
            )
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.USER_CREATED,
                    target_type="user",
                    target_id=user.id,
                    dealer_id=dealer_id,
                    details={"role": role.value, "sites": sorted(chosen)},
                ),
            )
        return user

    def set_disabled(self, actor: Actor, user_id: str, disabled: bool) -> dict[str, int]:
        """Disable a user: sign-in refused, and in the same transaction every access and
        refresh token acting for them, every consent (grant) they gave and every portal session
        revoked, so their next request fails wherever it comes from. Enabling restores the
        sign-in only: apps must ask for consent again. Returns what was revoked."""
        now = self._clock.now()
        counts = {"tokens_revoked": 0, "grants_revoked": 0, "sessions_revoked": 0}
        with self._db.transaction() as conn:
            row = conn.execute(select(users.c.dealer_id).where(users.c.id == user_id)).first()
            if row is None:
                raise NotFound(f"No user '{user_id}'.")
            conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(disabled_at=now if disabled else None)
            )
            if disabled:
                counts = self._revoke_everything(conn, user_id, now)
            self._audit.write_in(
                conn,
                actor.record(
                    now,
                    AuditAction.USER_DISABLED if disabled else AuditAction.USER_ENABLED,
                    target_type="user",
                    target_id=user_id,
                    dealer_id=row.dealer_id,
                    details=dict(counts) if disabled else None,
                ),
            )
        return counts

    @staticmethod
    def _revoke_everything(conn: Any, user_id: str, now: datetime) -> dict[str, int]:
        tokens = revoke_where(
            conn,
            now,
            oauth_tokens.c.actor_id == user_id,
            oauth_tokens.c.actor_type == ActorType.USER.value,
        )
        grants = conn.execute(
            update(oauth_grants)
            .where(oauth_grants.c.user_id == user_id, oauth_grants.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        sessions = conn.execute(
            update(portal_sessions)
            .where(portal_sessions.c.user_id == user_id, portal_sessions.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        return {
            "tokens_revoked": tokens,
            "grants_revoked": int(grants),
            "sessions_revoked": int(sessions),
        }

    def get(self, user_id: str) -> User:
        with self._db.read() as conn:
            row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
        if row is None:
            raise NotFound(f"No user '{user_id}'.")
        return _user(row)

    def list(self, dealer_id: str | None = None) -> list[User]:
        query = select(users).order_by(users.c.created_at, users.c.id)
        if dealer_id is not None:
            query = query.where(users.c.dealer_id == dealer_id)
        with self._db.read() as conn:
            return [_user(r) for r in conn.execute(query).mappings()]

    def authenticate(self, dealer_id: str, email: str, password: str) -> User | None:
        """The dealer's active user with this e-mail and password, else None (one answer for
        every reason, so the form cannot be used to discover accounts)."""
        try:
            email = normalize_email(email)
        except InvalidInput:
            email = ""
        row = None
        if email and len(password) <= MAX_PASSWORD:
            with self._db.read() as conn:
                query = select(users).where(users.c.dealer_id == dealer_id, users.c.email == email)
                row = conn.execute(query).mappings().first()
        stored = row["password_hash"] if row is not None else self._dummy_hash()
        try:
            self._hasher.verify(stored, password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled_at"] is not None:
            return None
        return _user(row)
