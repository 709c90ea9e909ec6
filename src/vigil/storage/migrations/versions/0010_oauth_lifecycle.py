"""OAuth lifecycle: partners can be disabled and carry an IP allow list, and the token and code
tables get the indexes that revocation by user or partner and the purge job look rows up by.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from vigil.storage.types import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("partners", sa.Column("disabled_at", UtcDateTime(), nullable=True))
    # NULL reads as "no allow list" (SQLite cannot add a NOT NULL column without a default).
    op.add_column("partners", sa.Column("ip_allow_list", sa.JSON(), nullable=True))
    op.create_index("ix_oauth_tokens_actor", "oauth_tokens", ["actor_id"])
    op.create_index("ix_oauth_tokens_expiry", "oauth_tokens", ["expires_at"])
    op.create_index("ix_oauth_codes_expiry", "oauth_codes", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oauth_codes_expiry", "oauth_codes")
    op.drop_index("ix_oauth_tokens_expiry", "oauth_tokens")
    op.drop_index("ix_oauth_tokens_actor", "oauth_tokens")
    op.drop_column("partners", "ip_allow_list")
    op.drop_column("partners", "disabled_at")
