"""A bound on the size of a request's head (request line and headers), kept by the HTTP
protocol itself, before any application code runs.

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
"""

from __future__ import annotations

import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from vigil.edge.headers import HSTS_VALUE

log = logging.getLogger("vigil.edge")

MAX_HEAD_BYTES = 64 * 1024

_PROBLEM = json.dumps(
    {
        "type": "https://vigil.dev/problems/request_head_too_large",
        "title": "Request header fields too large",
        "status": 431,
        "detail": f"The request line and headers may hold at most {MAX_HEAD_BYTES} bytes.",
        "code": "request_head_too_large",
    }
).encode()


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `MAX_HEAD_BYTES` kept (see the module docstring)."""

    _in_head = True  # until the first request's headers are complete
    _head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse()

    def _refuse(self) -> None:
        self._in_head = False
        host, port = self.client or ("unknown", 0)
        log.warning("refused a request head over %d bytes from %s:%d", MAX_HEAD_BYTES, host, port)
        lines = [
            b"HTTP/1.1 431 Request Header Fields Too Large",
            b"content-type: application/problem+json",
            b"content-length: " + str(len(_PROBLEM)).encode(),
            b"x-content-type-options: nosniff",
            b"connection: close",
        ]
        if self.scheme == "https":  # S3: every HTTPS response, this one too
            lines.append(b"strict-transport-security: " + HSTS_VALUE)
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + _PROBLEM)
        self.transport.close()
