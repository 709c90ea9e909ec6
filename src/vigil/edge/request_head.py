"""Bounds on a request's head (request line and headers), its size and the time it takes to
arrive, kept by the HTTP protocol itself, before any application code runs.

uvicorn with httptools sets none: over plain HTTP a client could send megabytes of headers and
the server buffered them all, and over TLS a head past about 128 KiB left the connection
hanging, neither answered nor closed, until the client gave up. Vigil's requests need a few
KiB (keys and tokens are short; JWT assertions travel in the body), so a head still incomplete
after `MAX_HEAD_BYTES` is refused with 431 (RFC 6585) and the connection closed. Node.js
allows 16 KiB and nginx 32 KiB by default; 64 KiB leaves room for proxies' and browsers'
headers.

The count is of the bytes that arrived while the head was incomplete: a chunk in which the
head ends (with the start of a large body after it, say) is not counted, so a body never
counts against the head. Such a refusal happens below the application, like the transport's
400 for a request that does not parse: it is logged with the client's address, not audited,
since no route, credential or request id exists yet.

Nor does uvicorn bound the time a head may take: a connection that sent half a head (or nothing
after the handshake) stayed open indefinitely, so a client could hold thousands of them with a
trickle of bytes (slowloris). A head must now be complete within `head_timeout` seconds of the
connection or of the start of the request (`VIGIL_REQUEST_HEAD_TIMEOUT_SECONDS`, 20 s by
default); otherwise the answer is 408 and the connection is closed. Between requests on a
kept-alive connection uvicorn's own idle timeout applies, as before.

A body is held to the same deadline, counted from its last byte: a request whose body stops
arriving for that long (a POST trickled or left unfinished) is answered 408, if no answer has
started, and its connection closed, and the handler sees the client gone. Time during which
uvicorn itself stopped reading (its buffer full because the application reads slowly) does
not count against the client; nor does a long upload that keeps arriving.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vigil.edge.headers import HSTS_VALUE

log = logging.getLogger("vigil.edge")

MAX_HEAD_BYTES = 64 * 1024


def _problem(status: int, code: str, title: str, detail: str) -> bytes:
    doc = {"type": f"https://vigil.dev/problems/{code}", "title": title, "status": status}
    return json.dumps(doc | {"detail": detail, "code": code}).encode()


_TOO_LARGE = (
    b"431 Request Header Fields Too Large",
    _problem(
        431,
        "request_head_too_large",
        "Request header fields too large",
        f"The request line and headers may hold at most {MAX_HEAD_BYTES} bytes.",
    ),
)
_BODY_TOO_SLOW = (
    b"408 Request Timeout",
    _problem(
        408,
        "request_body_timeout",
        "Request timeout",
        "The request body stopped arriving before it was complete.",
    ),
)
_TOO_SLOW = (
    b"408 Request Timeout",
    _problem(
        408,
        "request_head_timeout",
        "Request timeout",
        "The request line and headers did not arrive in time.",
    ),
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `MAX_HEAD_BYTES` and `head_timeout` kept (see the
    module docstring). `bounded_head_protocol` sets the timeout from the settings.

    The deadline is kept by one sweep per listener, not a timer per request: a request only
    notes when its head began (a timer armed and cancelled per request measurably cost the
    edge), and the sweep, every quarter of the timeout at most every second, refuses the
    heads that have waited too long."""

    head_timeout = 20.0
    _in_head = True  # until the first request's headers are complete
    _head_bytes = 0
    _head_since = 0.0
    _body_since = 0.0  # when the body last arrived (or uvicorn was not reading)
    # The connection sets (one per listener: uvicorn's `server_state.connections`) that have
    # a sweep; held, so that a new set can never take a swept one's place by its id.
    _swept: ClassVar[list[set[Any]]] = []

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()
        if not any(swept is self.connections for swept in self._swept):
            self._swept.append(self.connections)
            _sweep_later(self.loop, self.connections, self.head_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes, self._head_since = True, 0, self.loop.time()

    def on_headers_complete(self) -> None:
        self._in_head, self._body_since = False, self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_since = self.loop.time()
        super().on_body(body)

    @property
    def _in_body(self) -> bool:
        """Between the end of the head and the end of the body (uvicorn's `more_body`)."""
        cycle = self.cycle
        return (
            not self._in_head
            and cycle is not None
            and cycle.more_body
            and not cycle.response_complete
        )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(_TOO_LARGE, f"a request head over {MAX_HEAD_BYTES} bytes")

    def _too_slow(self) -> None:
        if not self._in_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a pipelined head waits behind a response still being written
        self._refuse(_TOO_SLOW, f"a request head not complete after {self.head_timeout:g} s")

    def _body_too_slow(self) -> None:
        if not self._in_body or self.transport.is_closing():
            return
        if self.flow.read_paused:  # uvicorn is not reading: the application is behind
            self._body_since = self.loop.time()
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # an answer is under way: it cannot become a 408
            return
        self._refuse(_BODY_TOO_SLOW, f"a request body idle for {self.head_timeout:g} s")

    def _refuse(self, answer: tuple[bytes, bytes], why: str) -> None:
        self._in_head = False
        host, port = self.client or ("unknown", 0)
        log.warning("refused %s from %s:%d", why, host, port)
        status, body = answer
        lines = [
            b"HTTP/1.1 " + status,
            b"content-type: application/problem+json",
            b"content-length: " + str(len(body)).encode(),
            b"x-content-type-options: nosniff",
            b"connection: close",
        ]
        if self.scheme == "https":  # S3: every HTTPS response, this one too
            lines.append(b"strict-transport-security: " + HSTS_VALUE)
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        self.transport.close()


def _sweep_later(loop: asyncio.AbstractEventLoop, connections: set[Any], timeout: float) -> None:
    loop.call_later(min(1.0, timeout / 4), _sweep, loop, connections, timeout)


def _sweep(loop: asyncio.AbstractEventLoop, connections: set[Any], timeout: float) -> None:
    """Refuse every head on one listener that has waited past the deadline."""
    cutoff = loop.time() - timeout
    try:
        for protocol in list(connections):
            if not isinstance(protocol, BoundedHeadProtocol):
                continue
            if protocol._in_head and protocol._head_since <= cutoff:
                protocol._too_slow()
            elif protocol._in_body and protocol._body_since <= cutoff:
                protocol._body_too_slow()
    except Exception:  # one broken connection must not end the sweep for every other one
        log.exception("request head sweep failed")
    finally:
        _sweep_later(loop, connections, timeout)


def bounded_head_protocol(head_timeout: float) -> type[BoundedHeadProtocol]:
    """The protocol class for uvicorn's `http=`, with the head's deadline from the settings."""
    return type("BoundedHeadProtocol", (BoundedHeadProtocol,), {"head_timeout": head_timeout})
