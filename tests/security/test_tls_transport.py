"""S1-S3 on the wire, against the real `vigil serve`.

S1: the HTTPS listener speaks the Mozilla "intermediate" profile and nothing else. Each probe is
an `openssl s_client` run with `-msg`, offering exactly one protocol version, cipher suite or
group. A refusal only counts as the *server's* when the transcript shows that the client really
sent its ClientHello and got no ServerHello back (at most an alert, or a closed connection): a
client that quietly declined to offer something would prove nothing. The client runs without
the server's OPENSSL_CONF, so its offer is not trimmed by the policy under test.

S2: the plain-HTTP listener redirects credential-free browser requests and refuses, revokes and
flags any credential that arrives in the clear.

S3: every HTTPS response carries the one HSTS header.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select
from tests.support import factories
from tests.support.server import VigilServer

from vigil.auth.apikeys import format as keyformat
from vigil.auth.apikeys.models import KeyStatus
from vigil.auth.principal import Environment
from vigil.auth.scopes import Scope
from vigil.edge.http_guard import https_location
from vigil.services import Services
from vigil.storage.tables import audit_events

HSTS = "max-age=63072000; includeSubDomains; preload"
OPENSSL = shutil.which("openssl")
# The probing clients must not inherit a restrictive OpenSSL configuration from anywhere.
CLIENT_ENV = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
# Let the client offer legacy protocols and suites, so any refusal has to come from the server.
ANYTHING_GOES = "ALL:@SECLEVEL=0"

# `Server Temp Key:` as `openssl s_client` prints it, per group.
TEMP_KEY = {
    "X25519": "X25519, 253 bits",
    "P-256": "ECDH, prime256v1, 256 bits",
    "P-384": "ECDH, secp384r1, 384 bits",
}


# -- S1: probing the HTTPS listener -----------------------------------------------------------


@dataclass(frozen=True)
class Handshake:
    """What `openssl s_client -msg` saw of one handshake."""

    returncode: int
    transcript: str

    @property
    def client_hello_sent(self) -> bool:
        return re.search(r"^>>> .*, ClientHello$", self.transcript, re.M) is not None

    @property
    def server_hello_received(self) -> bool:
        return re.search(r"^<<< .*, ServerHello$", self.transcript, re.M) is not None

    @property
    def protocol(self) -> str | None:
        found = re.search(r"^New, (\S+), Cipher is (\S+)$", self.transcript, re.M)
        return found.group(1) if found else None

    @property
    def cipher(self) -> str | None:
        found = re.search(r"^New, (\S+), Cipher is (\S+)$", self.transcript, re.M)
        return found.group(2) if found else None

    @property
    def temp_key(self) -> str | None:
        found = re.search(r"^Server Temp Key: (.+)$", self.transcript, re.M)
        return found.group(1).strip() if found else None

    def assert_completed(self, protocol: str, cipher: str | None = None) -> None:
        assert self.returncode == 0, self.transcript
        assert self.protocol == protocol, self.transcript
        if cipher is not None:
            assert self.cipher == cipher, self.transcript
        # The certificate chains to the server's CA and names localhost: a real, usable session.
        assert "Verify return code: 0 (ok)" in self.transcript, self.transcript

    def assert_refused_by_server(self) -> None:
        assert self.client_hello_sent, (
            "the client never sent its ClientHello, so this proves nothing about the server:\n"
            + self.transcript
        )
        # No ServerHello: the server refused outright (with an alert, or, as asyncio's TLS
        # transport does, by closing the connection) instead of negotiating something else.
        assert not self.server_hello_received, self.transcript
        assert self.protocol in (None, "(NONE)"), self.transcript
        assert self.returncode != 0, self.transcript


def handshake(server: VigilServer, *options: str) -> Handshake:
    assert OPENSSL, "the S1 probes need the `openssl` command-line client"
    completed = subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-connect",
            f"127.0.0.1:{server.https_port}",
            "-servername",
            "localhost",
            "-CAfile",
            str(server.ca_pem),
            "-verify_hostname",
            "localhost",
            "-verify_return_error",
            "-msg",
            *options,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=CLIENT_ENV,
        timeout=20,
        check=False,
    )
    return Handshake(completed.returncode, completed.stdout + completed.stderr)


@pytest.mark.parametrize(
    ("flag", "label"), [("-tls1", "TLS 1.0"), ("-tls1_1", "TLS 1.1")], ids=["tls1.0", "tls1.1"]
)
def test_tls_1_0_and_1_1_handshakes_are_refused(server: VigilServer, flag: str, label: str) -> None:
    hs = handshake(server, flag, "-cipher", ANYTHING_GOES)
    assert re.search(rf"^>>> {label}, Handshake .*ClientHello$", hs.transcript, re.M), hs.transcript
    hs.assert_refused_by_server()


@pytest.mark.parametrize(
    "cipher",
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ],
)
def test_tls_1_2_completes_with_each_ecdhe_aead_suite(server: VigilServer, cipher: str) -> None:
    # The default certificate is ECDSA P-256, so these are the profile's suites it can use; the
    # ECDHE-RSA ones are exercised with an RSA certificate in test_tls_reload.py.
    handshake(server, "-tls1_2", "-cipher", cipher).assert_completed("TLSv1.2", cipher)


@pytest.mark.parametrize(
    "cipher",
    [
        # CBC with ECDHE: forward secret but not AEAD (Lucky13-style padding oracles).
        pytest.param("ECDHE-ECDSA-AES128-SHA", id="cbc-ecdhe-ecdsa-aes128-sha"),
        pytest.param("ECDHE-ECDSA-AES256-SHA", id="cbc-ecdhe-ecdsa-aes256-sha"),
        pytest.param("ECDHE-ECDSA-AES128-SHA256", id="cbc-ecdhe-ecdsa-aes128-sha256"),
        pytest.param("ECDHE-ECDSA-AES256-SHA384", id="cbc-ecdhe-ecdsa-aes256-sha384"),
        # AEAD with ECDHE, yet outside the profile (OpenSSL's defaults would accept them).
        pytest.param("ECDHE-ECDSA-AES128-CCM", id="ecdhe-ecdsa-aes128-ccm"),
        pytest.param("ECDHE-ECDSA-ARIA128-GCM-SHA256", id="ecdhe-ecdsa-aria128-gcm"),
    ],
)
def test_tls_1_2_refuses_every_suite_outside_the_profile(server: VigilServer, cipher: str) -> None:
    """Only suites an ECDSA certificate could serve prove anything here; RSA key exchange,
    ECDHE-RSA CBC and DHE-RSA are refused by test_tls_reload.py with an RSA certificate."""
    handshake(server, "-tls1_2", "-cipher", f"{cipher}:@SECLEVEL=0").assert_refused_by_server()


@pytest.mark.parametrize(
    "suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
)
def test_tls_1_3_completes_with_each_of_its_three_suites(server: VigilServer, suite: str) -> None:
    handshake(server, "-tls1_3", "-ciphersuites", suite).assert_completed("TLSv1.3", suite)


@pytest.mark.parametrize("suite", ["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"])
def test_tls_1_3_refuses_suites_outside_the_profile(server: VigilServer, suite: str) -> None:
    handshake(server, "-tls1_3", "-ciphersuites", suite).assert_refused_by_server()


@pytest.mark.parametrize("group", ["X25519", "P-256", "P-384"])
def test_tls_1_3_completes_with_each_allowed_group(server: VigilServer, group: str) -> None:
    hs = handshake(server, "-tls1_3", "-groups", group)
    hs.assert_completed("TLSv1.3")
    assert hs.temp_key == TEMP_KEY[group], hs.transcript


@pytest.mark.parametrize("group", ["X448", "P-521"])
def test_tls_1_3_refuses_a_client_offering_only_another_group(
    server: VigilServer, group: str
) -> None:
    handshake(server, "-tls1_3", "-groups", group).assert_refused_by_server()


@pytest.mark.parametrize(
    ("offered_first", "negotiated"),
    [
        ("X25519", "X25519"),
        ("P-384", "P-384"),
        ("X448", "P-256"),
        ("P-521", "P-256"),
    ],
)
def test_tls_1_2_key_exchange_uses_only_allowed_groups(
    server: VigilServer, offered_first: str, negotiated: str
) -> None:
    """In TLS 1.2 the client's group list also bounds the certificate's curve (RFC 8422), so a
    client offering only X448 fails for the P-256 certificate whatever the server allows. Every
    probe therefore lists P-256 *after* the group under test: the server honours the client's
    order, so it takes the first group unless its policy forbids that group."""
    hs = handshake(
        server,
        "-tls1_2",
        "-cipher",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "-groups",
        f"{offered_first}:P-256",
    )
    hs.assert_completed("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert hs.temp_key == TEMP_KEY[negotiated], hs.transcript


def test_sslyze_finds_the_listener_compliant_with_mozilla_intermediate(
    server: VigilServer,
) -> None:
    """The external check S1 names: sslyze's own Mozilla "intermediate" compliance verdict."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sslyze",
            "--mozilla_config=intermediate",
            "--certinfo_ca_file",
            str(server.ca_pem),
            "--sni",
            "localhost",
            f"127.0.0.1:{server.https_port}",
        ],
        capture_output=True,
        text=True,
        env=CLIENT_ENV,
        timeout=120,
        check=False,
    )
    report = completed.stdout + completed.stderr
    assert f"127.0.0.1:{server.https_port}: OK - Compliant." in report, report
    assert "FAILED - Not compliant" not in report, report
    assert completed.returncode == 0, report


