"""A heartbeat on each claimed export row: the claimant (a Dagster run, `goalport exports
process`) renews it while it works, and the next claimer requeues rows whose heartbeat
stopped (their worker died).

Revision ID: 0006_claim_heartbeats
Revises: 0004_api_tokens
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_claim_heartbeats"
down_revision = "0004_api_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("DataExportJob") as batch:
        batch.add_column(sa.Column("heartbeatAt", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("DataExportJob") as batch:
        batch.drop_column("heartbeatAt")
