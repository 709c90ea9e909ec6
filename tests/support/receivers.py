"""Real HTTPS webhook receivers on loopback, with `trustme` certificates of every kind a delivery
must accept or refuse: valid, self-signed, expired, wrong host, unknown CA, internal CA."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "receiver.test"  # resolved to 127.0.0.1 by the static-hosts setting in tests


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class Receiver:
    """One HTTPS listener on 127.0.0.1 that records what it gets and answers with `reply`."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.received: list[Received] = []
        self.reply: Callable[[Received], Reply] = lambda _r: Reply()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                got = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                with receiver._lock:
                    receiver.received.append(got)
                answer = receiver.reply(got)
                if answer.delay:
                    time.sleep(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *_args: object) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook", host: str = HOST) -> str:
        return f"https://{host}:{self.port}{path}"

    def ids(self) -> list[str]:
        with self._lock:
            return [r.headers["webhook-id"] for r in self.received]

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"received {len(self.received)} of {count}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _server_context(leaf: trustme.LeafCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    return ctx


def _self_signed_context(directory: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "self.pem", directory / "self.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


class ReceiverSet:
    """The public CA (stands in for the system trust store), an internal CA a dealer might run,
    and receivers of each kind."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.public_ca = trustme.CA()
        self.internal_ca = trustme.CA()
        self.trust_store = directory / "trust-store.pem"
        self.public_ca.cert_pem.write_to_path(str(self.trust_store))
        self.internal_ca_pem = self.internal_ca.cert_pem.bytes().decode()
        past = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
        self.valid = Receiver(_server_context(self.public_ca.issue_cert(HOST, "127.0.0.1")))
        self.expired = Receiver(
            _server_context(
                self.public_ca.issue_cert(
                    HOST, not_before=past, not_after=past + dt.timedelta(days=30)
                )
            )
        )
        self.wrong_host = Receiver(_server_context(self.public_ca.issue_cert("elsewhere.test")))
        self.unknown_ca = Receiver(_server_context(trustme.CA().issue_cert(HOST)))
        self.self_signed = Receiver(_self_signed_context(directory))
        self.internal = Receiver(_server_context(self.internal_ca.issue_cert(HOST)))
        self.internal_too = Receiver(_server_context(self.internal_ca.issue_cert(HOST)))

    def all(self) -> list[Receiver]:
        return [
            self.valid,
            self.expired,
            self.wrong_host,
            self.unknown_ca,
            self.self_signed,
            self.internal,
            self.internal_too,
        ]

    def close(self) -> None:
        for receiver in self.all():
            receiver.close()
