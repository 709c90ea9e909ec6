"""CSRF protection for the sign-in and consent form: a signed double-submit token (OWASP).

The GET sets a random nonce in a `__Host-` cookie (Secure, no Domain, so a sibling host cannot
plant one) and puts HMAC(key, nonce) in the form. A cross-site POST has neither; an attacker who
can plant cookies still cannot compute the MAC. The key lives in a file under VIGIL_HOME so every
server process on the machine agrees on it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

COOKIE = "__Host-vigil_oauth_csrf"


class CsrfTokens:
    def __init__(self, key_path: Path) -> None:
        self._key_path = key_path
        self._key: bytes | None = None

    def _load(self) -> bytes:
        if self._key is None:
            self._key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(self._key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                self._key = self._key_path.read_bytes()
            else:
                key = secrets.token_bytes(32)
                with os.fdopen(fd, "wb") as f:
                    f.write(key)
                self._key = key
            if len(self._key) != 32:  # a concurrent creator had not finished writing
                self._key = None
                return self._load()
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
