"""The relational schema, as SQLAlchemy Core tables (migrations create them; this describes them).

Every tenant-owned table carries `dealer_id` and `environment` so a repository can always filter
by both (S12, S13).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

from vigil.storage.types import UtcDateTime

metadata = MetaData()

dealers = Table(
    "dealers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("plan", String(20), nullable=False),
    Column("audit_retention_days", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # The KMS key-encryption key of the dealer's own (S8); NULL until first use.
    Column("kms_key_ref", String(200), nullable=True),
    # Who owns that KEK: "platform" (Vigil made it and destroys it with the dealer) or
    # "customer" (configured with `vigil kms provision --key`; never destroyed by Vigil).
    Column("kms_key_managed", String(20), nullable=False, server_default="platform"),
    # Set by `vigil dealers delete`: its keys are destroyed and no new ones may be made.
    Column("deleted_at", UtcDateTime, nullable=True),
)

apps = Table(
    "apps",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("dealer_id", String(40), ForeignKey("dealers.id"), nullable=False),
    Column("environment", String(20), nullable=False),
    Column("name", String(200), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("ip_allow_list", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_apps_tenant", "dealer_id", "environment"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("app_id", String(40), ForeignKey("apps.id"), nullable=False),
    Column("dealer_id", String(40), ForeignKey("dealers.id"), nullable=False),
    Column("environment", String(20), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("exposed_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
    Column("last_used_ip", String(64), nullable=True),
    Index("ix_api_keys_app", "app_id", "status"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("id", String(40), nullable=False, unique=True),
    Column("chain_id", String(40), nullable=False),
    Column("chain_seq", BigInteger, nullable=False),
    Column("prev_hash", LargeBinary(32), nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("actor_type", String(20), nullable=False),
    Column("actor_id", String(200), nullable=True),
    Column("dealer_id", String(40), nullable=True),
    Column("environment", String(20), nullable=True),
    Column("app_id", String(40), nullable=True),
    Column("credential_id", String(40), nullable=True),
    Column("scope", String(40), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("user_agent", String(300), nullable=True),
    Column("method", String(10), nullable=True),
    Column("route", String(200), nullable=True),
    Column("action", String(60), nullable=False),
    Column("target_type", String(40), nullable=True),
    Column("target_id", String(200), nullable=True),
    Column("result", String(40), nullable=False),
    Column("details", JSON, nullable=False),
    Index("ix_audit_dealer_time", "dealer_id", "occurred_at"),
    Index("ix_audit_request", "request_id"),
    UniqueConstraint("chain_id", "chain_seq", name="uq_audit_chain_seq"),
)

# One row per chain (a dealer, or "platform"): where the next record links on. Locked per batch,
# never per request, so several processes append without a global lock.
audit_chain_heads = Table(
    "audit_chain_heads",
    metadata,
    Column("chain_id", String(40), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    Column("checkpointed_seq", BigInteger, nullable=False),
    Column("checkpointed_at", UtcDateTime, nullable=True),
    # When the oldest record not yet covered by a checkpoint was appended.
    Column("pending_since", UtcDateTime, nullable=True),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("chain_id", String(40), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("head_hash", LargeBinary(32), nullable=False),
    Column("signed_at", String(30), nullable=False),
    Column("kid", String(60), nullable=False),
    Column("signature", LargeBinary(64), nullable=False),
    UniqueConstraint("chain_id", "seq", name="uq_audit_checkpoint"),
)

audit_signing_keys = Table(
    "audit_signing_keys",
    metadata,
    Column("kid", String(60), primary_key=True),
    Column("public_key", LargeBinary(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

# Retention for platform-level records (no dealer); the storage's delete guard reads it.
audit_policy = Table(
    "audit_policy",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("platform_retention_days", Integer, nullable=False),
)

settings_kv = Table(
    "platform_state",
    metadata,
    Column("name", String(60), primary_key=True),
    Column("value", Text, nullable=False),
)

# --- Monitoring (issue 4). Every row carries its tenant; `seq` orders rows for keyset
# pagination (ids are random, so they cannot), `version` backs ETag / If-Match.


def _seq() -> Column[int]:
    return Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )


def _tenant() -> tuple[Column[str], Column[str]]:
    return (
        Column("dealer_id", String(40), ForeignKey("dealers.id"), nullable=False),
        Column("environment", String(20), nullable=False),
    )


sites = Table(
    "sites",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("name", String(200), nullable=False),
    Column("external_id", String(100), nullable=True),
    Column("account_number", String(40), nullable=True),
    Column("address", JSON, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("monitoring_station", String(200), nullable=True),
    Column("arming_state", String(20), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_sites_tenant", "dealer_id", "environment", "seq"),
    UniqueConstraint("dealer_id", "environment", "external_id", name="uq_sites_external_id"),
)

site_arming_changes = Table(
    "site_arming_changes",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("site_id", String(40), ForeignKey("sites.id"), nullable=False),
    Column("from_state", String(20), nullable=False),
    Column("to_state", String(20), nullable=False),
    Column("actor_type", String(20), nullable=False),
    Column("actor_id", String(200), nullable=False),
    Column("reason", String(500), nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Index("ix_site_arming_site", "site_id", "seq"),
)

devices = Table(
    "devices",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("site_id", String(40), ForeignKey("sites.id"), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("parent_id", String(40), ForeignKey("devices.id"), nullable=True),
    Column("channel", Integer, nullable=True),
    Column("serial", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("firmware_version", String(100), nullable=True),
    Column("status", String(20), nullable=False),
    Column("heartbeat_seconds", Integer, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_devices_tenant", "dealer_id", "environment", "seq"),
    Index("ix_devices_site", "site_id", "seq"),
    Index("ix_devices_presence", "status", "last_seen_at"),
    UniqueConstraint("dealer_id", "environment", "serial", name="uq_devices_serial"),
    UniqueConstraint("parent_id", "channel", name="uq_devices_channel"),
)

telemetry = Table(
    "telemetry",
    metadata,
    _seq(),
    *_tenant(),
    Column("device_id", String(40), ForeignKey("devices.id"), nullable=False),
    Column("metric", String(64), nullable=False),
    # Rows written since 0004 keep `value` NULL and the reading in `value_sealed` (S6).
    Column("value", Float, nullable=True),
    Column("value_sealed", LargeBinary, nullable=True),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index("ix_telemetry_series", "device_id", "metric", "recorded_at"),
)

alarms = Table(
    "alarms",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("site_id", String(40), ForeignKey("sites.id"), nullable=False),
    Column("device_id", String(40), ForeignKey("devices.id"), nullable=True),
    Column("zone", String(100), nullable=True),
    Column("type", String(20), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("description", String(2000), nullable=True),
    Column("description_sealed", LargeBinary, nullable=True),
    Column("snapshot_ids", JSON, nullable=False),
    Column("verification_requested", Integer, nullable=False),
    Column("resolution_code", String(40), nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_alarms_status", "dealer_id", "environment", "status", "seq"),
    Index("ix_alarms_site", "dealer_id", "environment", "site_id", "seq"),
    Index("ix_alarms_tenant", "dealer_id", "environment", "seq"),
)

alarm_timeline = Table(
    "alarm_timeline",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("alarm_id", String(40), ForeignKey("alarms.id"), nullable=False),
    Column("action", String(30), nullable=False),
    Column("actor_type", String(20), nullable=False),
    Column("actor_id", String(200), nullable=False),
    Column("note", Text, nullable=True),
    Column("details", JSON, nullable=False),
    # Since 0004 the note and details live sealed here; `note` is NULL and `details` is {}.
    Column("note_sealed", LargeBinary, nullable=True),
    Column("details_sealed", LargeBinary, nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Index("ix_alarm_timeline_alarm", "alarm_id", "seq"),
)

snapshots = Table(
    "snapshots",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("device_id", String(40), ForeignKey("devices.id"), nullable=False),
    Column("alarm_id", String(40), ForeignKey("alarms.id"), nullable=True),
    Column("content_type", String(100), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("object_key", String(200), nullable=False),
    Column("captured_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_snapshots_tenant", "dealer_id", "environment", "seq"),
    Index("ix_snapshots_device", "device_id", "seq"),
    Index("ix_snapshots_alarm", "alarm_id"),
)

# The transactional outbox: written in the same transaction as the change it announces; the
# webhooks issue delivers from it. Rows are never updated; delivery state lives elsewhere.
outbox_events = Table(
    "outbox_events",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("type", String(60), nullable=False),
    Column("subject_type", String(40), nullable=False),
    Column("subject_id", String(40), nullable=False),
    # The Standard Webhooks payload, sealed with the dealer's records keys (S6), bound to
    # dealer / environment / `outbox_event` / id / `payload` (events/outbox.py); see 0009.
    Column("created_at", UtcDateTime, nullable=False),
    Column("payload_sealed", LargeBinary, nullable=True),  # always written
    Index("ix_outbox_tenant", "dealer_id", "environment", "seq"),
)

# Idempotency-Key records: a claimed key while the first request runs, its response after.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    _seq(),
    Column("dealer_id", String(40), nullable=False),
    Column("environment", String(20), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", LargeBinary(32), nullable=False),
    Column("state", String(10), nullable=False),
    Column("response_status", Integer, nullable=True),
    Column("response_headers", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    # The response body, sealed with the dealer's records keys (S6), bound to dealer /
    # environment / `idempotency` / seq / `response_body` (storage/idempotency.py); see 0009.
    Column("response_sealed", LargeBinary, nullable=True),
    UniqueConstraint("dealer_id", "environment", "owner", "key", name="uq_idempotency_key"),
    Index("ix_idempotency_expiry", "expires_at"),
)

# --- OAuth 2.0, users and assertion partners (issue 6; S10, S11). Secrets are stored only as
# SHA-256 (high-entropy tokens) or argon2id (passwords); never in clear.

# People who can grant apps access: dealer operators and site users (a dealer's customers,
# confined to `site_ids`). Users belong to a dealer, not an environment: the app they grant
# decides the environment of the token.
users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("dealer_id", String(40), ForeignKey("dealers.id"), nullable=False),
    Column("email", String(254), nullable=False),
    Column("role", String(20), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("site_ids", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime, nullable=True),
    UniqueConstraint("dealer_id", "email", name="uq_users_dealer_email"),
)

# An app's OAuth registration: the client id is the app id.
oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("app_id", String(40), ForeignKey("apps.id"), primary_key=True),
    Column("client_type", String(20), nullable=False),
    Column("auth_method", String(30), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=True),
    Column("jwks", JSON, nullable=True),
    Column("redirect_uris", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# A user's consent to an app for some scopes; revoking it revokes every token issued under it.
oauth_grants = Table(
    "oauth_grants",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("app_id", String(40), ForeignKey("apps.id"), nullable=False),
    Column("dealer_id", String(40), ForeignKey("dealers.id"), nullable=False),
    Column("environment", String(20), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_oauth_grants_user", "user_id"),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("grant_id", String(40), ForeignKey("oauth_grants.id"), nullable=False),
    Column("app_id", String(40), ForeignKey("apps.id"), nullable=False),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("redirect_uri", String(2000), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("code_challenge", String(128), nullable=False),
    # Tokens issued from this code form one family: a replayed code revokes them all.
    Column("family_id", String(40), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Index("ix_oauth_codes_expiry", "expires_at"),  # the purge job (0010)
)

# Access and refresh tokens. The access-token lookup on the hot path is one primary-key read
# joined to the app (so narrowing an app's scopes narrows its tokens at once).
oauth_tokens = Table(
    "oauth_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("secret_hash", LargeBinary(32), nullable=False),
    Column("family_id", String(40), nullable=False),
    Column("grant_id", String(40), ForeignKey("oauth_grants.id"), nullable=True),
    Column("app_id", String(40), ForeignKey("apps.id"), nullable=True),
    Column("partner_id", String(40), nullable=True),
    Column("actor_type", String(20), nullable=False),
    Column("actor_id", String(40), nullable=False),
    Column("dealer_id", String(40), ForeignKey("dealers.id"), nullable=False),
    Column("environment", String(20), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("site_ids", JSON, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    # Refresh tokens: the family's absolute end, carried forward on rotation.
    Column("family_expires_at", UtcDateTime, nullable=True),
    Column("used_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_oauth_tokens_family", "family_id"),
    Index("ix_oauth_tokens_grant", "grant_id"),
    # Revoking every token of a user or partner, and the purge job (0010).
    Index("ix_oauth_tokens_actor", "actor_id"),
    Index("ix_oauth_tokens_expiry", "expires_at"),
)

# Service-to-service partners (RFC 7523): their public keys are uploaded, never fetched.
partners = Table(
    "partners",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("environment", String(20), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # A disabled partner gets no token and its tokens are revoked; NULL allow list = none (0010).
    Column("disabled_at", UtcDateTime, nullable=True),
    Column("ip_allow_list", JSON, nullable=True),
)

partner_keys = Table(
    "partner_keys",
    metadata,
    Column("partner_id", String(40), ForeignKey("partners.id"), primary_key=True),
    Column("kid", String(200), primary_key=True),
    Column("jwk", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("retire_at", UtcDateTime, nullable=True),
)

partner_authorizations = Table(
    "partner_authorizations",
    metadata,
    Column("partner_id", String(40), ForeignKey("partners.id"), primary_key=True),
    Column("dealer_id", String(40), ForeignKey("dealers.id"), primary_key=True),
    Column("scopes", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

# One row per accepted assertion `jti`: the primary key makes the insert the atomic
# "first use wins" test shared by every server process (RFC 7523 section 3, item 7).
assertion_jtis = Table(
    "assertion_jtis",
    metadata,
    Column("issuer", String(200), primary_key=True),
    Column("jti", String(200), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_assertion_jtis_expiry", "expires_at"),
)

# --- Webhooks (issue 7). An endpoint belongs to one app (whose scopes bound what it receives);
# a message is one event for one endpoint, with its delivery state; an attempt is one try.

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("app_id", String(40), ForeignKey("apps.id"), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("description", String(500), nullable=True),
    Column("event_types", JSON, nullable=False),
    Column("enabled", Integer, nullable=False),
    Column("disabled_reason", String(40), nullable=True),
    # Signing secrets are sealed with the dealer's `secrets` keys (S6), bound to
    # dealer / environment / `webhook_endpoint` / id / `signing_secret` (or
    # `previous_signing_secret`): see docs/encryption.md.
    Column("secret_sealed", LargeBinary, nullable=True),  # always written; see 0008
    Column("previous_secret_sealed", LargeBinary, nullable=True),
    Column("previous_secret_expires_at", UtcDateTime, nullable=True),
    Column("ca_bundle", Text, nullable=True),
    Column("failing_since", UtcDateTime, nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index("ix_webhook_endpoints_tenant", "dealer_id", "environment", "seq"),
    Index("ix_webhook_endpoints_app", "app_id"),
)

webhook_ca_requests = Table(
    "webhook_ca_requests",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("endpoint_id", String(40), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("ca_bundle", Text, nullable=False),
    Column("fingerprints", JSON, nullable=False),
    Column("reason", String(500), nullable=True),
    Column("status", String(20), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("decided_by", String(200), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime, nullable=True),
    Index("ix_webhook_ca_requests_endpoint", "endpoint_id", "seq"),
)

# Which outbox events have been fanned out to endpoints (the outbox itself is never updated).
webhook_fanout = Table(
    "webhook_fanout",
    metadata,
    Column("event_id", String(40), primary_key=True),
    Column("fanned_out_at", UtcDateTime, nullable=False),
)

webhook_messages = Table(
    "webhook_messages",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("endpoint_id", String(40), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("event_id", String(40), nullable=True),
    Column("event_type", String(60), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=True),
    # A claimed message is leased to one worker; a worker that dies leaves the lease to expire
    # and the message is delivered again, with the same webhook-id (at least once).
    Column("lease_until", UtcDateTime, nullable=True),
    Column("exhausted", Integer, nullable=False),
    Column("last_status_code", Integer, nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The event's sealed payload, copied as is (still bound to its `outbox_event`); a test
    # message's own is bound to `webhook_message` / message id / `payload`. See 0009.
    Column("payload_sealed", LargeBinary, nullable=True),  # always written
    Index("ix_webhook_messages_due", "status", "next_attempt_at"),
    Index("ix_webhook_messages_endpoint", "endpoint_id", "seq"),
    UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_messages_event"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    _seq(),
    Column("id", String(40), nullable=False, unique=True),
    *_tenant(),
    Column("endpoint_id", String(40), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("message_id", String(40), ForeignKey("webhook_messages.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("result", String(20), nullable=False),
    Column("reason", String(60), nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Column("tls", String(200), nullable=True),
    Column("address", String(64), nullable=True),
    Column("response_body", Text, nullable=True),
    Column("attempted_at", UtcDateTime, nullable=False),
    Index("ix_webhook_attempts_endpoint", "endpoint_id", "seq"),
    Index("ix_webhook_attempts_message", "message_id", "seq"),
)

# --- Encryption at rest (issue 5). Wrapped data keys, one row per generation of a dealer's
# keyset for one purpose (crypto/keystore.py). The wrapped bytes are useless without the KMS;
# deleting a dealer's rows here is crypto-shredding (S8).
data_keys = Table(
    "data_keys",
    metadata,
    Column("keyset_id", LargeBinary(16), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("dealer_id", String(64), nullable=False, index=True),
    Column("purpose", String(20), nullable=False),
    Column("kms_key_ref", String(300), nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    Column("messages_reserved", BigInteger, nullable=False, server_default="0"),
    Column("retired", Boolean, nullable=False, server_default=false()),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("dealer_id", "purpose", "version", name="uq_data_keys_generation"),
)

# --- Dealer portal (issue 8). A separate table rather than new `users` columns: the portal's
# facts about an operator (role, second factor, lockout) change on their own, and appending a
# table keeps this branch's migration independent of the others.
#
# `totp_secret_sealed` is the base32 TOTP seed sealed with the dealer's `secrets` keys (S6),
# bound to dealer / `production` / `totp` / user id / `secret` (an operator account spans both
# environments, so the binding uses the fixed `production`). `recovery_codes` holds SHA-256
# hex digests only (codes are 80-bit random, so a fast hash is enough); a used code is removed.
operator_accounts = Table(
    "operator_accounts",
    metadata,
    Column("user_id", String(40), ForeignKey("users.id"), primary_key=True),
    Column("portal_role", String(20), nullable=False),
    Column("totp_secret_sealed", LargeBinary, nullable=True),
    Column("totp_last_step", Integer, nullable=True),
    Column("recovery_codes", JSON, nullable=False),
    Column("failed_sign_ins", Integer, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Server-side portal sessions. The cookie carries a 256-bit random id; only its SHA-256 is
# stored, so a copy of the database cannot be replayed as sessions. `mfa_pending` sessions
# (password checked, second factor not yet) grant nothing but the TOTP step.
portal_sessions = Table(
    "portal_sessions",
    metadata,
    Column("id_hash", LargeBinary(32), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False),
    Column("dealer_id", String(40), ForeignKey("dealers.id"), nullable=False),
    Column("environment", String(20), nullable=False),
    Column("csrf_secret", String(64), nullable=False),
    Column("mfa_pending", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("ix_portal_sessions_user", "user_id"),
)
