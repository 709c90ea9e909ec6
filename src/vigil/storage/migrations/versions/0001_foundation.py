"""Foundation: dealers, apps, API keys, audit events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vigil.storage.types import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dealers",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(20), nullable=False),
        sa.Column(
            "audit_retention_days",
            sa.Integer,
            # The storage's delete guard trusts this number, so the storage bounds it too (S17).
            sa.CheckConstraint("audit_retention_days BETWEEN 365 AND 2557"),
            nullable=False,
        ),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "apps",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("dealer_id", sa.String(40), sa.ForeignKey("dealers.id"), nullable=False),
        sa.Column("environment", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("ip_allow_list", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_apps_tenant", "apps", ["dealer_id", "environment"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("app_id", sa.String(40), sa.ForeignKey("apps.id"), nullable=False),
        sa.Column("dealer_id", sa.String(40), sa.ForeignKey("dealers.id"), nullable=False),
        sa.Column("environment", sa.String(20), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=True),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.Column("exposed_at", UtcDateTime, nullable=True),
        sa.Column("last_used_at", UtcDateTime, nullable=True),
        sa.Column("last_used_ip", sa.String(64), nullable=True),
    )
    op.create_index("ix_api_keys_app", "api_keys", ["app_id", "status"])
    op.create_table(
        "audit_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("chain_id", sa.String(40), nullable=False),
        sa.Column("chain_seq", sa.BigInteger, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("actor_type", sa.String(20), nullable=False),
        sa.Column("actor_id", sa.String(200), nullable=True),
        sa.Column("dealer_id", sa.String(40), nullable=True),
        sa.Column("environment", sa.String(20), nullable=True),
        sa.Column("app_id", sa.String(40), nullable=True),
        sa.Column("credential_id", sa.String(40), nullable=True),
        sa.Column("scope", sa.String(40), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("source_ip", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(300), nullable=True),
        sa.Column("method", sa.String(10), nullable=True),
        sa.Column("route", sa.String(200), nullable=True),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("target_type", sa.String(40), nullable=True),
        sa.Column("target_id", sa.String(200), nullable=True),
        sa.Column("result", sa.String(40), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.UniqueConstraint("chain_id", "chain_seq", name="uq_audit_chain_seq"),
    )
    op.create_table(
        "audit_chain_heads",
        sa.Column("chain_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.Column("checkpointed_seq", sa.BigInteger, nullable=False),
        sa.Column("checkpointed_at", UtcDateTime, nullable=True),
        sa.Column("pending_since", UtcDateTime, nullable=True),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("chain_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("signed_at", sa.String(30), nullable=False),
        sa.Column("kid", sa.String(60), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
        sa.UniqueConstraint("chain_id", "seq", name="uq_audit_checkpoint"),
    )
    op.create_table(
        "audit_signing_keys",
        sa.Column("kid", sa.String(60), primary_key=True),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("retired_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "audit_policy",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "platform_retention_days",
            sa.Integer,
            sa.CheckConstraint("platform_retention_days BETWEEN 365 AND 2557"),
            nullable=False,
        ),
    )
    op.create_index("ix_audit_dealer_time", "audit_events", ["dealer_id", "occurred_at"])
    op.create_index("ix_audit_request", "audit_events", ["request_id"])
    op.create_table(
        "platform_state",
        sa.Column("name", sa.String(60), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "audit_policy",
        "audit_signing_keys",
        "audit_checkpoints",
        "audit_chain_heads",
        "platform_state",
        "audit_events",
        "api_keys",
        "apps",
        "dealers",
    ):
        op.drop_table(name)
