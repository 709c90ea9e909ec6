"""`VIGIL_KMS=transit`: OpenBao / HashiCorp Vault Transit secrets engine over its HTTP API.

The KEK never leaves the Transit server: Vigil asks for a data key (`datakey/plaintext`), stores
the returned ciphertext (`vault:vN:...`), and asks Transit to `decrypt` it when the key is needed.
`rotate` adds a KEK version inside Transit; `rewrap` re-encrypts a wrapped key under the newest
version without the plaintext ever coming back to Vigil.

Keys are created as `aes256-gcm96` with `derived=true`: the encryption context (dealer, purpose,
keyset, generation) is passed as Transit's `context`, from which Transit derives the key it wraps
with, so a wrapped key moved to another dealer's row does not unwrap. (Transit's
`associated_data` would also bind, but `rewrap` does not accept it; `context` works with
`datakey`, `decrypt` and `rewrap`.) Keys Vigil creates are not exportable; crypto-shredding a
dealer enables deletion on its key and deletes it (`destroy_tenant_key`).

A customer-managed key (BYOK, `customer_key_ref`) is any other key in the same mount, of an AEAD
type, with `derived=true`; Vigil needs `read` on it and `update` on its `datakey`, `decrypt`,
`encrypt` and `rewrap` paths, never `config`, `rotate` or `delete`.

Transport: HTTPS (optionally with a private CA bundle) or plain HTTP to a loopback address only
(a local agent or the test server), never plain HTTP over a network: the token and data keys
travel in these requests (S1).
"""

from __future__ import annotations

import base64
import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from vigil.crypto.errors import KmsError
from vigil.crypto.kms.port import (
    EncryptionContext,
    GeneratedDataKey,
    canonical_context,
    check_dealer_id,
)
from vigil.crypto.material import SecretKey

