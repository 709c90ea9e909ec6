"""HTTP `Range: bytes=…` for one representation of known size (RFC 9110 section 14).

Pure logic, so every front (API, portal) serves partial content the same way. One range is
served as 206. A header Vigil does not serve as ranges is ignored and the whole body is sent,
as the RFC allows (section 14.2): several ranges (a multipart/byteranges answer buys a video
player nothing and costs a second code path), another unit, or a malformed header. A well-formed
range that starts past the end is 416.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vigil.core.errors import RangeNotSatisfiable

_SPEC = re.compile(r"([0-9]{0,19})-([0-9]{0,19})")
MAX_HEADER = 200  # a legitimate single range is a few dozen characters


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes `start` to `end` inclusive, as `Content-Range` writes them."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range to serve, or None for the whole representation."""
    if header is None or len(header) > MAX_HEADER:
        return None
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in specs:
        return None
    match = _SPEC.fullmatch(specs.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable("The range asks for no bytes.", size=size)
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid, not unsatisfiable (section 14.1.1)
    if start >= size:
        raise RangeNotSatisfiable(f"The range starts at or past the end ({size} bytes).", size=size)
    end = min(int(last), size - 1) if last else size - 1
    return ByteRange(start, end, size)
