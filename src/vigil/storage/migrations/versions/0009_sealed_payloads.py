"""Sealed payloads (S6): outbox event payloads, the copies webhook messages carry, and the
responses stored for `Idempotency-Key` replays are encrypted with the dealer's `records` data
keys instead of kept in clear (an alarm's description travels in all three). As in 0008 no
deployment holds data yet, so the plaintext columns are replaced, not converted.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable only because SQLite cannot add a NOT NULL column without a default; the
    # services always write them.
    op.drop_column("outbox_events", "payload")
    op.add_column("outbox_events", sa.Column("payload_sealed", sa.LargeBinary(), nullable=True))
    op.drop_column("webhook_messages", "payload")
    op.add_column("webhook_messages", sa.Column("payload_sealed", sa.LargeBinary(), nullable=True))
    op.drop_column("idempotency_keys", "response_body")
    op.add_column("idempotency_keys", sa.Column("response_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("idempotency_keys", "response_sealed")
    op.add_column("idempotency_keys", sa.Column("response_body", sa.LargeBinary(), nullable=True))
    op.drop_column("webhook_messages", "payload_sealed")
    op.add_column(
        "webhook_messages",
        sa.Column("payload", sa.JSON(), nullable=False, server_default="{}"),
    )
    op.drop_column("outbox_events", "payload_sealed")
    op.add_column(
        "outbox_events", sa.Column("payload", sa.JSON(), nullable=False, server_default="{}")
    )
