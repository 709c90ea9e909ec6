"""The audit action catalogue, in one place: `subject.verb`."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    API_REQUEST = "api.request"
    AUTH_FAILED = "auth.failed"
    ACCESS_DENIED = "access.denied"
    RATE_LIMITED = "request.rate_limited"
    CLEARTEXT_REFUSED = "transport.cleartext_refused"
    DEALER_CREATED = "dealer.created"
    APP_CREATED = "app.created"
    APP_SCOPES_GRANTED = "app.scopes_granted"
    API_KEY_CREATED = "api_key.created"
    API_KEY_ROTATED = "api_key.rotated"
    API_KEY_REVOKED = "api_key.revoked"
    API_KEY_EXPOSED = "api_key.exposed"
    PLATFORM_INITIALIZED = "platform.initialized"
    TLS_RELOADED = "tls.reloaded"
    AUDIT_PURGED = "audit.purged"
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_VERIFIED = "audit.verified"
    AUDIT_KEY_ROTATED = "audit_signing_key.rotated"
