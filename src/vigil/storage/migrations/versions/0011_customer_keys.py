"""Customer-managed KMS keys (bring your own key): `dealers.kms_key_managed` remembers who owns
the dealer's KEK, so `vigil dealers delete` destroys only the keys Vigil made ("platform") and
leaves a key the enterprise configured ("customer") to it.

Every ref recorded before this revision was made by Vigil: the column defaults to "platform".

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dealers") as batch:
        batch.add_column(
            sa.Column("kms_key_managed", sa.String(20), nullable=False, server_default="platform")
        )


def downgrade() -> None:
    with op.batch_alter_table("dealers") as batch:
        batch.drop_column("kms_key_managed")
