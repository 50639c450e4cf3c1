"""Users' own backup destinations: their credentials, wrapped under the master key.

Revision ID: 0011_backup_destinations
Revises: 0010_webhook_next_attempt
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_backup_destinations"
down_revision = "0010_webhook_next_attempt"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "DestinationCredential",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("subjectRef", sa.Text(), nullable=False),
        sa.Column("destinationUrl", sa.Text(), nullable=False),
        sa.Column("wrappedSecrets", sa.LargeBinary(), nullable=False),
        sa.Column("masterKeyId", sa.Text(), nullable=False),
        sa.Column("createdAt", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updatedAt", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subjectRef", "destinationUrl", name="uq_DestinationCredential_place"),
    )
    with op.batch_alter_table("DestinationCredential", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_DestinationCredential_subjectRef"), ["subjectRef"])


def downgrade() -> None:
    with op.batch_alter_table("DestinationCredential", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_DestinationCredential_subjectRef"))
    op.drop_table("DestinationCredential")
