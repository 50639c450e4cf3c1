"""Encrypted export requests: `ExportEncryption`, one row per encrypted request (the age
recipient, or the passphrase wrapped under the master key until the job ends). And
`NotificationOutbox.userId` may be NULL: an "erasure completed" notification names no one.

Revision ID: 0009_export_encryption
Revises: 0008_sync
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_export_encryption"
down_revision = "0008_sync"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ExportEncryption",
        sa.Column("jobId", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=True),
        sa.Column("wrappedPassphrase", sa.LargeBinary(), nullable=True),
        sa.Column("masterKeyId", sa.Text(), nullable=True),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jobId"),
    )
    op.create_index("ix_ExportEncryption_userId", "ExportEncryption", ["userId"], unique=False)
    with op.batch_alter_table("NotificationOutbox") as batch:
        batch.alter_column("userId", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    op.execute('DELETE FROM "NotificationOutbox" WHERE "userId" IS NULL')
    with op.batch_alter_table("NotificationOutbox") as batch:
        batch.alter_column("userId", existing_type=sa.Text(), nullable=False)
    op.drop_index("ix_ExportEncryption_userId", table_name="ExportEncryption")
    op.drop_table("ExportEncryption")
