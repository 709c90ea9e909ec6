"""CSRF protection for the sign-in and consent form: a signed double-submit token (OWASP).

The GET sets a random nonce in a `__Host-` cookie (Secure, no Domain, so a sibling host cannot
plant one) and puts HMAC(key, nonce) in the form. A cross-site POST has neither; an attacker who
can plant cookies still cannot compute the MAC. The key is kept in the database (`platform_state`)
so that every server process, on every host behind a balancer, agrees on it; the first process
to need it creates it, and a concurrent creator loses the insert and reads the winner's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from vigil.storage.db import Database
from vigil.storage.tables import settings_kv

COOKIE = "__Host-vigil_oauth_csrf"
KEY_NAME = "oauth_csrf_key"


class CsrfTokens:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._key: bytes | None = None

    def _load(self) -> bytes:
        if self._key is None:
            query = select(settings_kv.c.value).where(settings_kv.c.name == KEY_NAME)
            with self._db.read() as conn:
                stored = conn.execute(query).scalar_one_or_none()
            if stored is None:
                try:
                    with self._db.transaction() as conn:
                        fresh = secrets.token_hex(32)
                        conn.execute(insert(settings_kv).values(name=KEY_NAME, value=fresh))
                        stored = fresh
                except IntegrityError:
                    with self._db.read() as conn:
                        stored = conn.execute(query).scalar_one()
            self._key = bytes.fromhex(stored)
        return self._key

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(32)

    def token_for(self, nonce: str) -> str:
        return hmac.new(self._load(), nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token or len(nonce) > 100:
            return False
        return hmac.compare_digest(self.token_for(nonce), token)
