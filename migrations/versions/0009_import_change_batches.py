"""ImportChange: one record per batch of changed rows.

An import's apply records its changes a batch at a time (assets/imports/change_journal.py):
`rowIds` holds the batch's row ids as a JSON array, `rowCount` how many, and `before` /
`after` the rows as JSON arrays in the same order; `rowId` is left empty. Records written
before keep their one row each (`rowId`, `rowCount` 1) and are read alike. Downgrade spreads
each batch back into one record per row. On PostgreSQL built with lz4, the JSON columns
are compressed with lz4.

Revision ID: 0009_import_change_batches
Revises: 0009_export_encryption
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0009_import_change_batches"
down_revision = "0009_export_encryption"
branch_labels = None
depends_on = None

_COLUMNS = ("id", "importJobId", "userId", "tableName", "rowId", "rowIds", "action")


def upgrade() -> None:
    with op.batch_alter_table("ImportChange") as batch:
        batch.add_column(sa.Column("rowIds", sa.Text(), nullable=True))
        batch.add_column(sa.Column("rowCount", sa.Integer(), nullable=False, server_default="1"))
        batch.alter_column("rowId", existing_type=sa.Text(), nullable=True)
    _compress_json_with("lz4")


_JSON_COLUMNS = ("rowIds", "before", "after")


def _compress_json_with(method: str) -> None:
    """On PostgreSQL built with lz4, the journal's JSON is compressed with it: a batch is
    megabytes of JSON, and the default (pglz) took as much of the server's time as
    writing the rows themselves (0.4 s for 50,000 rows; lz4 0.1 s)."""
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    methods = conn.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    if method != "default" and method not in (methods or []):
        return
    for column in _JSON_COLUMNS:
        op.execute(f'ALTER TABLE "ImportChange" ALTER COLUMN "{column}" SET COMPRESSION {method}')


def downgrade() -> None:
    changes = sa.table(
        "ImportChange",
        *(sa.column(c, sa.Text) for c in (*_COLUMNS, "before", "after")),
        sa.column("createdAt", sa.DateTime(timezone=True)),
    )
    conn = op.get_bind()
    batches = conn.execute(sa.select(changes).where(changes.c.rowIds.is_not(None))).all()
    for record in batches:
        ids = orjson.loads(record.rowIds)
        befores = orjson.loads(record.before) if record.before is not None else [None] * len(ids)
        afters = orjson.loads(record.after) if record.after is not None else [None] * len(ids)
        conn.execute(changes.delete().where(changes.c.id == record.id))
        if not ids:
            continue
        conn.execute(
            changes.insert(),
            [
                {
                    "id": f"{record.id}_{n:05d}",
                    "importJobId": record.importJobId,
                    "userId": record.userId,
                    "tableName": record.tableName,
                    "rowId": row_id,
                    "rowIds": None,
                    "action": record.action,
                    "before": _text(before),
                    "after": _text(after),
                    "createdAt": record.createdAt,
                }
                for n, (row_id, before, after) in enumerate(zip(ids, befores, afters, strict=True))
            ],
        )
    _compress_json_with("default")
    with op.batch_alter_table("ImportChange") as batch:
        batch.alter_column("rowId", existing_type=sa.Text(), nullable=False)
        batch.drop_column("rowCount")
        batch.drop_column("rowIds")


def _text(row: dict | None) -> str | None:
    return None if row is None else orjson.dumps(row).decode()  # as row_json writes it
