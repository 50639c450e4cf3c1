"""The HTTP API: personal API tokens (hashed), per-credential rate-limit counters, and the
caller's address and user agent on audit rows.

Revision ID: 0004_api_tokens
Revises: 0003_erasure_fence
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_api_tokens"
down_revision = "0003_erasure_fence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ApiToken",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("tokenHash", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expiresAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revokedAt", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lastUsedAt", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tokenHash"),
    )
    op.create_index("ix_ApiToken_userId", "ApiToken", ["userId"], unique=False)
    op.create_table(
        "ApiRateLimit",
        sa.Column("bucket", sa.Text(), nullable=False),
        sa.Column("windowStart", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket"),
    )
    with op.batch_alter_table("DataAuditLog") as batch_op:
        batch_op.add_column(sa.Column("ipAddress", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("userAgent", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("DataAuditLog") as batch_op:
        batch_op.drop_column("userAgent")
        batch_op.drop_column("ipAddress")
    op.drop_table("ApiRateLimit")
    op.drop_index("ix_ApiToken_userId", table_name="ApiToken")
    op.drop_table("ApiToken")
