"""OAuth connections in progress: one row per started "connect Dropbox / Google Drive /
OneDrive", holding its PKCE verifier wrapped under the master key, until its callback uses
it once or it expires.

Revision ID: 0012_oauth_states
Revises: 0011_backup_destinations
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_oauth_states"
down_revision = "0011_backup_destinations"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "OAuthState",
        sa.Column("stateHash", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("destinationUrl", sa.Text(), nullable=False),
        sa.Column("redirectUri", sa.Text(), nullable=False),
        sa.Column("wrappedVerifier", sa.LargeBinary(), nullable=False),
        sa.Column("masterKeyId", sa.Text(), nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expiresAt", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["userId"], ["User.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("stateHash"),
    )
    op.create_index("ix_OAuthState_userId", "OAuthState", ["userId"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_OAuthState_userId", table_name="OAuthState")
    op.drop_table("OAuthState")
