"""A request whose head (request line and headers) outgrows `MAX_HEAD_BYTES` is refused with a
431 problem document and a closed connection, on both listeners, instead of being buffered
without limit (plain HTTP) or left hanging (TLS); one that does not arrive within
`VIGIL_REQUEST_HEAD_TIMEOUT_SECONDS` gets 408 and a closed connection instead of holding it open
(slowloris), and so does a body that stops arriving for that long. Heads within the limits,
heads and bodies sent in pieces in time, and large bodies behind small heads are served as
before."""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from tests.conftest import DatabaseFactory
from tests.support import factories
from tests.support.server import VigilServer

from vigil.edge.headers import HSTS_VALUE
from vigil.edge.request_head import MAX_HEAD_BYTES
from vigil.services import Services


@contextmanager
def connection(server: VigilServer, tls: bool) -> Iterator[socket.socket]:
    port = server.https_port if tls else server.http_port
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        if not tls:
            yield raw
            return
        with server.ssl_context().wrap_socket(raw, server_hostname="localhost") as wrapped:
            yield wrapped


def exchange(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` (as far as the server reads it) and read the answer until the server
    closes the connection or the response is complete."""
    with suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
        sock.sendall(request)  # a refusal mid-send still leaves its answer to read
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed: an orderly end, or a reset when it closed with the rest of our
    request unread (TCP answers that with RST)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def get_me(token: str, padding: int) -> bytes:
    return (
        f"GET /v1/me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
        f"X-Padding: {'a' * padding}\r\nConnection: close\r\n\r\n"
    ).encode()


def test_an_oversized_head_over_tls_is_a_431_problem_and_the_server_carries_on(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    with connection(server, tls=True) as sock:
        status, headers, body = exchange(sock, get_me(cred.token, 200_000))
        assert closed_by_server(sock)
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert headers["strict-transport-security"] == HSTS_VALUE.decode()
    problem = json.loads(body)
    assert problem["status"] == 431
    assert problem["code"] == "request_head_too_large"
    assert cred.token not in body.decode()
    with server.client(cred.token) as client:  # the next request is served as ever
        assert client.get("/v1/me").status_code == 200


def test_a_head_within_the_limit_is_served(server: VigilServer, services: Services) -> None:
    cred = factories.credential(services)
    with connection(server, tls=True) as sock:
        status, _, body = exchange(sock, get_me(cred.token, MAX_HEAD_BYTES // 2))
    assert status == 200
    assert json.loads(body)["credential_id"] == cred.key_id


def test_an_oversized_head_on_the_plain_listener_is_refused_too(server: VigilServer) -> None:
    request = (
        f"GET /docs HTTP/1.1\r\nHost: localhost\r\nX-Padding: {'a' * 1_000_000}\r\n\r\n"
    ).encode()
    with connection(server, tls=False) as sock:
        status, headers, _ = exchange(sock, request)
        assert closed_by_server(sock)
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert "strict-transport-security" not in headers  # not an HTTPS response


def test_a_large_body_behind_a_small_head_does_not_count_against_it(
    server: VigilServer, services: Services
) -> None:
    cred = factories.credential(services)
    actor = factories.actor_of(services, cred)
    device = factories.camera(services, actor, factories.site(services, actor))
    content = os.urandom(4 * MAX_HEAD_BYTES)
    request = (
        f"POST /v1/devices/{device}/snapshots HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {cred.token}\r\nContent-Type: image/jpeg\r\n"
        f"Content-Length: {len(content)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with connection(server, tls=True) as sock:
        status, _, body = exchange(sock, request + content)  # head and body in one write
    assert status == 201, body
    assert json.loads(body)["size"] == len(content)


@pytest.fixture(scope="module")
def hasty(
    tmp_path_factory: pytest.TempPathFactory, new_database: DatabaseFactory
) -> Iterator[VigilServer]:
    """A server that waits only one second for a request's head."""
    home: Path = tmp_path_factory.mktemp("hasty")
    srv = new_database.server(home, request_head_timeout_seconds=1)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def wait_for_answer(sock: socket.socket, within: float) -> tuple[int, dict[str, str], bytes]:
    sock.settimeout(within)
    return exchange(sock, b"")


def test_a_head_trickled_past_the_deadline_is_a_408_and_the_connection_closes(
    hasty: VigilServer,
) -> None:
    with connection(hasty, tls=True) as sock:
        sock.sendall(b"GET /v1/me HTTP/1.1\r\nHost: localhost\r\n")  # and never the rest
        began = time.monotonic()
        status, headers, body = wait_for_answer(sock, 10)
        waited = time.monotonic() - began
        assert closed_by_server(sock)
    assert status == 408
    assert 0.5 <= waited < 10
    assert headers["content-type"] == "application/problem+json"
    assert headers["strict-transport-security"] == HSTS_VALUE.decode()
    assert json.loads(body)["code"] == "request_head_timeout"


def test_a_connection_that_sends_nothing_is_closed_after_the_deadline(hasty: VigilServer) -> None:
    with connection(hasty, tls=False) as sock:
        status, headers, _ = wait_for_answer(sock, 10)
        assert closed_by_server(sock)
    assert status == 408
    assert "strict-transport-security" not in headers


def test_a_head_in_pieces_within_the_deadline_is_served(hasty: VigilServer) -> None:
    with connection(hasty, tls=True) as sock:
        sock.sendall(b"GET /.well-known/security.txt HTTP/1.1\r\n")
        time.sleep(0.3)
        status, _, body = exchange(sock, b"Host: localhost\r\nConnection: close\r\n\r\n")
    assert status == 200
    assert b"Contact:" in body


@pytest.fixture(scope="module")
def hasty_key(hasty: VigilServer) -> Iterator[str]:
    services = hasty.services()
    try:
        yield factories.credential(services).token
    finally:
        services.close()


def post_site_head(token: str, length: int) -> bytes:
    return (
        f"POST /v1/sites HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def test_a_body_that_stops_arriving_is_a_408_and_the_connection_closes(
    hasty: VigilServer, hasty_key: str
) -> None:
    with connection(hasty, tls=True) as sock:
        sock.sendall(post_site_head(hasty_key, 100) + b'{"name": "')  # 10 of 100 bytes
        status, headers, body = wait_for_answer(sock, 10)
        assert closed_by_server(sock)
    assert status == 408
    assert headers["strict-transport-security"] == HSTS_VALUE.decode()
    assert json.loads(body)["code"] == "request_body_timeout"


def test_a_body_in_pieces_within_the_deadline_is_served(hasty: VigilServer, hasty_key: str) -> None:
    content = b'{"name": "Sent in two pieces"}'
    with connection(hasty, tls=True) as sock:
        sock.sendall(post_site_head(hasty_key, len(content)) + content[:10])
        time.sleep(0.3)
        status, _, body = exchange(sock, content[10:])
    assert status == 201, body
    assert json.loads(body)["name"] == "Sent in two pieces"
