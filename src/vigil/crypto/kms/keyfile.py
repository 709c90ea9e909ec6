"""The local KMS's master key file: versioned key-encryption keys, optionally passphrase-sealed.

File: `$VIGIL_HOME/keys/kms-master.json`, mode 0600 in a 0700 directory, never inside the database
(a stolen database or backup alone must not contain what unwraps its data keys: S7). JSON::

    {"format": "vigil-local-kms/1",
     "kdf": null | {"name": "scrypt", "salt": b64, "n": 131072, "r": 8, "p": 1},
     "keys": {"platform": {"1": b64, "2": b64}, "dealer-d1": {"1": b64}}}

Without a passphrase each version is the raw 32-byte key in base64: the file's permissions are the
protection. With `VIGIL_KMS_PASSPHRASE` each version is AES-256-GCM-sealed under a key derived by
scrypt (RFC 7914), AAD = key name and version, so a copy of the file is useless without the
passphrase and versions cannot be swapped between names.

Why scrypt and not Argon2id: scrypt is memory-hard, standardised (RFC 7914), and already in
`cryptography`, so sealing adds no dependency and no second native library to the trusted base;
the KDF runs once per process start, so its cost (n=2^17, r=8: 128 MiB, a few hundred ms) buys
resistance to offline guessing without touching request latency. Parameters are stored in the
file, so they can be raised later without breaking existing files.

Writers take an exclusive `flock` on a sibling lock file and replace the file atomically (write to
a temporary file, fsync, rename, fsync the directory), so `vigil kms rotate` in one process and a
server in another never see a half-written file or lose each other's versions.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from vigil.crypto.errors import KmsError

FORMAT = "vigil-local-kms/1"
FILE_NAME = "kms-master.json"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1


@dataclass
class MasterKeys:
    """Decoded contents: key name -> version -> 32-byte key."""

    keys: dict[str, dict[int, bytes]] = field(default_factory=dict, repr=False)

    def latest(self, name: str) -> int:
        return max(self.keys[name])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


class KeyFile:
    """Reads and atomically rewrites the master key file."""

    def __init__(self, directory: Path, passphrase: str | None, *, scrypt_n: int = SCRYPT_N):
        self.directory = directory
        self.path = directory / FILE_NAME
        self._lock_path = directory / (FILE_NAME + ".lock")
        self._passphrase = passphrase.encode("utf-8") if passphrase else None
        self._scrypt_n = scrypt_n
        self._kek: tuple[dict[str, Any], AESGCM] | None = None  # (kdf parameters, passphrase key)

    def __repr__(self) -> str:
        return f"<KeyFile {self.path} sealed={self._passphrase is not None}>"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> MasterKeys:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return MasterKeys()
        if stat.S_IMODE(info.st_mode) & 0o077:
            # Like ssh with private keys: a readable master key file is already a leak.
            raise KmsError(f"{self.path} must not be accessible by group or others (chmod 600).")
        document = json.loads(self.path.read_text("utf-8"))
        if document.get("format") != FORMAT:
            raise KmsError(f"{self.path} is not a Vigil local KMS file.")
        kdf = document.get("kdf")
        if (kdf is None) != (self._passphrase is None):
            raise KmsError(
                "The master key file is sealed and VIGIL_KMS_PASSPHRASE is not set."
                if kdf
                else "VIGIL_KMS_PASSPHRASE is set but the master key file is not sealed."
            )
        cipher = self._cipher(kdf) if kdf else None
        keys: dict[str, dict[int, bytes]] = {}
        for name, versions in document["keys"].items():
            keys[name] = {}
            for version_text, blob in versions.items():
                version = int(version_text)
                raw = _unb64(blob)
                if cipher is not None:
                    try:
                        raw = cipher.decrypt(raw[:12], raw[12:], f"{name}\0{version}".encode())
                    except InvalidTag:
                        raise KmsError(
                            "Wrong VIGIL_KMS_PASSPHRASE for the master key file."
                        ) from None
                keys[name][version] = raw
        return MasterKeys(keys)

    def save(self, master: MasterKeys) -> None:
        """Write atomically; call with `locked()` held."""
        kdf: dict[str, Any] | None = None
        cipher: AESGCM | None = None
        if self._passphrase is not None:
            kdf, cipher = self._new_or_current_kdf()
        versions_out: dict[str, dict[str, str]] = {}
        for name, versions in master.keys.items():
            versions_out[name] = {}
            for version, raw in versions.items():
                if cipher is not None:
                    nonce = os.urandom(12)
                    raw = nonce + cipher.encrypt(nonce, raw, f"{name}\0{version}".encode())
                versions_out[name][str(version)] = _b64(raw)
        text = json.dumps({"format": FORMAT, "kdf": kdf, "keys": versions_out}, indent=1)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        directory_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)

    def _cipher(self, kdf: dict[str, Any]) -> AESGCM:
        if self._kek is not None and self._kek[0] == kdf:
            return self._kek[1]
        salt = _unb64(kdf["salt"])
        if kdf.get("name") != "scrypt":
            raise KmsError("Unknown key derivation in the master key file.")
        assert self._passphrase is not None
        derived = Scrypt(salt=salt, length=32, n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"]))
        cipher = AESGCM(derived.derive(self._passphrase))
        self._kek = (dict(kdf), cipher)
        return cipher

    def _new_or_current_kdf(self) -> tuple[dict[str, Any], AESGCM]:
        if self._kek is not None:
            return self._kek
        kdf: dict[str, Any] = {
            "name": "scrypt",
            "salt": _b64(os.urandom(16)),
            "n": self._scrypt_n,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
        }
        return kdf, self._cipher(kdf)
