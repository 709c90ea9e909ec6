"""SQLCipher for the embedded SQLite database (S6), keyed from the KMS (S7).

The database key is a random 256-bit key wrapped by the platform KEK and kept in
`$VIGIL_HOME/keys/database-key.json` (0600), beside the master key and never in the database:
a copy of `vigil.db` (or its WAL) alone is noise. It is passed as a raw key
(`PRAGMA key = "x'…'"`), so opening a connection costs no PBKDF2 run.

Every connection the engine makes goes through `creator`, including the raw driver connections
of the hot paths (`auth/apikeys/lookup.py`, the audit writer), which borrow from the same pool.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vigil.crypto.kms.port import Kms
from vigil.crypto.material import SecretKey

KEY_FILE = "database-key.json"
_CONTEXT = {"vigil:purpose": "database"}
_PLAIN_HEADER = b"SQLite format 3\x00"


def database_key(kms: Kms, keys_dir: Path) -> SecretKey:
    """The database key: unwrapped from the key file, or created (and wrapped) on first use."""
    path = keys_dir / KEY_FILE
    if not path.exists():
        generated = kms.generate_data_key(kms.platform_key_ref, _CONTEXT)
        record = {
            "kms_key_ref": generated.kms_key_ref,
            "wrapped": base64.b64encode(generated.wrapped).decode("ascii"),
        }
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:  # O_EXCL: two processes starting at once must not each create a different key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            generated.plaintext.destroy()
        else:
            with os.fdopen(fd, "w") as out:
                json.dump(record, out)
                out.flush()
                os.fsync(out.fileno())
            return generated.plaintext
    record = json.loads(path.read_text())
    return kms.decrypt_data_key(
        record["kms_key_ref"], base64.b64decode(record["wrapped"]), _CONTEXT
    )


def rewrap_database_key(kms: Kms, keys_dir: Path) -> bool:
    """After `kms.rotate`: re-wrap the key file under the newest KEK version (atomic replace)."""
    path = keys_dir / KEY_FILE
    if not path.exists():
        return False
    record = json.loads(path.read_text())
    new = kms.rewrap(record["kms_key_ref"], base64.b64decode(record["wrapped"]), _CONTEXT)
    record["wrapped"] = base64.b64encode(new).decode("ascii")
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
        out.flush()
        os.fsync(out.fileno())
    temp.replace(path)
    return True


def dbapi() -> Any:
    """The DB-API module the connections come from (for the engine's exception mapping)."""
    import sqlcipher3

    return sqlcipher3.dbapi2


def _pragma_key(key: SecretKey) -> str:
    return f"PRAGMA key = \"x'{key.reveal().hex()}'\""


def creator(path: Path, key: SecretKey) -> Callable[[], Any]:
    """An engine `creator`: SQLCipher connections keyed before their first statement."""
    import sqlcipher3

    pragma = _pragma_key(key)

    def connect() -> Any:
        conn = sqlcipher3.dbapi2.connect(str(path), check_same_thread=False, isolation_level=None)
        conn.execute(pragma)
        return conn

    encrypt_existing(path, key)
    return connect


def encrypt_existing(path: Path, key: SecretKey) -> None:
    """A database created before SQLCipher was wired in is plaintext: encrypt it once, in place
    (`sqlcipher_export` into a keyed copy, then an atomic rename), so `make run` on an old
    `VIGIL_HOME` keeps its data and stops storing it in the clear."""
    import sqlcipher3

    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        if f.read(len(_PLAIN_HEADER)) != _PLAIN_HEADER:
            return
    target = path.with_name(path.name + ".encrypting")
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    plain = sqlcipher3.dbapi2.connect(str(path), isolation_level=None)
    try:
        plain.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        plain.execute(
            f"ATTACH DATABASE ? AS encrypted KEY \"x'{key.reveal().hex()}'\"", (str(target),)
        )
        plain.execute("SELECT sqlcipher_export('encrypted')")
        plain.execute("DETACH DATABASE encrypted")
    finally:
        plain.close()
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()
    target.replace(path)
