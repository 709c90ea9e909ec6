"""Headers every HTTPS response carries, errors included: HSTS (S3) and no content sniffing."""

from __future__ import annotations

HSTS_VALUE = b"max-age=63072000; includeSubDomains; preload"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"strict-transport-security", HSTS_VALUE),
    (b"x-content-type-options", b"nosniff"),
)