DEFAULT_PLATFORM_KEY = "vigil-platform"
_VIGIL_OWN = ("vigil-dealer-", "vigil-standard-")  # the names Vigil gives the keys it makes
_DATAKEY_TYPES = ("aes256-gcm96", "aes128-gcm96", "chacha20-poly1305")
_KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class TransitKms:
    """Transit client. Thread-safe (one `httpx.Client`, which pools connections)."""

    provider = "transit"

    def __init__(
        self,
        url: str,
        token: str,
        *,
        mount: str = "transit",
        platform_key: str = DEFAULT_PLATFORM_KEY,
        ca_bundle: Path | None = None,
        timeout: float = 10.0,
        namespace: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise KmsError("VIGIL_KMS_TRANSIT_URL must be an https:// URL.")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise KmsError("Plain HTTP to Transit is allowed only to a loopback address.")
        headers = {"X-Vault-Token": token}
        if namespace:
            headers["X-Vault-Namespace"] = namespace
        self._client = httpx.Client(
            base_url=f"{url.rstrip('/')}/v1/{quote(mount.strip('/'))}/",
            headers=headers,
            verify=str(ca_bundle) if ca_bundle else True,
            timeout=timeout,
        )
        self.platform_key_ref = platform_key

    def __repr__(self) -> str:  # the token stays out of it
        return f"<TransitKms {self._client.base_url}>"

    # ---------------------------------------------------------------- key admin

    def ensure_platform_key(self) -> None:
        self._create(self.platform_key_ref)

    def create_tenant_key(self, dealer_id: str) -> str:
        name = self.tenant_key_ref(dealer_id)
        self._create(name)
        return name

    def tenant_key_ref(self, dealer_id: str) -> str:
        return f"vigil-dealer-{check_dealer_id(dealer_id)}"

    def customer_key_ref(self, key_ref: str) -> str:
        if not _KEY_NAME.fullmatch(key_ref):
            raise KmsError("a Transit key name is 1-128 characters of [A-Za-z0-9_.-]")
        if key_ref == self.platform_key_ref or key_ref.startswith(_VIGIL_OWN):
            raise KmsError("that name belongs to one of Vigil's own keys")
        try:
            response = self._client.get(f"keys/{quote(key_ref)}")
        except httpx.HTTPError as exc:
            raise KmsError(f"Transit unreachable: {type(exc).__name__}.") from None
        if response.status_code == 404:
            raise KmsError(f"no Transit key by that name in this mount ({response.status_code})")
        info = self._handle(lambda: response)
        # `datakey` needs a symmetric AEAD key; `derived` is what binds each wrap to its
        # dealer's encryption context (without it Transit ignores the context: S8).
        if info.get("type") not in _DATAKEY_TYPES:
            raise KmsError(f"a {info.get('type')!s:.40} key cannot wrap data keys")
        if not info.get("derived"):
            raise KmsError("the key must be created with derived=true (context binding)")
        return key_ref

    def dealer_key_ref(self, dealer_id: str) -> str:
        return f"vigil-standard-{check_dealer_id(dealer_id)}"

    def create_dealer_key(self, dealer_id: str) -> str:
        name = self.dealer_key_ref(dealer_id)
        self._create(name)
        # Platform-managed: deletable from the start, so shredding is one call.
        self._post(f"keys/{quote(name)}/config", {"deletion_allowed": True})
        return name

    def destroy_tenant_key(self, key_ref: str) -> None:
        if not key_ref.startswith(_VIGIL_OWN):
            raise KmsError("Only a dealer's own key can be destroyed.")
        if not self._exists(key_ref):
            return  # never created, or already destroyed
        # Transit refuses to delete a key until its config allows it: two steps, on purpose.
        self._post(f"keys/{quote(key_ref)}/config", {"deletion_allowed": True})
        self._handle(lambda: self._client.delete(f"keys/{quote(key_ref)}"))

    def rotate(self, key_ref: str) -> None:
        self._post(f"keys/{quote(key_ref)}/rotate", {})

    # ------------------------------------------------------------ data keys

    def generate_data_key(self, key_ref: str, context: EncryptionContext) -> GeneratedDataKey:
        data = self._post(
            f"datakey/plaintext/{quote(key_ref)}", {"context": _b64(canonical_context(context))}
        )
        plaintext = SecretKey(base64.b64decode(data["plaintext"]))
        return GeneratedDataKey(plaintext, str(data["ciphertext"]).encode("ascii"), key_ref)

    def decrypt_data_key(
        self, key_ref: str, wrapped: bytes, context: EncryptionContext
    ) -> SecretKey:
        data = self._post(
            f"decrypt/{quote(key_ref)}",
            {"ciphertext": _text(wrapped), "context": _b64(canonical_context(context))},
        )
        try:
            return SecretKey(base64.b64decode(data["plaintext"]))
        except ValueError:
            raise KmsError("Transit returned a key of the wrong size.") from None

    def rewrap(self, key_ref: str, wrapped: bytes, context: EncryptionContext) -> bytes:
        data = self._post(
            f"rewrap/{quote(key_ref)}",
            {"ciphertext": _text(wrapped), "context": _b64(canonical_context(context))},
        )
        return str(data["ciphertext"]).encode("ascii")

    def move(
        self, source_ref: str, wrapped: bytes, context: EncryptionContext, target_ref: str
    ) -> bytes:
        # Transit's rewrap stays within one key: decrypt, then encrypt under the target. The
        # data key passes through this process once, as it does whenever it is used.
        encoded = _b64(canonical_context(context))
        data = self._post(
            f"decrypt/{quote(source_ref)}", {"ciphertext": _text(wrapped), "context": encoded}
        )
        out = self._post(
            f"encrypt/{quote(target_ref)}", {"plaintext": data["plaintext"], "context": encoded}
        )
        return str(out["ciphertext"]).encode("ascii")

    def close(self) -> None:
        self._client.close()

    # -------------------------------------------------------------- internals

    def _create(self, name: str) -> None:
        # Creating an existing key is a no-op in Transit, which makes this idempotent.
        self._post(f"keys/{quote(name)}", {"type": "aes256-gcm96", "derived": True})
        info = self._get(f"keys/{quote(name)}")
        if info.get("type") != "aes256-gcm96" or not info.get("derived"):
            raise KmsError(f"Transit key {name!r} must be type aes256-gcm96 with derived=true.")

    def _exists(self, name: str) -> bool:
        try:
            response = self._client.get(f"keys/{quote(name)}")
        except httpx.HTTPError as exc:
            raise KmsError(f"Transit unreachable: {type(exc).__name__}.") from None
        if response.status_code == 404:
            return False
        self._handle(lambda: response)
        return True

    def _get(self, path: str) -> dict[str, Any]:
        return self._handle(lambda: self._client.get(path))

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._handle(lambda: self._client.post(path, json=body))

    @staticmethod
    def _handle(call: Any) -> dict[str, Any]:
        try:
            response: httpx.Response = call()
        except httpx.HTTPError as exc:
            raise KmsError(f"Transit unreachable: {type(exc).__name__}.") from None
        if response.status_code >= 400:
            # Transit's error strings ("cipher: message authentication failed", "permission
            # denied") carry no key material; the request body (which may) is never echoed.
            try:
                errors = response.json().get("errors") or []
            except ValueError:
                errors = []
            reason = "; ".join(str(e) for e in errors)[:200] or "no detail"
            raise KmsError(f"Transit refused ({response.status_code}): {reason}")
        if response.status_code == 204 or not response.content:
            return {}
        data = response.json().get("data")
        return data if isinstance(data, dict) else {}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _text(wrapped: bytes) -> str:
    try:
        text = wrapped.decode("ascii")
    except UnicodeDecodeError:
        raise KmsError("Not a Transit wrapped key.") from None
    if not text.startswith("vault:v"):
        raise KmsError("Not a Transit wrapped key.")
    return text
