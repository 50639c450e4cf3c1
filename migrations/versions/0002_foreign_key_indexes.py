"""Index every foreign-key column: deleting a goal (erasure, replace imports) must find its
children and progress by index, not by scanning the whole table once per deleted row.

Revision ID: 0002_foreign_key_indexes
Revises: 0001_initial
"""

from __future__ import annotations

from alembic import op

revision = "0002_foreign_key_indexes"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

FOREIGN_KEY_COLUMNS = [
    ("Goal", "parentGoalId"),
    ("Goal", "moduleId"),
    ("Progress", "goalId"),
    ("Achievement", "goalId"),
    ("BibleReading", "planId"),
    ("BibleStudyNote", "readingId"),
    ("WorkProject", "goalId"),
    ("WorkTask", "projectId"),
]


def upgrade() -> None:
    for table, column in FOREIGN_KEY_COLUMNS:
        op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table, column in FOREIGN_KEY_COLUMNS:
        op.drop_index(f"ix_{table}_{column}", table_name=table)
