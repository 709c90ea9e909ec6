"""Issuing and revoking access and refresh tokens (RFC 6749 sections 5.1 and 6).

Tokens are opaque (`vgl_at_…`, `vgl_rt_…`), not JWTs: the edge looks each one up anyway, so a
revocation is effective on the very next request in every process, which a self-contained JWT
could only approximate with a deny list. Tokens issued from one authorization code form a
family; the family is what refresh-token reuse or code replay revokes (RFC 9700 section 4.14).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, insert, update

from vigil.auth.oauth import tokens
from vigil.auth.principal import ActorType, Environment
from vigil.auth.scopes import Scope, encode_scopes
from vigil.core.ids import new_ordered_id
from vigil.storage.tables import oauth_tokens

MAX_ACCESS = timedelta(hours=24)  # S10: whatever the setting says


@dataclass(frozen=True, slots=True)
class Subject:
    """Whom a token acts for, and within what."""

    actor_type: ActorType
    actor_id: str
    dealer_id: str
    environment: Environment
    scopes: frozenset[Scope]
    site_ids: frozenset[str] | None = None
    app_id: str | None = None
    partner_id: str | None = None
    grant_id: str | None = None


@dataclass(frozen=True, slots=True)
class Issued:
    access: tokens.Minted
    refresh: tokens.Minted | None
    expires_in: int
    scopes: frozenset[Scope]

    def __repr__(self) -> str:
        return f"Issued(access={self.access!r}, refresh={self.refresh!r})"

    def response(self) -> dict[str, Any]:
        """The RFC 6749 section 5.1 token response."""
        body: dict[str, Any] = {
            "access_token": self.access.value,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": encode_scopes(self.scopes),
        }
        if self.refresh is not None:
            body["refresh_token"] = self.refresh.value
        return body


def _row(
    minted: tokens.Minted,
    subject: Subject,
    family_id: str,
    now: datetime,
    expires_at: datetime,
    family_expires_at: datetime | None,
) -> dict[str, Any]:
    return {
        "id": minted.id,
        "kind": minted.kind.value,
        "secret_hash": minted.secret_hash,
        "family_id": family_id,
        "grant_id": subject.grant_id,
        "app_id": subject.app_id,
        "partner_id": subject.partner_id,
        "actor_type": subject.actor_type.value,
        "actor_id": subject.actor_id,
        "dealer_id": subject.dealer_id,
        "environment": subject.environment.value,
        "scopes": encode_scopes(subject.scopes),
        "site_ids": sorted(subject.site_ids) if subject.site_ids is not None else None,
        "created_at": now,
        "expires_at": expires_at,
        "family_expires_at": family_expires_at,
    }


def issue(
    conn: Connection,
    subject: Subject,
    *,
    family_id: str,
    now: datetime,
    access_ttl: timedelta,
    refresh_until: datetime | None,
) -> Issued:
    """An access token, and a refresh token when `refresh_until` (the family's absolute end)
    is given; inserted in the caller's transaction, beside its audit record."""
    ttl = min(access_ttl, MAX_ACCESS)
    if refresh_until is not None:
        ttl = min(ttl, refresh_until - now)
    access = tokens.mint(tokens.Kind.ACCESS)
    rows = [_row(access, subject, family_id, now, now + ttl, None)]
    refresh = None
    if refresh_until is not None:
        refresh = tokens.mint(tokens.Kind.REFRESH)
        rows.append(_row(refresh, subject, family_id, now, refresh_until, refresh_until))
    conn.execute(insert(oauth_tokens), rows)
    return Issued(access, refresh, int(ttl.total_seconds()), subject.scopes)


def issue_access(
    conn: Connection, grants: Sequence[tuple[Subject, datetime]], access_ttl: timedelta
) -> list[Issued]:
    """One access token (no refresh token) per (subject, now), all in one multi-row insert:
    the batched grants' share of a group commit (vigil.storage.group_commit)."""
    ttl = min(access_ttl, MAX_ACCESS)
    issued, rows = [], []
    for subject, now in grants:
        access = tokens.mint(tokens.Kind.ACCESS, time_ordered=True)
        # A time-ordered family id: its index grows at the right-hand end instead of touching
        # (and, with SQLCipher, re-encrypting) one random page per token at every commit.
        rows.append(_row(access, subject, new_ordered_id("fam"), now, now + ttl, None))
        issued.append(Issued(access, None, int(ttl.total_seconds()), subject.scopes))
    if rows:
        conn.execute(insert(oauth_tokens), rows)
    return issued


def revoke_family(conn: Connection, family_id: str, now: datetime) -> int:
    done = conn.execute(
        update(oauth_tokens)
        .where(oauth_tokens.c.family_id == family_id, oauth_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(done.rowcount)


def revoke_where(conn: Connection, now: datetime, *where: ColumnElement[bool]) -> int:
    """Revoke every live token matching `where` (a user's, a partner's for one dealer, ...):
    effective on the next request, since the edge reads the token's row every time."""
    done = conn.execute(
        update(oauth_tokens)
        .where(*where, oauth_tokens.c.revoked_at.is_(None), oauth_tokens.c.expires_at > now)
        .values(revoked_at=now)
    )
    return int(done.rowcount)


def revoke_token(conn: Connection, token_id: str, now: datetime) -> int:
    done = conn.execute(
        update(oauth_tokens)
        .where(oauth_tokens.c.id == token_id, oauth_tokens.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return int(done.rowcount)


def claim_refresh(conn: Connection, token_id: str, now: datetime) -> bool:
    """Mark a refresh token used; True for exactly one caller however many race (the
    conditional update is atomic on both databases), so a second use is always detected."""
    done = conn.execute(
        update(oauth_tokens)
        .where(
            oauth_tokens.c.id == token_id,
            oauth_tokens.c.used_at.is_(None),
            oauth_tokens.c.revoked_at.is_(None),
        )
        .values(used_at=now)
    )
    return int(done.rowcount) == 1
