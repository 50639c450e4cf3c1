"""User: `name` becomes the app's `firstName` and `lastName`.

An existing name splits at its first run of whitespace: the first word is the first name,
the rest (if any) the last name; a one-word name stays whole as the first name, an empty
one becomes no name. Downgrade joins them again with one space.

Revision ID: 0007_user_names
Revises: 0006_claim_heartbeats
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_user_names"
down_revision = "0006_claim_heartbeats"
branch_labels = None
depends_on = None

_BATCH = 5_000


def split_name(name: str | None) -> tuple[str | None, str | None]:
    """(first name, last name) of a single name; the same rule as the export readers'."""
    words = (name or "").split(None, 1)
    if not words:
        return None, None
    return words[0], (words[1].strip() or None) if len(words) > 1 else None


def _user_table(*columns: str) -> sa.TableClause:
    return sa.table("User", *(sa.column(c, sa.Text) for c in columns))


def upgrade() -> None:
    with op.batch_alter_table("User") as batch:
        batch.add_column(sa.Column("firstName", sa.Text(), nullable=True))
        batch.add_column(sa.Column("lastName", sa.Text(), nullable=True))
    conn = op.get_bind()
    users = _user_table("id", "name", "firstName", "lastName")
    update = (
        users.update()
        .where(users.c.id == sa.bindparam("user_id"))
        .values(firstName=sa.bindparam("first"), lastName=sa.bindparam("last"))
    )
    named = conn.execute(sa.select(users.c.id, users.c.name).where(users.c.name.is_not(None)))
    params = []
    for user_id, name in named.all():
        first, last = split_name(name)
        params.append({"user_id": user_id, "first": first, "last": last})
    for start in range(0, len(params), _BATCH):
        conn.execute(update, params[start : start + _BATCH])
    with op.batch_alter_table("User") as batch:
        batch.drop_column("name")


def downgrade() -> None:
    with op.batch_alter_table("User") as batch:
        batch.add_column(sa.Column("name", sa.Text(), nullable=True))
    users = _user_table("name", "firstName", "lastName")
    joined = sa.func.trim(
        sa.func.coalesce(users.c.firstName, "") + " " + sa.func.coalesce(users.c.lastName, "")
    )
    op.get_bind().execute(users.update().values(name=sa.func.nullif(joined, "")))
    with op.batch_alter_table("User") as batch:
        batch.drop_column("firstName")
        batch.drop_column("lastName")
