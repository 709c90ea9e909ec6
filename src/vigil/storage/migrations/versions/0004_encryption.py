"""Encryption at rest: wrapped data keys, enterprise KEK refs and the sealed columns.

Rows written before this migration keep their plaintext columns (the services read either form);
rows written after it carry the sealed column and leave the plaintext one NULL (or `{}` for the
timeline's JSON `details`). Sealing old rows needs the KMS, which a migration does not have.

Revision ID: 0004
Revises: 0006 (merged after webhooks and OAuth)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vigil.storage.types import UtcDateTime

revision = "0004"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("keyset_id", sa.LargeBinary(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("dealer_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("kms_key_ref", sa.String(300), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("messages_reserved", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("retired", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("keyset_id", "version"),
        sa.UniqueConstraint("dealer_id", "purpose", "version", name="uq_data_keys_generation"),
    )
    op.create_index("ix_data_keys_dealer_id", "data_keys", ["dealer_id"])
    with op.batch_alter_table("dealers") as batch:
        batch.add_column(sa.Column("kms_key_ref", sa.String(200), nullable=True))
        batch.add_column(sa.Column("deleted_at", UtcDateTime(), nullable=True))
    with op.batch_alter_table("telemetry") as batch:
        batch.alter_column("value", existing_type=sa.Float(), nullable=True)
        batch.add_column(sa.Column("value_sealed", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("description_sealed", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("alarm_timeline") as batch:
        batch.add_column(sa.Column("note_sealed", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("details_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alarm_timeline") as batch:
        batch.drop_column("details_sealed")
        batch.drop_column("note_sealed")
    with op.batch_alter_table("alarms") as batch:
        batch.drop_column("description_sealed")
    with op.batch_alter_table("telemetry") as batch:
        batch.drop_column("value_sealed")
        batch.alter_column("value", existing_type=sa.Float(), nullable=False)
    with op.batch_alter_table("dealers") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("kms_key_ref")
    op.drop_index("ix_data_keys_dealer_id", "data_keys")
    op.drop_table("data_keys")
