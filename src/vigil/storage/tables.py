"""The relational schema, as SQLAlchemy Core tables (migrations create them; this describes them).

Every tenant-owned table carries `dealer_id` and `environment` so a repository can always filter
by both (S12, S13).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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
