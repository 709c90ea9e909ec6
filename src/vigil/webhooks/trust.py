"""Which receivers a delivery trusts (S5): the public trust store, plus, for one endpoint only,
an internal CA a platform administrator approved.

Contexts verify the chain and the host name and refuse anything older than TLS 1.2. An approved
CA bundle goes into that endpoint's own context and never into the shared one, so approving a
dealer's CA cannot make any other endpoint trust it.
"""

from __future__ import annotations

import hashlib
import ssl
from functools import lru_cache
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from vigil.core.errors import InvalidInput

MAX_BUNDLE_BYTES = 64 * 1024
MAX_BUNDLE_CERTS = 10


def client_context(trust_store: Path | None, ca_bundle: str | None = None) -> ssl.SSLContext:
    return _context(str(trust_store or certifi.where()), ca_bundle)


@lru_cache(maxsize=256)
def _context(cafile: str, ca_bundle: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if ca_bundle:
        ctx.load_verify_locations(cadata=ca_bundle)
    return ctx


def ca_fingerprints(bundle: str) -> list[str]:
    """SHA-256 fingerprints of the CA certificates in `bundle`, or InvalidInput.

    Only CA certificates are accepted: an approval is for an issuing authority the dealer runs,
    and pinning a leaf would silently stop working at its next renewal.
    """
    if len(bundle.encode()) > MAX_BUNDLE_BYTES:
        raise InvalidInput(f"A CA bundle is at most {MAX_BUNDLE_BYTES // 1024} KiB.")
    try:
        certs = x509.load_pem_x509_certificates(bundle.encode())
    except ValueError:
        raise InvalidInput("The CA bundle is not PEM-encoded X.509 certificates.") from None
    if not 1 <= len(certs) <= MAX_BUNDLE_CERTS:
        raise InvalidInput(f"A CA bundle holds 1 to {MAX_BUNDLE_CERTS} certificates.")
    for cert in certs:
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise InvalidInput("Every certificate in a CA bundle must be a CA certificate.")
    try:
        ssl.create_default_context(cadata=bundle)
    except ssl.SSLError:
        raise InvalidInput("The CA bundle cannot be loaded as a trust anchor.") from None
    return [cert.fingerprint(hashes.SHA256()).hex() for cert in certs]


def bundle_digest(bundle: str) -> str:
    return hashlib.sha256(bundle.encode()).hexdigest()


def tls_failure(exc: BaseException) -> tuple[str, str] | None:
    """(reason code, detail) when `exc` is a TLS failure; None otherwise.

    The code is what audits and attempt listings carry (`certificate_verify_failed`, …); the
    detail says why in OpenSSL's words (self-signed, expired, host name mismatch, unknown CA).
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        inner = getattr(current, "certificate_error", None)
        if isinstance(inner, ssl.SSLCertVerificationError):
            current = inner
        if isinstance(current, ssl.SSLCertVerificationError):
            message = getattr(current, "verify_message", None) or getattr(current, "reason", None)
            return "certificate_verify_failed", str(message or current)
        if isinstance(current, ssl.SSLError):
            return "tls_handshake_failed", str(getattr(current, "reason", None) or current)
        # aiohttp keeps the underlying error in an attribute rather than as the cause.
        for name in ("certificate_error", "os_error"):
            nested = getattr(current, name, None)
            if isinstance(nested, BaseException):
                pending.append(nested)
        pending.extend((current.__cause__, current.__context__))
    return None
