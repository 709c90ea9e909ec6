"""Sealed secrets (S6): webhook signing secrets and operators' TOTP seeds are stored encrypted
with the dealer's `secrets` data keys instead of in clear. The plaintext columns are replaced by
`LargeBinary` ones; no deployment holds data yet, so nothing is converted (a database with
plaintext rows would have to re-issue webhook secrets and re-enrol TOTP).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_column("webhook_endpoints", "secret")
    op.drop_column("webhook_endpoints", "previous_secret")
    # Nullable only because SQLite cannot add a NOT NULL column without a default; the
    # service always writes it (an endpoint without one is refused when it is read).
    op.add_column("webhook_endpoints", sa.Column("secret_sealed", sa.LargeBinary(), nullable=True))
    op.add_column(
        "webhook_endpoints", sa.Column("previous_secret_sealed", sa.LargeBinary(), nullable=True)
    )
    op.drop_column("operator_accounts", "totp_secret")
    op.add_column(
        "operator_accounts", sa.Column("totp_secret_sealed", sa.LargeBinary(), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("operator_accounts", "totp_secret_sealed")
    op.add_column("operator_accounts", sa.Column("totp_secret", sa.String(64), nullable=True))
    op.drop_column("webhook_endpoints", "previous_secret_sealed")
    op.drop_column("webhook_endpoints", "secret_sealed")
    op.add_column("webhook_endpoints", sa.Column("previous_secret", sa.String(100), nullable=True))
    op.add_column(
        "webhook_endpoints",
        sa.Column("secret", sa.String(100), nullable=False, server_default=""),
    )