# -- S3: HSTS on every HTTPS response -----------------------------------------------------------


@pytest.fixture(scope="module")
def apps_reader(services: Services) -> factories.Credential:
    return factories.credential(services, scopes=[Scope.APPS_READ, Scope.APPS_WRITE])


@pytest.mark.parametrize(
    ("method", "path", "auth", "status"),
    [
        ("GET", "/v1/me", "valid", 200),
        ("GET", "/.well-known/security.txt", None, 200),
        ("GET", "/openapi.json", None, 200),
        ("GET", "/docs", None, 200),
        ("GET", "/v1/me", None, 401),
        ("GET", "/v1/me", "forged", 401),
        ("GET", "/v1/audit-events", "valid", 403),
        ("GET", "/v1/nothing-here", None, 404),
        ("GET", "/v1/apps/app_does_not_exist", "valid", 404),
        ("DELETE", "/v1/me", "valid", 405),
        ("POST", "/v1/apps", "valid", 422),
    ],
    ids=lambda v: str(v) if v is not None else "anonymous",
)
def test_every_https_response_carries_exactly_the_hsts_header(
    server: VigilServer,
    apps_reader: factories.Credential,
    method: str,
    path: str,
    auth: str | None,
    status: int,
) -> None:
    token = {
        None: None,
        "valid": apps_reader.token,
        "forged": forged_token(apps_reader.key_id, Environment.SANDBOX),
    }[auth]
    with server.client(token) as client:
        response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == status, response.text
    assert response.headers.get_list("strict-transport-security") == [HSTS]


