"""The server's TLS settings, pinned to Mozilla's "intermediate" profile (S1).

Two halves, because Python 3.11's `ssl` cannot express all of the profile:

* `server_context` sets what `ssl.SSLContext` can: TLS 1.2 and 1.3 only, the six ECDHE AEAD
  suites for TLS 1.2, no compression, no renegotiation.
* The key-exchange groups cannot be set from Python (there is no `set_groups`, and
  `set_ecdh_curve` takes a single curve, which would also drop X25519). Left alone, OpenSSL 3.0
  offers X448 and P-521 too, and sslyze's Mozilla check fails on `tls_curves`. The groups are
  therefore set through an OpenSSL configuration file (`openssl_conf_text`) that the process must
  be *started* with, via `OPENSSL_CONF`: OpenSSL reads it once, when the library initialises.

`ReloadableCertificate` swaps the certificate of a running server without a restart.
"""

from __future__ import annotations

import os
import ssl
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from vigil.core.errors import VigilError

# Mozilla intermediate, in Mozilla's order. All are forward-secret AEAD suites; RSA key exchange,
# CBC (Lucky13-style padding oracles) and finite-field DHE (slow, weak parameters in the wild)
# are deliberately absent. TLS 1.3 suites are not set here: OpenSSL's defaults already equal
# Mozilla's three, and Python cannot change them anyway (the config file pins them instead).
MOZILLA_INTERMEDIATE_TLS12_CIPHERS: tuple[str, ...] = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
MOZILLA_INTERMEDIATE_TLS13_CIPHERSUITES = (
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
)
ALLOWED_GROUPS = "X25519:P-256:P-384"


class CertificateReloadError(VigilError):
    """New certificate files were rejected; the server keeps presenting the previous pair."""

    status = 500
    code = "tls_reload_failed"
    title = "TLS certificate reload failed"


def openssl_conf_text() -> str:
    """An OpenSSL 3 configuration restricting every TLS context in the process.

    `system_default` is the section OpenSSL applies to each new `SSL_CTX`, which is the only way
    to reach the groups list from Python 3.11. The file replaces the distribution's
    `openssl.cnf` for this process; that is intended, since the distribution file would otherwise
    decide the minimum protocol and groups. It also applies to outgoing connections the process
    makes (webhooks, for instance): TLS 1.2+ with modern groups is a sane floor for those too.
    """
    return (
        "# Written by Vigil. Loaded through OPENSSL_CONF when the server starts.\n"
        "openssl_conf = openssl_init\n"
        "\n"
        "[openssl_init]\n"
        "ssl_conf = ssl_configuration\n"
        "\n"
        "[ssl_configuration]\n"
        "system_default = tls_system_default\n"
        "\n"
        "[tls_system_default]\n"
        "MinProtocol = TLSv1.2\n"
        f"Groups = {ALLOWED_GROUPS}\n"
        f"Ciphersuites = {MOZILLA_INTERMEDIATE_TLS13_CIPHERSUITES}\n"
    )


def write_openssl_conf(path: Path) -> Path:
    """Write the configuration to `path` unless it already holds exactly that text.

    Leaving an identical file alone keeps its timestamp stable and lets it live on a read-only
    file system once written.
    """
    text = openssl_conf_text()
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context for the Mozilla intermediate profile, certificate loaded.

    Session tickets stay on: they make resumption cheap and sslyze's profile does not object.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(":".join(MOZILLA_INTERMEDIATE_TLS12_CIPHERS))
    # CRIME: compression leaks secrets through ciphertext length.
    context.options |= ssl.OP_NO_COMPRESSION
    # Client-initiated renegotiation is a CPU-exhaustion lever and has no use for an API server.
    context.options |= ssl.OP_NO_RENEGOTIATION
    # Mozilla: every suite offered is strong, so let the client pick (ChaCha20 on phones without
    # AES hardware) instead of imposing the server's order.
    context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cert, key)
    return context


