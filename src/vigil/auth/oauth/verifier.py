"""The hot path for OAuth: a presented `vgl_at_…` access token to a `Principal` (S10, S12).

Built like the API key verifier (vigil.auth.apikeys.verifier) and as cheap: offline format and
checksum check, then one primary-key read on a raw driver connection, joined to the client app
(or the partner) so that narrowing the app's scopes narrows its tokens at once, and the app's
(or partner's) IP allow list binds the token exactly as it binds an API key (S9). Revocation,
expiry and refresh reuse (which revokes the family) are effective on the very next request.
"""

from __future__ import annotations

from sqlalchemy import bindparam, false, select, update

from vigil.auth.addresses import check_address
from vigil.auth.apikeys.lookup import RawLookup
from vigil.auth.oauth import tokens
from vigil.auth.principal import ActorType, Environment, Principal
from vigil.auth.scopes import decode_scopes
from vigil.core.clock import Clock
from vigil.core.errors import AuthenticationFailed
from vigil.storage.db import Database
from vigil.storage.tables import apps, oauth_tokens, partners

_LOOKUP = (
    select(
        oauth_tokens.c.secret_hash,
        oauth_tokens.c.kind,
        oauth_tokens.c.actor_type,
        oauth_tokens.c.actor_id,
        oauth_tokens.c.dealer_id,
        oauth_tokens.c.environment,
        oauth_tokens.c.scopes,
        oauth_tokens.c.site_ids,
        oauth_tokens.c.app_id,
        oauth_tokens.c.expires_at,
        oauth_tokens.c.revoked_at,
        apps.c.scopes.label("app_scopes"),
        apps.c.ip_allow_list.label("app_allow_list"),
        partners.c.ip_allow_list.label("partner_allow_list"),
        partners.c.disabled_at.label("partner_disabled_at"),
    )
    .outerjoin(apps, apps.c.id == oauth_tokens.c.app_id)
    .outerjoin(partners, partners.c.id == oauth_tokens.c.partner_id)
    .where(oauth_tokens.c.id == bindparam("token_id"))
)
# RawLookup also prepares a bookkeeping update; access tokens keep none (no last-used write).
_NO_TOUCH = update(oauth_tokens).where(false()).values(used_at=bindparam("at"))

INVALID = "The access token is not valid."
KIND = {ActorType.USER: "oauth_access_token", ActorType.PARTNER: "assertion_access_token"}


class _TokenLookup(RawLookup):
    DATETIMES = ("expires_at", "revoked_at", "partner_disabled_at")
    JSONS = ("site_ids",)


class AccessTokenVerifier:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._clock = clock
        self._lookup = _TokenLookup(db, _LOOKUP, _NO_TOUCH)

    def verify(self, token: str, client_ip: str | None) -> Principal:
        """Resolve `token` or raise; every refusal reads alike."""
        presented = tokens.parse(token, tokens.Kind.ACCESS)
        if presented is None:
            raise AuthenticationFailed("The access token is malformed or its checksum is wrong.")
        m = self._lookup.fetch(token_id=presented.id)
        if m is None or m["kind"] != tokens.Kind.ACCESS.value:
            raise AuthenticationFailed(INVALID)
        if not presented.matches(m["secret_hash"]):
            raise AuthenticationFailed(INVALID)
        if m["revoked_at"] is not None or self._clock.now() >= m["expires_at"]:
            raise AuthenticationFailed(INVALID)
        if m["partner_disabled_at"] is not None:  # revoked on disabling too; this is the belt
            raise AuthenticationFailed(INVALID)
        scopes = decode_scopes(m["scopes"])
        if m["app_scopes"] is not None:
            scopes &= decode_scopes(m["app_scopes"])
        site_ids = m["site_ids"]
        actor_type = ActorType(m["actor_type"])
        principal = Principal(
            actor_type=actor_type,
            actor_id=m["actor_id"],
            dealer_id=m["dealer_id"],
            environment=Environment(m["environment"]),
            scopes=scopes,
            credential_id=presented.id,
            credential_kind=KIND.get(actor_type, "oauth_access_token"),
            app_id=m["app_id"],
            site_ids=frozenset(site_ids) if site_ids is not None else None,
            expires_at=m["expires_at"],
        )
        stored = m["app_allow_list"] if m["app_id"] is not None else m["partner_allow_list"]
        return check_address(principal, stored, client_ip)
