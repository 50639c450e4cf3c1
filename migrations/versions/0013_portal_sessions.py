"""The "Your data" portal: single-use sign-in links and the sessions they open.

One table for both: a sign-in link's row is consumed once (`usedAt`); a session's row holds
the SHA-256 of its cookie (never the cookie) and ends at `expiresAt` or on sign-out
(`endedAt`). Both name a user, so erasure deletes them (`resources.schema`
`OWN_TABLES_WITH_USER`).

Revision ID: 0013_portal_sessions
Revises: 0012_oauth_states
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_portal_sessions"
down_revision = "0012_oauth_states"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "PortalSession",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("secretHash", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expiresAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("usedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("endedAt", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secretHash"),
    )
    op.create_index("ix_PortalSession_userId", "PortalSession", ["userId"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_PortalSession_userId", table_name="PortalSession")
    op.drop_table("PortalSession")
