"""The server TLS context follows Mozilla intermediate, and certificates swap without a restart.

Handshakes here run over in-memory BIOs: the real OpenSSL state machine, no sockets, no server.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from vigil.edge.certificates import TlsFiles, certificate_fingerprint, ensure_local_tls
from vigil.edge.tls import (
    ALLOWED_GROUPS,
    MOZILLA_INTERMEDIATE_TLS12_CIPHERS,
    CertificateReloadError,
    ReloadableCertificate,
    openssl_conf_text,
    server_context,
    write_openssl_conf,
)


class _Connection:
    """A TLS client and server wired back to back through memory BIOs."""

    def __init__(self, server: ssl.SSLContext, client: ssl.SSLContext) -> None:
        self._to_server = ssl.MemoryBIO()
        self._from_server = ssl.MemoryBIO()
        self._to_client = ssl.MemoryBIO()
        self._from_client = ssl.MemoryBIO()
        self.client = client.wrap_bio(
            self._to_client, self._from_client, server_hostname="localhost"
        )
        self.server = server.wrap_bio(self._to_server, self._from_server, server_side=True)
        self._handshake()

    def _pump(self) -> None:
        self._to_server.write(self._from_client.read())
        self._to_client.write(self._from_server.read())

    def _handshake(self) -> None:
        pending = [self.client, self.server]
        for _ in range(10):
            for side in list(pending):
                try:
                    side.do_handshake()
                    pending.remove(side)
                except ssl.SSLWantReadError:
                    pass
            self._pump()
            if not pending:
                return
        raise AssertionError("handshake did not finish")

    @property
    def served_fingerprint(self) -> str:
        der = self.client.getpeercert(binary_form=True)
        assert der is not None
        return hashlib.sha256(der).hexdigest()

    def echo(self, payload: bytes) -> bytes:
        """Client sends, server echoes back; proves the session still carries data."""
        self.client.write(payload)
        self._pump()
        self.server.write(self.server.read(len(payload)))
        self._pump()
        return self.client.read(len(payload))


def _client_trusting(*cas: Path) -> ssl.SSLContext:
    client = ssl.create_default_context()
    for ca in cas:
        client.load_verify_locations(cafile=ca)
    return client


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    files, _ = ensure_local_tls(tmp_path / "live")
    return files


@pytest.fixture
def replacement(tmp_path: Path) -> TlsFiles:
    """A second, unrelated CA, certificate and key, as a renewal would bring."""
    files, _ = ensure_local_tls(tmp_path / "replacement")
    return files


def _install(source: TlsFiles, target: TlsFiles) -> None:
    shutil.copyfile(source.cert_pem, target.cert_pem)
    shutil.copyfile(source.key_pem, target.key_pem)


# --- the context -------------------------------------------------------------------------------


def test_context_accepts_tls_1_2_and_1_3_only(tls: TlsFiles) -> None:
    context = server_context(tls.cert_pem, tls.key_pem)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3


def test_tls_1_2_suites_are_exactly_the_six_mozilla_ecdhe_aead_suites_in_order(
    tls: TlsFiles,
) -> None:
    context = server_context(tls.cert_pem, tls.key_pem)
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tuple(c["name"] for c in tls12) == MOZILLA_INTERMEDIATE_TLS12_CIPHERS
    assert all(c["kea"] == "kx-ecdhe" for c in tls12)
    assert all(c["aead"] for c in tls12)


def test_no_suite_without_forward_secrecy_or_with_cbc_is_offered(tls: TlsFiles) -> None:
    context = server_context(tls.cert_pem, tls.key_pem)
    for cipher in context.get_ciphers():
        assert cipher["aead"], cipher["name"]
        assert cipher["kea"] in {"kx-ecdhe", "kx-any"}, cipher["name"]  # kx-any: TLS 1.3


def test_compression_and_client_renegotiation_are_disabled(tls: TlsFiles) -> None:
    options = server_context(tls.cert_pem, tls.key_pem).options
    assert options & ssl.OP_NO_COMPRESSION
    assert options & ssl.OP_NO_RENEGOTIATION


def test_client_picks_the_suite_and_session_tickets_stay_on(tls: TlsFiles) -> None:
    options = server_context(tls.cert_pem, tls.key_pem).options
    assert not options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert not options & ssl.OP_NO_TICKET


def test_openssl_security_level_is_at_least_2(tls: TlsFiles) -> None:
    assert server_context(tls.cert_pem, tls.key_pem).security_level >= 2


def test_a_tls_1_2_only_client_negotiates_an_ecdhe_aead_suite(tls: TlsFiles) -> None:
    client = _client_trusting(tls.ca_pem)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    connection = _Connection(server_context(tls.cert_pem, tls.key_pem), client)
    negotiated = connection.client.cipher()
    assert negotiated is not None
    assert negotiated[0] in MOZILLA_INTERMEDIATE_TLS12_CIPHERS
    assert connection.client.version() == "TLSv1.2"


def _tls11_client(ca: Path) -> ssl.SSLContext:
    client = _client_trusting(ca)
    client.minimum_version = ssl.TLSVersion.TLSv1_1
    client.maximum_version = ssl.TLSVersion.TLSv1_1
    client.set_ciphers("ALL:@SECLEVEL=0")
    return client


def _cbc_only_client(ca: Path) -> ssl.SSLContext:
    client = _client_trusting(ca)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA")
    return client


_OUTDATED_CLIENTS = pytest.mark.parametrize(
    "outdated_client", [_tls11_client, _cbc_only_client], ids=["tls-1.1", "cbc-only-tls-1.2"]
)
_TLS11_IS_DEPRECATED = pytest.mark.filterwarnings(
    r"ignore:ssl\.TLSVersion\.TLSv1(_1)? is deprecated:DeprecationWarning"
)


@_TLS11_IS_DEPRECATED
@_OUTDATED_CLIENTS
def test_an_outdated_client_is_refused(
    tls: TlsFiles, outdated_client: Callable[[Path], ssl.SSLContext]
) -> None:
    with pytest.raises(ssl.SSLError):
        _Connection(server_context(tls.cert_pem, tls.key_pem), outdated_client(tls.ca_pem))


@_TLS11_IS_DEPRECATED
@_OUTDATED_CLIENTS
def test_those_outdated_clients_would_connect_to_a_permissive_server(
    tls: TlsFiles, outdated_client: Callable[[Path], ssl.SSLContext]
) -> None:
    """Control: the refusals above come from our server settings, not from the test clients."""
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.minimum_version = ssl.TLSVersion.TLSv1
    permissive.set_ciphers("ALL:@SECLEVEL=0")
    permissive.load_cert_chain(tls.cert_pem, tls.key_pem)
    _Connection(permissive, outdated_client(tls.ca_pem))


# --- the OpenSSL configuration (groups cannot be set from Python 3.11) ------------------------


def _parsed_conf(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string("[default]\n" + text)
    return parser


def test_openssl_conf_restricts_every_context_to_modern_groups_and_tls_1_2(tmp_path: Path) -> None:
    conf = _parsed_conf(openssl_conf_text())
    init = conf["default"]["openssl_conf"]
    ssl_section = conf[init]["ssl_conf"]
    system_default = conf[conf[ssl_section]["system_default"]]
    assert system_default["Groups"] == ALLOWED_GROUPS == "X25519:P-256:P-384"
    assert system_default["MinProtocol"] == "TLSv1.2"


def test_writing_the_openssl_conf_twice_leaves_the_file_alone(tmp_path: Path) -> None:
    path = write_openssl_conf(tmp_path / "openssl.cnf")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert write_openssl_conf(path) == path
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert path.read_text(encoding="utf-8") == openssl_conf_text()


def test_a_stale_openssl_conf_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "openssl.cnf"
    path.write_text("Groups = X448\n", encoding="utf-8")
    write_openssl_conf(path)
    assert path.read_text(encoding="utf-8") == openssl_conf_text()
    assert [p.name for p in tmp_path.iterdir()] == ["openssl.cnf"]


# --- reloading ---------------------------------------------------------------------------------


def test_new_handshakes_present_the_reloaded_certificate(
    tls: TlsFiles, replacement: TlsFiles
) -> None:
    reloadable = ReloadableCertificate(tls.cert_pem, tls.key_pem)
    client = _client_trusting(tls.ca_pem, replacement.ca_pem)
    assert _Connection(reloadable.context, client).served_fingerprint == certificate_fingerprint(
        tls.cert_pem
    )

    _install(replacement, tls)
    new_fingerprint = reloadable.reload()

    assert new_fingerprint == certificate_fingerprint(replacement.cert_pem)
    assert reloadable.fingerprint == new_fingerprint
    assert _Connection(reloadable.context, client).served_fingerprint == new_fingerprint


def test_reload_keeps_the_same_context_object_so_the_listener_needs_no_restart(
    tls: TlsFiles, replacement: TlsFiles
) -> None:
    reloadable = ReloadableCertificate(tls.cert_pem, tls.key_pem)
    context = reloadable.context
    _install(replacement, tls)
    reloadable.reload()
    assert reloadable.context is context


def test_a_connection_open_before_the_reload_keeps_working_with_its_certificate(
    tls: TlsFiles, replacement: TlsFiles
) -> None:
    reloadable = ReloadableCertificate(tls.cert_pem, tls.key_pem)
    client = _client_trusting(tls.ca_pem, replacement.ca_pem)
    open_connection = _Connection(reloadable.context, client)
    old_fingerprint = open_connection.served_fingerprint

    _install(replacement, tls)
    reloadable.reload()

    assert open_connection.echo(b"still here") == b"still here"
    assert open_connection.served_fingerprint == old_fingerprint


def test_a_key_that_does_not_match_is_rejected_and_the_old_certificate_is_still_served(
    tls: TlsFiles, replacement: TlsFiles
) -> None:
    reloadable = ReloadableCertificate(tls.cert_pem, tls.key_pem)
    old_fingerprint = reloadable.fingerprint
    shutil.copyfile(replacement.cert_pem, tls.cert_pem)  # new certificate, old key

    with pytest.raises(CertificateReloadError, match="still serving") as failure:
        reloadable.reload()

    assert old_fingerprint in failure.value.detail
    assert reloadable.fingerprint == old_fingerprint
    client = _client_trusting(tls.ca_pem)
    assert _Connection(reloadable.context, client).served_fingerprint == old_fingerprint


@pytest.mark.parametrize(
    ("broken", "content"),
    [
        ("cert_pem", b"not a certificate\n"),
        ("cert_pem", b""),
        ("key_pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
    ],
    ids=["garbage-certificate", "empty-certificate", "corrupt-key"],
)
def test_a_broken_file_is_rejected_and_the_old_certificate_is_still_served(
    tls: TlsFiles, broken: str, content: bytes
) -> None:
    reloadable = ReloadableCertificate(tls.cert_pem, tls.key_pem)
    old_fingerprint = reloadable.fingerprint
    path: Path = getattr(tls, broken)
    path.write_bytes(content)

    with pytest.raises(CertificateReloadError):
        reloadable.reload()

    client = _client_trusting(tls.ca_pem)
    assert _Connection(reloadable.context, client).served_fingerprint == old_fingerprint


def test_a_missing_file_is_rejected_and_the_old_certificate_is_still_served(
    tls: TlsFiles,
) -> None:
    reloadable = ReloadableCertificate(tls.cert_pem, tls.key_pem)
    tls.key_pem.unlink()
    with pytest.raises(CertificateReloadError, match=r"server\.key"):
        reloadable.reload()
    client = _client_trusting(tls.ca_pem)
    served = _Connection(reloadable.context, client).served_fingerprint
    assert served == reloadable.fingerprint


def test_a_reload_error_is_a_vigil_error_with_a_stable_code(tls: TlsFiles) -> None:
    reloadable = ReloadableCertificate(tls.cert_pem, tls.key_pem)
    tls.cert_pem.write_bytes(b"")
    with pytest.raises(CertificateReloadError) as failure:
        reloadable.reload()
    assert failure.value.code == "tls_reload_failed"
    assert failure.value.extra == {"cert": str(tls.cert_pem), "key": str(tls.key_pem)}


def test_loading_a_bad_pair_straight_into_a_live_context_would_break_it(
    tls: TlsFiles, replacement: TlsFiles
) -> None:
    """Why `reload` validates in a scratch context first: OpenSSL's load is not atomic.

    The new certificate is installed before the key is checked, so a mismatch leaves the live
    context with no usable certificate at all and every later handshake fails.
    """
    context = server_context(tls.cert_pem, tls.key_pem)
    with pytest.raises(ssl.SSLError, match="KEY_VALUES_MISMATCH"):
        context.load_cert_chain(replacement.cert_pem, tls.key_pem)
    with pytest.raises(ssl.SSLError):
        _Connection(context, _client_trusting(tls.ca_pem, replacement.ca_pem))


def test_without_memfd_the_snapshot_goes_through_a_private_temporary_directory_then_vanishes(
    tls: TlsFiles, replacement: TlsFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(sys, "platform", "darwin")
    reloadable = ReloadableCertificate(tls.cert_pem, tls.key_pem)
    _install(replacement, tls)

    assert reloadable.reload() == certificate_fingerprint(replacement.cert_pem)
    assert list(scratch.iterdir()) == []
