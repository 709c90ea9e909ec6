"""S1 across certificate changes, on a dedicated `vigil serve` whose certificate lives at
`tls_cert`/`tls_key` paths the tests rewrite.

SIGHUP loads the files again into the live TLS context: new connections get the new
certificate, connections already open carry on, and a broken replacement changes nothing (nor
does one with another key type, which OpenSSL would otherwise serve *alongside* the old
certificate).

The profile does not depend on the certificate: a second dedicated server, started with an
operator-provided RSA certificate, refuses the RSA suites outside Mozilla "intermediate" (static
RSA key exchange, CBC, finite-field DHE), which an ECDSA certificate could never negotiate anyway.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.support.server import VigilServer

from vigil.edge.certificates import certificate_fingerprint, ensure_local_tls

# What `vigil serve` logs once it has handled a SIGHUP, one way or the other.
RELOADED = "TLS certificate reloaded"
RELOAD_FAILED = "TLS certificate reload failed"
CLIENT_ENV = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path
    ca: Path

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.cert)


class Issuer:
    """Certificate/key pairs, each under a CA of its own; clients trust every CA issued."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cas: list[Path] = []
        self._n = 0

    def _directory(self) -> Path:
        self._n += 1
        return self.root / f"pair-{self._n}"

    def ecdsa(self) -> Pair:
        files, _ = ensure_local_tls(self._directory())
        self.cas.append(files.ca_pem)
        return Pair(files.cert_pem, files.key_pem, files.ca_pem)

    def rsa(self, directory: Path | None = None) -> Pair:
        """An RSA-2048 leaf (keyEncipherment allowed, so only the server's policy can stop
        static RSA key exchange), signed by a fresh local CA."""
        directory = directory or self._directory()
        files, _ = ensure_local_tls(directory)
        self.cas.append(files.ca_pem)
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(files.ca_pem.read_bytes())
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=90))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
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
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        pair = Pair(directory / "rsa.pem", directory / "rsa.key", files.ca_pem)
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        pair.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return pair

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cas[0]))
        for ca in self.cas[1:]:
            context.load_verify_locations(cafile=str(ca))
        return context


@dataclass
class TlsServer:
    server: VigilServer
    issuer: Issuer
    cert: Path
    key: Path

    def install(self, cert: bytes, key: bytes) -> None:
        """Replace the configured files the way a renewal tool should: write, then rename."""
        for path, data in ((self.cert, cert), (self.key, key)):
            temporary = path.with_name(f".{path.name}.new")
            temporary.write_bytes(data)
            os.replace(temporary, path)

    def install_pair(self, pair: Pair) -> None:
        self.install(pair.cert.read_bytes(), pair.key.read_bytes())

    def sighup(self, timeout: float = 15.0) -> str:
        """Send SIGHUP and wait until the server has handled it; return what it logged."""
        log = self.server.log()
        before = log.count(RELOADED), log.count(RELOAD_FAILED)
        self.server.signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.server.log()
            if log.count(RELOADED) > before[0]:
                return RELOADED
            if log.count(RELOAD_FAILED) > before[1]:
                return RELOAD_FAILED
            time.sleep(0.02)
        raise AssertionError(f"the server did not report handling SIGHUP:\n{self.server.log()}")

    def serve(self, pair: Pair) -> None:
        self.install_pair(pair)
        assert self.sighup() == RELOADED
        assert self.presented() == pair.fingerprint

    def connect(self, context: ssl.SSLContext | None = None) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.server.https_port), timeout=10)
        try:
            return (context or self.issuer.context()).wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise

    def presented(self) -> str:
        """SHA-256 of the certificate a brand-new connection is shown."""
        with self.connect() as tls:
            return peer_fingerprint(tls)

    def https_get(self, path: str = "/.well-known/security.txt") -> int:
        connection = self.open_connection()
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def open_connection(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "localhost", self.server.https_port, context=self.issuer.context(), timeout=10
        )