def test_hsts_is_on_head_responses_too(server: VigilServer) -> None:
    with server.client() as client:
        response = client.head("/v1/me")
    assert response.headers.get_list("strict-transport-security") == [HSTS]


# -- S2: the plain-HTTP listener ----------------------------------------------------------------


def plain(server: VigilServer) -> httpx.Client:
    return httpx.Client(base_url=server.http_url, timeout=20, follow_redirects=False)


def assert_refused_in_clear(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "location" not in response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == 403
    assert body["code"] == "https_required"
    return body


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_credential_free_get_and_head_redirect_to_https_on_the_same_host(
    server: VigilServer, method: str, host: str
) -> None:
    with plain(server) as http:
        response = http.request(
            method,
            "/docs/some%20page?x=1&next=%2Fv1%2Fme",
            headers={"Host": f"{host}:{server.http_port}"},
        )
    assert response.status_code == 308
    assert response.headers["location"] == (
        f"https://{host}:{server.https_port}/docs/some%20page?x=1&next=%2Fv1%2Fme"
    )


def test_redirect_keeps_a_host_sent_without_a_port(server: VigilServer) -> None:
    with plain(server) as http:
        response = http.get("/", headers={"Host": "localhost"})
    assert response.status_code == 308
    assert response.headers["location"] == f"https://localhost:{server.https_port}/"


@pytest.mark.parametrize(
    "host",
    [
        "evil.example/@x",
        "evil.example/@x:80",
        "evil.example\\@x",
        "localhost@evil.example",
        "evil.example?@localhost",
        "evil.example#@localhost",
        "[::1/@evil.example]",
    ],
)
def test_a_host_header_cannot_turn_the_redirect_into_another_url(
    server: VigilServer, host: str
) -> None:
    """A Host that is not a plain host name falls back to the configured public host, so the
    Location always has the listener's HTTPS port, the requested path, and no smuggled part."""
    with plain(server) as http:
        response = http.get("/v1/me?x=1", headers={"Host": host})
    assert response.status_code == 308
    location = response.headers["location"]
    parts = urlsplit(location)
    assert location == f"https://localhost:{server.https_port}/v1/me?x=1"
    assert (parts.hostname, parts.port, parts.path) == ("localhost", server.https_port, "/v1/me")


@pytest.mark.parametrize(
    "target",
    [b"@evil.example/x", b"evil.example/x", b"http://evil.example/x", b"*", b".evil.example"],
)
def test_a_request_target_cannot_change_the_redirect_authority(target: bytes) -> None:
    """uvicorn's h11 parser (used when httptools is unavailable) hands non-origin-form targets
    to the app as `raw_path`; appended after the port, "@evil.example/x" would redirect to
    evil.example. The real listener uses httptools, which rejects these, so this checks the
    guard's URL building directly."""
    scope = {
        "type": "http",
        "method": "GET",
        "headers": [(b"host", b"localhost:8080")],
        "raw_path": target,
        "path": target.decode(),
        "query_string": b"",
    }
    parts = urlsplit(https_location(scope, 8443, "localhost"))
    assert (parts.scheme, parts.netloc) == ("https", "localhost:8443")
    assert parts.path.startswith("/")


def test_post_without_credentials_is_refused(server: VigilServer) -> None:
    with plain(server) as http:
        response = http.post("/v1/apps", json={"name": "x", "scopes": ["apps:read"]})
    assert_refused_in_clear(response)


def test_a_session_cookie_over_plain_http_is_refused_not_redirected(server: VigilServer) -> None:
    with plain(server) as http:
        response = http.get("/docs", headers={"Cookie": "__Host-vigil_session=abc123"})
    assert_refused_in_clear(response)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/docs", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("/docs", {"Authorization": "Bearer not-a-vigil-key"}),
        ("/docs?access_token=abc", {}),
        ("/docs?token=abc", {}),
    ],
    ids=["basic-auth", "foreign-bearer", "query-access_token", "query-token"],
)
def test_any_credential_over_plain_http_is_refused_not_redirected(
    server: VigilServer, path: str, headers: dict[str, str]
) -> None:
    with plain(server) as http:
        response = http.get(path, headers=headers)
    assert_refused_in_clear(response)


