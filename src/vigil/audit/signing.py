"""Ed25519 checkpoint signing keys: private halves on disk (0600), public halves in the database.

Each server host keeps its own private key under `$VIGIL_HOME/keys/audit/`; its public key is
registered in `audit_signing_keys` so any verifier, and the published JWKS, can check every
checkpoint ever signed. Keys rotate by age; retired public keys stay published forever, since
old checkpoints must remain verifiable.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, insert, select, update

from vigil.audit.jwks import jwk
from vigil.core.clock import Clock
from vigil.storage.tables import audit_signing_keys


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey
    created_at: datetime

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, private=***)"

    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )


class AuditSigner:
    def __init__(self, keys_dir: Path, clock: Clock, max_age: timedelta) -> None:
        self._dir, self._clock, self._max_age = keys_dir, clock, max_age
        self._lock = threading.Lock()
        self._current: SigningKey | None = None

    def current(self, conn: Connection) -> SigningKey:
        """The key new checkpoints are signed with, rotated once it is older than `max_age`.

        Takes the caller's connection: a checkpoint is signed inside the append transaction,
        and registering a new public key must not wait on a lock that transaction holds.
        """
        with self._lock:
            now = self._clock.now()
            if self._current is None:
                self._current = self._newest_on_disk(conn)
            if self._current is None or now - self._current.created_at >= self._max_age:
                self._current = self._create(conn, now)
            return self._current

    def rotate(self, conn: Connection) -> SigningKey:
        with self._lock:
            self._current = self._create(conn, self._clock.now())
            return self._current

    def forget(self) -> None:
        """Drop the cached key: it may have been created in a transaction that rolled back."""
        with self._lock:
            self._current = None

    def jwks(self, conn: Connection) -> dict[str, Any]:
        rows = conn.execute(select(audit_signing_keys).order_by(audit_signing_keys.c.created_at))
        return {"keys": [jwk(r.kid, r.public_key, r.created_at, r.retired_at) for r in rows]}

    # -- internals -------------------------------------------------------------------------

    def _newest_on_disk(self, conn: Connection) -> SigningKey | None:
        if not self._dir.is_dir():
            return None
        newest: SigningKey | None = None
        for path in sorted(self._dir.glob("*.pem")):
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(private, Ed25519PrivateKey):
                continue
            kid = path.stem
            row = conn.execute(
                select(audit_signing_keys.c.created_at).where(audit_signing_keys.c.kid == kid)
            ).first()
            if row is None:
                continue
            key = SigningKey(kid, private, row[0])
            if newest is None or key.created_at > newest.created_at:
                newest = key
        return newest

    def _create(self, conn: Connection, now: datetime) -> SigningKey:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self._dir, 0o700)
        kid = f"audit-{now.strftime('%Y%m%d')}-{secrets.token_hex(4)}"
        key = SigningKey(kid, Ed25519PrivateKey.generate(), now)
        pem = key.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self._dir / f"{kid}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        # Retire every key still marked current, including ones another process created.
        conn.execute(
            update(audit_signing_keys)
            .where(audit_signing_keys.c.retired_at.is_(None))
            .values(retired_at=now)
        )
        conn.execute(
            insert(audit_signing_keys).values(
                kid=kid, public_key=key.public_raw(), created_at=now, retired_at=None
            )
        )
        return key
