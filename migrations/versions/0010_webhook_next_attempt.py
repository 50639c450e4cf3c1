"""NotificationOutbox: `nextAttemptAt`, when a notification's next delivery attempt is due.

Back-off was counted from the queued time; it is now counted from each failed attempt and
stored, and the delivery sensor picks due rows by an index on (status, nextAttemptAt).
Existing rows take their queued time: a pending one is due at the first delivery run after
the upgrade. A row inserted without the column is due at once (server default: now).

Revision ID: 0010_webhook_next_attempt
Revises: 0009_import_change_batches
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_webhook_next_attempt"
down_revision = "0009_import_change_batches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("NotificationOutbox") as batch:
        batch.add_column(sa.Column("nextAttemptAt", sa.DateTime(timezone=True), nullable=True))
    outbox = sa.table(
        "NotificationOutbox",
        sa.column("createdAt", sa.DateTime(timezone=True)),
        sa.column("nextAttemptAt", sa.DateTime(timezone=True)),
    )
    op.get_bind().execute(outbox.update().values(nextAttemptAt=outbox.c.createdAt))
    with op.batch_alter_table("NotificationOutbox") as batch:
        batch.alter_column(
            "nextAttemptAt",
            existing_type=sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP"),
        )
        batch.create_index("ix_NotificationOutbox_due", ["status", "nextAttemptAt"])


def downgrade() -> None:
    with op.batch_alter_table("NotificationOutbox") as batch:
        batch.drop_index("ix_NotificationOutbox_due")
        batch.drop_column("nextAttemptAt")