def peer_fingerprint(tls: ssl.SSLSocket) -> str:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def started(
    tmp_path_factory: pytest.TempPathFactory, new_database: object, *, rsa_key: bool
) -> TlsServer:
    """A dedicated server whose `tls_cert`/`tls_key` are files in its home's `live/`.

    The first pair is issued into `home/tls`, where VigilServer finds the CA it trusts while
    waiting for the listener to come up.
    """
    home = tmp_path_factory.mktemp("vigil-tls-home")
    issuer = Issuer(tmp_path_factory.mktemp("vigil-tls-certs"))
    first = issuer.rsa(home / "tls") if rsa_key else Pair(*_local_pair(home / "tls", issuer))
    live = home / "live"
    live.mkdir()
    listener = TlsServer(
        server=new_database.server(  # type: ignore[attr-defined]
            home, tls_cert=live / "cert.pem", tls_key=live / "key.pem"
        ),
        issuer=issuer,
        cert=live / "cert.pem",
        key=live / "key.pem",
    )
    listener.install_pair(first)
    listener.server.start()
    try:
        assert listener.presented() == first.fingerprint
    except BaseException:
        listener.server.stop()
        raise
    return listener


def _local_pair(directory: Path, issuer: Issuer) -> tuple[Path, Path, Path]:
    files, _ = ensure_local_tls(directory)
    issuer.cas.append(files.ca_pem)
    return files.cert_pem, files.key_pem, files.ca_pem


@pytest.fixture(scope="module")
def reloadable(
    tmp_path_factory: pytest.TempPathFactory, new_database: object
) -> Iterator[TlsServer]:
    """Started with an ECDSA pair like the one `vigil serve` makes for itself."""
    listener = started(tmp_path_factory, new_database, rsa_key=False)
    try:
        yield listener
    finally:
        listener.server.stop()


@pytest.fixture(scope="module")
def rsa_listener(
    tmp_path_factory: pytest.TempPathFactory, new_database: object
) -> Iterator[TlsServer]:
    """Started with an operator-provided RSA pair."""
    listener = started(tmp_path_factory, new_database, rsa_key=True)
    try:
        yield listener
    finally:
        listener.server.stop()


def test_sighup_serves_the_new_certificate_to_new_connections_and_open_ones_carry_on(
    reloadable: TlsServer,
) -> None:
    old = reloadable.open_connection()
    try:
        old.request("GET", "/.well-known/security.txt")
        first = old.getresponse()
        first.read()
        assert first.status == 200
        old_socket = old.sock
        assert isinstance(old_socket, ssl.SSLSocket)
        old_fingerprint = peer_fingerprint(old_socket)
        assert old_fingerprint == reloadable.presented()

        new = reloadable.issuer.ecdsa()
        assert new.fingerprint != old_fingerprint
        reloadable.install_pair(new)
        assert reloadable.sighup() == RELOADED

        assert reloadable.presented() == new.fingerprint
        assert reloadable.https_get() == 200

        # The connection opened before the reload is the same TLS session, still usable.
        old.request("GET", "/.well-known/security.txt")
        second = old.getresponse()
        second.read()
        assert second.status == 200
        assert old.sock is old_socket
        assert peer_fingerprint(old_socket) == old_fingerprint
    finally:
        old.close()


