"""A private CA and server certificate for the one-machine setup, made on first start.

HTTPS is never optional (S1), so a fresh install needs a certificate before any operator has
provided one. Rather than a lone self-signed leaf, we mint a local CA and a leaf it signs: the
operator (and the compliance test) can then trust `ca.pem` once and validate the server the normal
way, path validation included, exactly as with a public CA.

Every property below is what Mozilla's "intermediate" profile, and the `cryptography` path
validator behind sslyze, demand of a server certificate: P-256 keys, ECDSA-SHA256 signatures, a
leaf lifespan under 366 days, SANs (the CN is ignored by clients), serverAuth EKU, and the key
identifiers that let a verifier chain the leaf to its CA.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
SERVER_CERT_NAME = "server.pem"
SERVER_KEY_NAME = "server.key"

CA_COMMON_NAME = "Vigil local CA"

# Mozilla's intermediate profile caps a leaf at 366 days; 365 keeps a day's margin for clock skew.
LEAF_LIFETIME = timedelta(days=365)
CA_LIFETIME = timedelta(days=3652)
# Backdating absorbs clients whose clocks run slightly behind the machine that issued the cert.
BACKDATE = timedelta(hours=1)

PRIVATE_FILE_MODE = 0o600
PUBLIC_FILE_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


@dataclass(frozen=True)
class TlsFiles:
    """Where the server's trust anchor, certificate and private key live."""

    ca_pem: Path
    cert_pem: Path
    key_pem: Path


def ensure_local_tls(
    tls_dir: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    now: datetime | None = None,
) -> tuple[TlsFiles, bool]:
    """Return the local CA, server certificate and key, creating them if any is missing.

    The boolean says whether they were created now, so the caller can tell the operator to trust
    the new `ca.pem`. Existing files are returned untouched: the operator may already trust that
    CA, and silently replacing it would break every client that does.

    A partial set (say, a crash between two writes) is regenerated whole, because a key and a
    certificate from different runs would not match. Each file is written under a temporary name
    and renamed into place, so no reader ever sees a truncated PEM.
    """
    files = TlsFiles(
        ca_pem=tls_dir / CA_CERT_NAME,
        cert_pem=tls_dir / SERVER_CERT_NAME,
        key_pem=tls_dir / SERVER_KEY_NAME,
    )
    if all(path.is_file() for path in (files.ca_pem, files.cert_pem, files.key_pem)):
        return files, False

    if not hosts:
        raise ValueError("A server certificate needs at least one host name or IP address.")
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("`now` must be timezone-aware; certificate validity is in UTC.")

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue_ca(ca_key, moment)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue_server(server_key, ca_key, ca_cert, hosts, moment)

    _make_private_directory(tls_dir)
    # The server certificate goes last: it is one of the files whose presence means "done".
    _write_atomically(tls_dir / CA_KEY_NAME, _pkcs8_pem(ca_key), PRIVATE_FILE_MODE)
    _write_atomically(files.ca_pem, _cert_pem(ca_cert), PUBLIC_FILE_MODE)
    _write_atomically(files.key_pem, _pkcs8_pem(server_key), PRIVATE_FILE_MODE)
    # Leaf only, no CA appended: a server should not send its trust anchor (clients must already
    # hold it), and sslyze validates the leaf against `--certinfo_ca_file` directly.
    _write_atomically(files.cert_pem, _cert_pem(server_cert), PUBLIC_FILE_MODE)
    return files, True


def certificate_fingerprint(pem: Path) -> str:
    """SHA-256 of the first certificate in a PEM file, as lowercase hex.

    It equals `hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()` on the client
    side, which is how a test tells which certificate a server is actually presenting.
    """
    certificates = x509.load_pem_x509_certificates(pem.read_bytes())
    return certificates[0].fingerprint(hashes.SHA256()).hex()


def _issue_ca(key: ec.EllipticCurvePrivateKey, moment: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    not_before = moment - BACKDATE
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + CA_LIFETIME)
        # pathlen 0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_server(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hosts: Sequence[str],
    moment: datetime,
) -> x509.Certificate:
    not_before = moment - BACKDATE
    public_key = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + LEAF_LIFETIME)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """IP literals become iPAddress entries: clients never match an IP against a dNSName."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _pkcs8_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8 rather than SEC1 ("BEGIN EC PRIVATE KEY") because rustls-based servers such as
    # granian accept only PKCS#8; OpenSSL reads both.
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _make_private_directory(path: Path) -> None:
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for an existing directory; set it exactly.
    path.chmod(PRIVATE_DIR_MODE)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` so it is never visible partially written or with a looser mode.

    The file is created by `os.open` with its final mode (O_EXCL, so a planted file or symlink
    under the temporary name is refused rather than followed), then renamed over `path`. A
    private key therefore never exists, even for an instant, with permissions wider than 0600.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temporary, flags, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            # The umask may have removed bits from `mode`; it can never have added any.
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(path: Path) -> None:
    """Make the rename durable, so a power cut cannot resurrect the previous file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
