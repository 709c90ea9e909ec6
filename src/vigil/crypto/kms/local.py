"""`VIGIL_KMS=local`: the embedded default, a KMS in a file for one machine.

Key-encryption keys live in the master key file (`keyfile.py`), never in the database. Wrapped
data keys are AES-256-GCM under a KEK version, with the encryption context as AAD::

    "VL" | format 1 (1) | KEK version (4, big-endian) | nonce (12) | wrapped key (32) | tag (16)

AAD = key name, KEK version and the canonical context, so a wrapped key only unwraps under the
same key name (a dealer's KEK cannot unwrap the platform's wraps or another dealer's) and for the
same dealer, purpose and generation it was made for.

Dealers' own KEKs live in the same file: `dealer-<id>` for an enterprise dealer (provisioned),
`standard-<id>` for a standard dealer (created on first use). Destroying one removes it from the
file (crypto-shredding: wraps made with it, in any database backup, no longer unwrap). There are
no customer-managed keys here (`customer_key_ref` says why).

Rotation appends a new KEK version; old versions stay in the file, so old wraps unwrap until
`rewrap` has moved them. Another process's rotation is picked up on the first wrap naming a
version this process has not loaded (the file is re-read once).
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vigil.crypto.errors import KmsError
from vigil.crypto.kms.keyfile import SCRYPT_N, KeyFile, MasterKeys
from vigil.crypto.kms.port import (
    EncryptionContext,
    GeneratedDataKey,
    canonical_context,
    check_dealer_id,
)
from vigil.crypto.material import SecretKey

PLATFORM_KEY = "platform"
_WRAP = struct.Struct(">2sBI")  # magic, format, KEK version
_MAGIC, _FORMAT = b"VL", 1
_WRAPPED_SIZE = _WRAP.size + 12 + 32 + 16


class LocalKms:
    """File-backed KMS. Thread-safe; safe against other processes rotating the same file."""

    provider = "local"
    platform_key_ref = PLATFORM_KEY

    def __init__(
        self, keys_dir: Path, passphrase: str | None = None, *, scrypt_n: int = SCRYPT_N
    ) -> None:
        self._file = KeyFile(keys_dir, passphrase, scrypt_n=scrypt_n)
        self._lock = threading.Lock()
        self._master: MasterKeys | None = None
        self._ciphers: dict[tuple[str, int], AESGCM] = {}

    def __repr__(self) -> str:
        return f"<LocalKms {self._file.path}>"

    # ---------------------------------------------------------------- key admin

    def ensure_platform_key(self) -> None:
        self._ensure(PLATFORM_KEY)

    def create_tenant_key(self, dealer_id: str) -> str:
        name = self.tenant_key_ref(dealer_id)
        self._ensure(name)
        return name

    def tenant_key_ref(self, dealer_id: str) -> str:
        return f"dealer-{check_dealer_id(dealer_id)}"

    def customer_key_ref(self, key_ref: str) -> str:
        # Every key in the master key file is Vigil's: written by it, beside its database,
        # sealed (if at all) by its passphrase. A "customer" key there would be a label without
        # the property it promises (the customer could neither revoke Vigil's use of it nor
        # keep it out of Vigil's reach), so the local KMS refuses rather than pretend.
        raise KmsError(
            "the local KMS holds only Vigil's own keys; a customer-managed key needs "
            "VIGIL_KMS=transit or VIGIL_KMS=aws"
        )

    def dealer_key_ref(self, dealer_id: str) -> str:
        return f"standard-{check_dealer_id(dealer_id)}"

    def create_dealer_key(self, dealer_id: str) -> str:
        name = self.dealer_key_ref(dealer_id)
        self._ensure(name)
        return name

    def destroy_tenant_key(self, key_ref: str) -> None:
        if key_ref == PLATFORM_KEY or not key_ref.startswith(("dealer-", "standard-")):
            raise KmsError("Only a dealer's own key can be destroyed.")
        with self._file.locked():
            master = self._file.load()
            if master.keys.pop(key_ref, None) is not None:
                self._file.save(master)
            self._install(master)

    def rotate(self, key_ref: str) -> None:
        with self._file.locked():
            master = self._file.load()
            if key_ref not in master.keys:
                raise KmsError(f"No local KMS key named {key_ref!r}.")
            master.keys[key_ref][master.latest(key_ref) + 1] = os.urandom(32)
            self._file.save(master)
            self._install(master)

    # ------------------------------------------------------------ data keys

    def generate_data_key(self, key_ref: str, context: EncryptionContext) -> GeneratedDataKey:
        plaintext = SecretKey(os.urandom(32))
        version = self._latest(key_ref)
        return GeneratedDataKey(
            plaintext, self._wrap(key_ref, version, plaintext.reveal(), context), key_ref
        )

    def decrypt_data_key(
        self, key_ref: str, wrapped: bytes, context: EncryptionContext
    ) -> SecretKey:
        if len(wrapped) != _WRAPPED_SIZE:
            raise KmsError("Wrapped key has the wrong size.")
        magic, fmt, version = _WRAP.unpack_from(wrapped)
        if magic != _MAGIC or fmt != _FORMAT:
            raise KmsError("Not a local KMS wrapped key.")
        cipher = self._cipher(key_ref, version)
        nonce = wrapped[_WRAP.size : _WRAP.size + 12]
        try:
            raw = cipher.decrypt(
                nonce, wrapped[_WRAP.size + 12 :], self._aad(key_ref, version, context)
            )
        except InvalidTag:
            raise KmsError("Wrapped key failed to unwrap (wrong key or context).") from None
        return SecretKey(raw)

    def rewrap(self, key_ref: str, wrapped: bytes, context: EncryptionContext) -> bytes:
        return self.move(key_ref, wrapped, context, key_ref)

    def move(
        self, source_ref: str, wrapped: bytes, context: EncryptionContext, target_ref: str
    ) -> bytes:
        secret = self.decrypt_data_key(source_ref, wrapped, context)
        try:
            return self._wrap(target_ref, self._latest(target_ref), secret.reveal(), context)
        finally:
            secret.destroy()

    def close(self) -> None:
        with self._lock:
            self._ciphers.clear()
            self._master = None

    # -------------------------------------------------------------- internals

    @staticmethod
    def _aad(key_ref: str, version: int, context: EncryptionContext) -> bytes:
        return f"vigil-local-kms\0{key_ref}\0{version}\0".encode() + canonical_context(context)

    def _wrap(self, key_ref: str, version: int, raw: bytes, context: EncryptionContext) -> bytes:
        nonce = os.urandom(12)
        sealed = self._cipher(key_ref, version).encrypt(
            nonce, raw, self._aad(key_ref, version, context)
        )
        return _WRAP.pack(_MAGIC, _FORMAT, version) + nonce + sealed

    def _ensure(self, name: str) -> None:
        with self._file.locked():
            master = self._file.load()
            if name not in master.keys:
                master.keys[name] = {1: os.urandom(32)}
                self._file.save(master)
            self._install(master)

    def _install(self, master: MasterKeys) -> None:
        with self._lock:
            self._master = master
            self._ciphers = {
                (name, version): AESGCM(raw)
                for name, versions in master.keys.items()
                for version, raw in versions.items()
            }

    def _reload(self) -> None:
        with self._file.locked():
            self._install(self._file.load())

    def _latest(self, key_ref: str) -> int:
        if self._master is None or key_ref not in self._master.keys:
            self._reload()
        assert self._master is not None
        if key_ref not in self._master.keys:
            raise KmsError(f"No local KMS key named {key_ref!r}.")
        return self._master.latest(key_ref)

    def _cipher(self, key_ref: str, version: int) -> AESGCM:
        cipher = self._ciphers.get((key_ref, version))
        if cipher is None:
            self._reload()  # perhaps rotated by another process since we loaded the file
            cipher = self._ciphers.get((key_ref, version))
        if cipher is None:
            raise KmsError("Wrapped key names a KEK this KMS does not have.")
        return cipher