class ReloadableCertificate:
    """A server `SSLContext` whose certificate can be replaced while the server runs.

    Why reloading the *same* context works: an `ssl.SSLContext` wraps one OpenSSL `SSL_CTX`, and
    `load_cert_chain` replaces the certificate and key that `SSL_CTX` holds. Each connection gets
    its own `SSL` object, and `SSL_new` copies the context's certificate and key into it when the
    connection is accepted. So once `reload` returns, every new handshake presents the new
    certificate, while connections already open keep the copy they were created with and are
    not disturbed. The listener (uvicorn's `loop.create_server(ssl=context)`) holds a reference
    to the context object, so it needs no restart and no new socket.

    One catch: an `SSL_CTX` holds one certificate *per key type* (RSA, EC, Ed25519, ...), and
    `load_cert_chain` only replaces the slot of the new key's type. Reloading an RSA pair into a
    context serving an ECDSA one would keep the ECDSA certificate in place and go on presenting
    it to every client that accepts ECDSA. So a reload must keep the key type; changing it takes
    a restart.

    Call `reload` from the event-loop thread (for example from `loop.add_signal_handler`), where
    uvicorn creates its `SSL` objects, so no handshake starts halfway through the swap.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self._cert = cert
        self._key = key
        self._lock = threading.Lock()
        cert_pem, key_pem = self._read()
        self._fingerprint = _fingerprint(cert_pem)
        self._key_type = _key_type(cert_pem)
        with _materialised(cert_pem, key_pem) as (cert_path, key_path):
            self._context = server_context(cert_path, key_path)

    @property
    def context(self) -> ssl.SSLContext:
        """The context to hand to the server; it stays the same object across reloads."""
        return self._context

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the certificate new handshakes present."""
        return self._fingerprint

    def reload(self) -> str:
        """Load the certificate and key again from their paths; return the new fingerprint.

        `load_cert_chain` on a live context is not atomic: OpenSSL installs the certificate
        first, then the key, and a key that does not match leaves the context with the new
        certificate and no usable key, failing every handshake. So the pair is first loaded into
        a scratch context with identical settings, and the live context is touched only if that
        succeeded. Both loads read the same in-memory snapshot of the files, so a certificate
        renewal tool rewriting them in between cannot slip an unvalidated pair past the check.

        On any failure the previous certificate keeps being served and `CertificateReloadError`
        says why.
        """
        with self._lock:
            try:
                cert_pem, key_pem = self._read()
                fingerprint = _fingerprint(cert_pem)
                _ensure_key_type(cert_pem, self._key_type)
                with _materialised(cert_pem, key_pem) as (cert_path, key_path):
                    server_context(cert_path, key_path)
                    self._context.load_cert_chain(cert_path, key_path)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise CertificateReloadError(
                    f"Could not load {self._cert} / {self._key} ({exc}); still serving the "
                    f"certificate with SHA-256 {self._fingerprint}.",
                    cert=str(self._cert),
                    key=str(self._key),
                ) from exc
            self._fingerprint = fingerprint
            return fingerprint

    def _read(self) -> tuple[bytes, bytes]:
        return self._cert.read_bytes(), self._key.read_bytes()


def _fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the first certificate; raises ValueError when there is none."""
    certificates = x509.load_pem_x509_certificates(cert_pem)
    return certificates[0].fingerprint(hashes.SHA256()).hex()


def _key_type(cert_pem: bytes) -> str:
    """The kind of the first certificate's key, as far as OpenSSL's per-type slots go."""
    key = x509.load_pem_x509_certificates(cert_pem)[0].public_key()
    for kind in (
        rsa.RSAPublicKey,
        ec.EllipticCurvePublicKey,
        ed25519.Ed25519PublicKey,
        ed448.Ed448PublicKey,
        dsa.DSAPublicKey,
    ):
        if isinstance(key, kind):
            return kind.__name__.removesuffix("PublicKey")
    return type(key).__name__


def _ensure_key_type(cert_pem: bytes, expected: str) -> None:
    found = _key_type(cert_pem)
    if found != expected:
        raise ValueError(
            f"the new certificate has a {found} key where the current one has a {expected} "
            "key; changing the key type needs a restart"
        )


@contextmanager
def _materialised(cert_pem: bytes, key_pem: bytes) -> Iterator[tuple[Path, Path]]:
    """Give in-memory PEM bytes file paths, because `load_cert_chain` only accepts paths.

    On Linux the bytes live in anonymous memory files (`memfd_create`) reached through
    `/proc/self/fd`, so the private key is never copied to a disk. Elsewhere they go to a fresh
    0700 temporary directory, deleted on exit.
    """
    if sys.platform == "linux" and Path("/proc/self/fd").is_dir():
        descriptors: list[int] = []
        try:
            for data in (cert_pem, key_pem):
                fd = os.memfd_create("vigil-tls", os.MFD_CLOEXEC)
                descriptors.append(fd)
                with os.fdopen(fd, "wb", closefd=False) as handle:
                    handle.write(data)
            yield Path(f"/proc/self/fd/{descriptors[0]}"), Path(f"/proc/self/fd/{descriptors[1]}")
        finally:
            for fd in descriptors:
                os.close(fd)
    else:
        with tempfile.TemporaryDirectory(prefix="vigil-tls-") as directory:
            paths = (Path(directory) / "cert.pem", Path(directory) / "key.pem")
            for path, data in zip(paths, (cert_pem, key_pem), strict=True):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            yield paths
