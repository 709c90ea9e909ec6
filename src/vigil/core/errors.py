"""The error hierarchy every front maps once.

The API turns these into RFC 9457 problem documents; the CLI into one line and an exit code.
Messages are written for the caller and never carry secrets.
"""

from __future__ import annotations

from typing import Any


class VigilError(Exception):
    """Base class. `status` is the HTTP status; `code` a stable machine-readable slug."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class InvalidInput(VigilError):
    status = 422
    code = "invalid_input"
    title = "Invalid input"


class NotFound(VigilError):
    """Also used for other tenants' objects: their existence must not leak (S12)."""

    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(VigilError):
    status = 409
    code = "conflict"
    title = "Conflict"


class AuthenticationFailed(VigilError):
    """Missing or bad credential. `error` follows RFC 6750 section 3.1."""

    status = 401
    code = "invalid_token"
    title = "Authentication required"

    def __init__(self, detail: str, *, error: str | None = "invalid_token") -> None:
        super().__init__(detail)
        self.error = error
        if error:
            self.code = error


class PermissionDenied(VigilError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class InsufficientScope(PermissionDenied):
    code = "insufficient_scope"
    title = "Insufficient scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"This call needs the scope '{scope}'.", scope=scope)
        self.scope = scope


class CleartextRefused(PermissionDenied):
    """A credential arrived over plain HTTP (S2)."""

    code = "https_required"
    title = "HTTPS required"


class RateLimited(VigilError):
    status = 429
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Rate limit exceeded; retry after {retry_after} s.")
        self.retry_after = retry_after


class PreconditionFailed(VigilError):
    """`If-Match` named a version that is no longer current (RFC 9110 section 13.1.1): someone
    else changed the resource first, so this change would overwrite theirs."""

    status = 412
    code = "precondition_failed"
    title = "Precondition failed"


class PayloadTooLarge(VigilError):
    status = 413
    code = "payload_too_large"
    title = "Payload too large"


class UnsupportedMediaType(VigilError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class RangeNotSatisfiable(VigilError):
    """`size` is the representation's length, for `Content-Range: bytes */size` (RFC 9110
    section 15.5.17)."""

    status = 416
    code = "range_not_satisfiable"
    title = "Range not satisfiable"

    def __init__(self, detail: str, *, size: int) -> None:
        super().__init__(detail, size=size)
        self.size = size
