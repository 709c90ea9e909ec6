"""The hot path: a presented API key to a `Principal`, or a refusal (S9, S12, S13).

Every check runs on every request against the key's current rows (read from the database, or
kept by the lookup only while no process has written those tables since: see
`vigil.auth.apikeys.lookup`), so revocation and app scope changes take effect on the very next
request, in every server process.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update

from vigil.auth.addresses import AddressNotAllowed, check_address
from vigil.auth.apikeys import format as keyformat
from vigil.auth.apikeys.lookup import RawLookup
from vigil.auth.apikeys.models import KeyStatus
from vigil.auth.principal import ActorType, Environment, Principal
from vigil.auth.scopes import decode_scopes
from vigil.core.clock import Clock
from vigil.core.errors import AuthenticationFailed
from vigil.storage.db import Database
from vigil.storage.tables import api_keys, apps

# Last-used bookkeeping is a write; doing it on every request would turn each read into a write
# transaction. A minute's resolution is what an owner needs to tell a live key from a dead one.
LAST_USED_RESOLUTION = timedelta(minutes=1)

_LOOKUP = (
    select(
        api_keys.c.secret_hash,
        api_keys.c.app_id,
        api_keys.c.dealer_id,
        api_keys.c.environment,
        api_keys.c.scopes,
        api_keys.c.status,
        api_keys.c.expires_at,
        api_keys.c.last_used_at,
        apps.c.scopes.label("app_scopes"),
        apps.c.ip_allow_list,
    )
    .join(apps, apps.c.id == api_keys.c.app_id)
    .where(api_keys.c.id == bindparam("key_id"))
)

_TOUCH = (
    update(api_keys)
    .where(api_keys.c.id == bindparam("key_id"))
    .values(last_used_at=bindparam("at"), last_used_ip=bindparam("ip"))
)

INVALID = "The API key is not valid."
__all__ = ["AddressNotAllowed", "ApiKeyVerifier"]


class ApiKeyVerifier:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db, self._clock = db, clock
        self._lookup = RawLookup(db, _LOOKUP, _TOUCH)

    def verify(self, token: str, client_ip: str | None) -> Principal:
        """Resolve `token` or raise. Refusals all read alike, so probing learns nothing."""
        parsed = keyformat.parse(token)
        if parsed is None:
            raise AuthenticationFailed("The API key is malformed or its checksum is wrong.")
        now = self._clock.now()
        m = self._lookup.fetch(key_id=parsed.key_id)
        if m is None:
            raise AuthenticationFailed(INVALID)
        if not keyformat.secrets_match(m["secret_hash"], parsed):
            raise AuthenticationFailed(INVALID)
        environment = Environment(m["environment"])
        if environment is not parsed.environment:
            raise AuthenticationFailed(INVALID)
        status = KeyStatus(m["status"])
        expires_at: datetime | None = m["expires_at"]
        if status is KeyStatus.REVOKED or (expires_at is not None and now >= expires_at):
            raise AuthenticationFailed(INVALID)
        principal = Principal(
            actor_type=ActorType.APP,
            actor_id=m["app_id"],
            dealer_id=m["dealer_id"],
            environment=environment,
            scopes=decode_scopes(m["scopes"]) & decode_scopes(m["app_scopes"]),
            credential_id=parsed.key_id,
            credential_kind="api_key",
            app_id=m["app_id"],
            expires_at=expires_at,
        )
        check_address(principal, m["ip_allow_list"], client_ip)
        last_used: datetime | None = m["last_used_at"]
        if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
            self._lookup.touch(key_id=parsed.key_id, at=now, ip=client_ip)
            m["last_used_at"] = now  # a kept row: the next request need not write it again
        return principal
