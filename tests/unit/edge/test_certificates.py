"""The locally minted CA and server certificate meet what Mozilla's profile and verifiers demand."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from vigil.edge.certificates import TlsFiles, certificate_fingerprint, ensure_local_tls

ISSUED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    files, created = ensure_local_tls(tmp_path / "tls", now=ISSUED_AT)
    assert created
    return files


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask of 0 would make every file world-readable unless the code sets modes itself."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_server_certificate_names_every_default_host_with_the_right_san_type(
    tls: TlsFiles,
) -> None:
    san = _cert(tls.cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]


def test_custom_hosts_become_the_subject_alternative_names(tmp_path: Path) -> None:
    files, _ = ensure_local_tls(tmp_path, hosts=("vigil.internal", "10.0.0.7"), now=ISSUED_AT)
    cert = _cert(files.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["vigil.internal"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "vigil.internal"


def test_server_certificate_lives_at_most_366_days_from_an_hour_before_issue(
    tls: TlsFiles,
) -> None:
    cert = _cert(tls.cert_pem)
    assert cert.not_valid_before_utc == ISSUED_AT - timedelta(hours=1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= timedelta(days=366)
    assert cert.not_valid_after_utc > ISSUED_AT + timedelta(days=364)


def test_server_certificate_is_an_ecdsa_p256_sha256_end_entity(tls: TlsFiles) -> None:
    cert = _cert(tls.cert_pem)
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert isinstance(public_key.curve, ec.SECP256R1)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is False


def test_server_key_usage_is_digital_signature_only_and_critical(tls: TlsFiles) -> None:
    usage = _cert(tls.cert_pem).extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature
    assert not usage.value.key_cert_sign
    assert not usage.value.crl_sign
    assert not usage.value.key_encipherment


def test_server_certificate_is_for_server_authentication_only(tls: TlsFiles) -> None:
    eku = _cert(tls.cert_pem).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_server_certificate_identifies_its_issuer_by_the_ca_key_identifier(
    tls: TlsFiles,
) -> None:
    leaf = _cert(tls.cert_pem)
    ca = _cert(tls.ca_pem)
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert leaf.issuer == ca.subject
    assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_local_ca_is_a_critical_ca_that_only_signs_certificates_and_crls(tls: TlsFiles) -> None:
    ca = _cert(tls.ca_pem)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Vigil local CA"
    assert ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


def test_local_ca_is_valid_for_ten_years_and_outlives_the_server_certificate(
    tls: TlsFiles,
) -> None:
    ca = _cert(tls.ca_pem)
    lifespan = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert timedelta(days=3650) <= lifespan <= timedelta(days=3653)
    assert ca.not_valid_after_utc > _cert(tls.cert_pem).not_valid_after_utc


@pytest.mark.parametrize(
    "subject",
    [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ],
    ids=["localhost", "ipv4-loopback", "ipv6-loopback"],
)
def test_server_certificate_passes_the_path_validation_sslyze_uses(
    tls: TlsFiles, subject: x509.DNSName | x509.IPAddress
) -> None:
    """sslyze validates with `cryptography`'s web-PKI verifier; the same check runs here."""
    verifier = (
        PolicyBuilder()
        .store(Store([_cert(tls.ca_pem)]))
        .time(ISSUED_AT + timedelta(days=1))
        .build_server_verifier(subject)
    )
    chain = verifier.verify(_cert(tls.cert_pem), [])
    assert chain[-1] == _cert(tls.ca_pem)


def test_server_certificate_is_rejected_for_a_host_it_does_not_name(tls: TlsFiles) -> None:
    verifier = (
        PolicyBuilder()
        .store(Store([_cert(tls.ca_pem)]))
        .time(ISSUED_AT + timedelta(days=1))
        .build_server_verifier(x509.DNSName("example.com"))
    )
    with pytest.raises(VerificationError):
        verifier.verify(_cert(tls.cert_pem), [])