def exposure_records(services: Services, key_id: str) -> list[Mapping[str, Any]]:
    with services.db.read() as conn:
        rows = conn.execute(
            select(audit_events)
            .where(audit_events.c.action == "api_key.exposed")
            .where(audit_events.c.target_id == key_id)
        ).all()
    return [dict(row._mapping) for row in rows]


def listed_key(server: VigilServer, app_id: str, key_id: str) -> dict[str, Any]:
    listing = json.loads(server.run_cli("keys", "list", "--app", app_id, "--json").stdout)
    (entry,) = [k for k in listing if k["id"] == key_id]
    return dict(entry)


def https_status(server: VigilServer, token: str) -> int:
    with server.client(token) as client:
        return client.get("/v1/me").status_code


@pytest.mark.parametrize(
    ("method", "carrier"),
    [("GET", "header"), ("GET", "query"), ("POST", "header")],
    ids=["get-authorization-header", "get-api_key-query", "post-authorization-header"],
)
def test_an_api_key_sent_over_plain_http_is_refused_revoked_and_flagged_exposed(
    server: VigilServer, services: Services, method: str, carrier: str
) -> None:
    cred = factories.credential(services)
    assert https_status(server, cred.token) == 200

    with plain(server) as http:
        if carrier == "header":
            response = http.request(
                method, "/v1/me", headers={"Authorization": f"Bearer {cred.token}"}
            )
        else:
            response = http.request(method, "/v1/me", params={"api_key": cred.token})
    assert_refused_in_clear(response)
    assert cred.token not in response.text

    # Revoked at once: the very next HTTPS call with it fails.
    assert https_status(server, cred.token) == 401
    key = services.keys.get(cred.key_id, None)
    assert key.status is KeyStatus.REVOKED
    assert key.exposed_at is not None
    assert key.revoked_at is not None

    # The owner is told: the key listing flags it, and the audit log says why.
    listed = listed_key(server, cred.app.id, cred.key_id)
    assert listed["exposed"] is True
    assert listed["status"] == "revoked"
    (record,) = exposure_records(services, cred.key_id)
    assert record["dealer_id"] == cred.dealer.id
    assert record["actor_id"] == "http-guard"
    assert record["result"] == "success"


def forged_token(key_id: str, environment: Environment) -> str:
    """A well-formed, correctly checksummed key that names `key_id` but has a made-up secret."""
    random_secret = keyformat.parse(keyformat.mint(environment).token)
    assert random_secret is not None
    body = (
        f"vgl_{keyformat.ENV_TAGS[environment]}_"
        f"{key_id.removeprefix(keyformat.KEY_ID_PREFIX)}_{random_secret.secret}"
    )
    token = body + keyformat.checksum(body)
    parsed = keyformat.parse(token)
    assert parsed is not None
    assert parsed.key_id == key_id
    return token


def test_a_forged_key_over_plain_http_cannot_revoke_the_real_key(
    server: VigilServer, services: Services
) -> None:
    """Key ids are not secret (they appear in listings and audit logs), so sending someone's key
    id with a made-up secret over plain HTTP must not be a way to revoke their key."""
    victim = factories.credential(services)
    forged = forged_token(victim.key_id, Environment.SANDBOX)
    assert forged != victim.token

    with plain(server) as http:
        assert_refused_in_clear(http.get("/v1/me", headers={"Authorization": f"Bearer {forged}"}))
        assert_refused_in_clear(http.get("/v1/me", params={"api_key": forged}))

    assert https_status(server, victim.token) == 200
    key = services.keys.get(victim.key_id, None)
    assert key.status is KeyStatus.ACTIVE
    assert key.exposed_at is None
    assert exposure_records(services, victim.key_id) == []