BROKEN: dict[str, Callable[[Pair, Pair], tuple[bytes, bytes]]] = {
    "garbage-certificate": lambda good, other: (
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        good.key.read_bytes(),
    ),
    "empty-certificate": lambda good, other: (b"", good.key.read_bytes()),
    "garbage-key": lambda good, other: (good.cert.read_bytes(), b"not a key\n"),
    "key-of-another-certificate": lambda good, other: (
        other.cert.read_bytes(),
        good.key.read_bytes(),
    ),
    "certificate-and-key-swapped": lambda good, other: (
        other.key.read_bytes(),
        other.cert.read_bytes(),
    ),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_a_broken_replacement_keeps_serving_the_last_good_certificate(
    reloadable: TlsServer, breakage: str
) -> None:
    good = reloadable.issuer.ecdsa()
    reloadable.serve(good)
    other = reloadable.issuer.ecdsa()

    reloadable.install(*BROKEN[breakage](good, other))
    assert reloadable.sighup() == RELOAD_FAILED

    assert reloadable.presented() == good.fingerprint
    assert reloadable.https_get() == 200


def test_a_missing_key_file_keeps_serving_the_last_good_certificate(
    reloadable: TlsServer,
) -> None:
    good = reloadable.issuer.ecdsa()
    reloadable.serve(good)
    reloadable.key.unlink()
    try:
        assert reloadable.sighup() == RELOAD_FAILED
        assert reloadable.presented() == good.fingerprint
        assert reloadable.https_get() == 200
    finally:
        reloadable.install_pair(good)


def test_a_good_pair_after_a_failed_reload_is_picked_up(reloadable: TlsServer) -> None:
    good = reloadable.issuer.ecdsa()
    reloadable.serve(good)
    reloadable.install(b"", b"")
    assert reloadable.sighup() == RELOAD_FAILED
    reloadable.serve(reloadable.issuer.ecdsa())


def test_a_replacement_with_another_key_type_is_refused_and_the_old_certificate_kept(
    reloadable: TlsServer,
) -> None:
    """OpenSSL keeps one certificate per key type in a context, so loading an RSA pair over an
    ECDSA one would leave the ECDSA certificate in place, still shown to every client that
    accepts ECDSA: a "rotated" certificate that never goes away. Such a reload must fail."""
    good = reloadable.issuer.ecdsa()
    reloadable.serve(good)
    reloadable.install_pair(reloadable.issuer.rsa())
    try:
        assert reloadable.sighup() == RELOAD_FAILED
        assert reloadable.presented() == good.fingerprint
        assert reloadable.https_get() == 200
    finally:
        reloadable.install_pair(good)


# -- the profile with an RSA certificate --------------------------------------------------------


def tls12_context(listener: TlsServer, cipher: str) -> ssl.SSLContext:
    context = listener.issuer.context()
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    # Raises ssl.SSLError if this client could not offer the suite at all.
    context.set_ciphers(f"{cipher}:@SECLEVEL=0")
    return context


@pytest.mark.parametrize(
    "cipher",
    [
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ],
)
def test_with_an_rsa_certificate_tls_1_2_completes_with_the_ecdhe_rsa_aead_suites(
    rsa_listener: TlsServer, cipher: str
) -> None:
    with rsa_listener.connect(tls12_context(rsa_listener, cipher)) as tls:
        assert tls.version() == "TLSv1.2"
        negotiated = tls.cipher()
        assert negotiated is not None
        assert negotiated[0] == cipher


@pytest.mark.parametrize(
    "cipher",
    [
        pytest.param("AES128-GCM-SHA256", id="rsa-kx-aes128-gcm"),
        pytest.param("AES256-GCM-SHA384", id="rsa-kx-aes256-gcm"),
        pytest.param("AES128-SHA256", id="rsa-kx-cbc-aes128-sha256"),
        pytest.param("AES128-SHA", id="rsa-kx-cbc-aes128-sha"),
        pytest.param("ECDHE-RSA-AES128-SHA", id="cbc-ecdhe-rsa-aes128-sha"),
        pytest.param("ECDHE-RSA-AES256-SHA384", id="cbc-ecdhe-rsa-aes256-sha384"),
        pytest.param("DHE-RSA-AES128-GCM-SHA256", id="dhe-rsa-aes128-gcm"),
        pytest.param("DHE-RSA-CHACHA20-POLY1305", id="dhe-rsa-chacha20"),
    ],
)
def test_with_an_rsa_certificate_tls_1_2_refuses_suites_outside_the_profile(
    rsa_listener: TlsServer, cipher: str
) -> None:
    context = tls12_context(rsa_listener, cipher)
    with pytest.raises((ssl.SSLError, ConnectionError)) as refused:
        rsa_listener.connect(context).close()
    # A refused handshake, not a client that failed to trust the certificate.
    assert not isinstance(refused.value, ssl.SSLCertVerificationError)


def test_with_an_rsa_certificate_tls_1_3_completes(rsa_listener: TlsServer) -> None:
    with rsa_listener.connect() as tls:
        assert tls.version() == "TLSv1.3"


def test_with_an_rsa_certificate_sslyze_still_finds_the_listener_compliant(
    rsa_listener: TlsServer,
) -> None:
    port = rsa_listener.server.https_port
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sslyze",
            "--mozilla_config=intermediate",
            "--certinfo_ca_file",
            str(rsa_listener.issuer.cas[0]),
            "--sni",
            "localhost",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        env=CLIENT_ENV,
        timeout=120,
        check=False,
    )
    report = completed.stdout + completed.stderr
    assert f"127.0.0.1:{port}: OK - Compliant." in report, report
    assert completed.returncode == 0, report