def test_server_pem_holds_the_leaf_only_so_the_trust_anchor_is_never_sent(tls: TlsFiles) -> None:
    assert len(x509.load_pem_x509_certificates(tls.cert_pem.read_bytes())) == 1


def test_server_key_is_unencrypted_pkcs8_and_matches_the_certificate(tls: TlsFiles) -> None:
    pem = tls.key_pem.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem, password=None)
    assert key.public_key() == _cert(tls.cert_pem).public_key()


def test_ca_key_is_kept_next_to_the_ca_and_matches_it(tls: TlsFiles) -> None:
    key = serialization.load_pem_private_key(
        (tls.ca_pem.parent / "ca.key").read_bytes(), password=None
    )
    assert key.public_key() == _cert(tls.ca_pem).public_key()


@pytest.mark.usefixtures("permissive_umask")
def test_private_keys_are_owner_only_and_the_directory_is_owner_only(tmp_path: Path) -> None:
    files, _ = ensure_local_tls(tmp_path / "tls", now=ISSUED_AT)
    assert _mode(files.key_pem) == 0o600
    assert _mode(files.key_pem.parent / "ca.key") == 0o600
    assert _mode(files.key_pem.parent) == 0o700


def test_an_existing_loose_directory_is_tightened_to_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    ensure_local_tls(directory, now=ISSUED_AT)
    assert _mode(directory) == 0o700


def test_private_keys_are_created_owner_only_rather_than_chmodded_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key written then chmodded would be readable by others for an instant."""
    opened: list[tuple[str, int, int]] = []
    real_open: Callable[..., int] = os.open

    def recording_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        opened.append((os.fspath(path), flags, mode))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", recording_open)
    ensure_local_tls(tmp_path / "tls", now=ISSUED_AT)
    key_creations = [
        (flags, mode)
        for path, flags, mode in opened
        if flags & os.O_CREAT and Path(path).name.startswith((".server.key", ".ca.key"))
    ]
    assert len(key_creations) == 2
    for flags, mode in key_creations:
        assert flags & os.O_EXCL
        assert mode == 0o600


def test_no_temporary_files_are_left_behind(tls: TlsFiles) -> None:
    assert sorted(p.name for p in tls.cert_pem.parent.iterdir()) == [
        "ca.key",
        "ca.pem",
        "server.key",
        "server.pem",
    ]


def test_second_call_returns_the_existing_files_untouched(tls: TlsFiles) -> None:
    before = {p: p.read_bytes() for p in (tls.ca_pem, tls.cert_pem, tls.key_pem)}
    files, created = ensure_local_tls(tls.ca_pem.parent, now=ISSUED_AT + timedelta(days=30))
    assert created is False
    assert files == tls
    assert {p: p.read_bytes() for p in before} == before


def test_a_partial_set_is_regenerated_whole_so_key_and_certificate_match(tls: TlsFiles) -> None:
    old_fingerprint = certificate_fingerprint(tls.cert_pem)
    tls.key_pem.unlink()
    files, created = ensure_local_tls(tls.ca_pem.parent, now=ISSUED_AT)
    assert created is True
    assert certificate_fingerprint(files.cert_pem) != old_fingerprint
    key = serialization.load_pem_private_key(files.key_pem.read_bytes(), password=None)
    assert key.public_key() == _cert(files.cert_pem).public_key()


def test_a_naive_timestamp_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ensure_local_tls(tmp_path, now=datetime(2026, 3, 1, 12, 0))


def test_an_empty_host_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one host"):
        ensure_local_tls(tmp_path, hosts=())


def test_fingerprint_is_the_sha256_a_client_computes_over_the_served_der(tls: TlsFiles) -> None:
    der = _cert(tls.cert_pem).public_bytes(serialization.Encoding.DER)
    assert certificate_fingerprint(tls.cert_pem) == hashlib.sha256(der).hexdigest()
