"""The erasure fence: a tombstone per erased user (by pseudonym), the table of every place a
user's file was written, and the erasure requests' retry count.

Revision ID: 0003_erasure_fence
Revises: 0002_foreign_key_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_erasure_fence"
down_revision = "0002_foreign_key_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ErasureTombstone",
        sa.Column("subjectRef", sa.Text(), nullable=False),
        sa.Column("erasedAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subjectRef"),
    )
    op.create_table(
        "FileLocation",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("subjectRef", sa.Text(), nullable=False),
        sa.Column("storageUrl", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expiresAt", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("FileLocation", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_FileLocation_subjectRef"), ["subjectRef"])
    with op.batch_alter_table("ErasureRequest", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("ErasureRequest", schema=None) as batch_op:
        batch_op.drop_column("attempts")
    with op.batch_alter_table("FileLocation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_FileLocation_subjectRef"))
    op.drop_table("FileLocation")
    op.drop_table("ErasureTombstone")
