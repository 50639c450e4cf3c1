"""Sync across devices: the change log the app tables' triggers write, the row images
three-way merges read, devices, push receipts and the log's horizon.

- `SyncChange`: ONE row per app row ever written, keyed by (tableName, rowId): its latest
  change (`op` upsert or delete, a tombstone), the user, and `seq` from one sequence,
  re-drawn on every change. `seq` is the row's version and the change feed's order.
- `SyncRowHistory`: a row's image (JSON) as it was at a version, saved by the UPDATE
  trigger from the transition table's old rows: the base a device's push is merged against.
- `SyncDevice`, `SyncPushReceipt` (what a device's change got: a retried push is answered
  from here and applies nothing twice), `SyncState` (`purgedThrough`: the log's horizon).

On PostgreSQL the triggers are statement-level with transition tables (one INSERT ...
SELECT per statement, however many rows), and each takes a transaction-level advisory lock
per user it writes for (a statement for more than 32 users: one bulk lock) before drawing
a `seq`: a pull, which takes both shared, then never sees a user's change in flight, and
never hands out a cursor past a change that commits later.
SQLite serialises writers by itself; its triggers are per row and draw `seq` from
`SyncState.lastSeq`. Existing rows get one upsert entry each (their first version).

The SQLite triggers name the columns of each table (json_object): a later migration that
adds a column to an app table re-creates that table's UPDATE trigger (`sqlite_triggers`).

Revision ID: 0008_sync
Revises: 0007_user_names
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_sync"
down_revision = "0007_user_names"
branch_labels = None
depends_on = None

# The app tables as of this revision (parents first) and their columns, for the triggers.
APP_COLUMNS: dict[str, tuple[str, ...]] = {
    "User": ("id", "email", "firstName", "lastName", "timezone", "createdAt", "updatedAt"),
    "Module": ("id", "userId", "kind", "name", "isActive", "createdAt"),
    "Goal": (
        "id",
        "userId",
        "moduleId",
        "parentGoalId",
        "title",
        "description",
        "priority",
        "difficulty",
        "targetDate",
        "isCompleted",
        "completedAt",
        "createdAt",
        "updatedAt",
    ),
    "Progress": ("id", "userId", "goalId", "value", "maxValue", "notes", "recordedAt"),
    "Achievement": (
        "id",
        "userId",
        "goalId",
        "kind",
        "title",
        "description",
        "points",
        "earnedAt",
    ),
    "UserSetting": ("id", "userId", "key", "value", "updatedAt"),
    "BibleReadingPlan": (
        "id",
        "userId",
        "name",
        "description",
        "startDate",
        "endDate",
        "createdAt",
    ),
    "BibleReading": (
        "id",
        "userId",
        "planId",
        "book",
        "chapter",
        "verseStart",
        "verseEnd",
        "scheduledDate",
        "completedAt",
    ),
    "BibleStudyNote": (
        "id",
        "userId",
        "readingId",
        "book",
        "chapter",
        "verse",
        "title",
        "content",
        "tags",
        "createdAt",
        "updatedAt",
    ),
    "WorkProject": (
        "id",
        "userId",
        "goalId",
        "name",
        "description",
        "status",
        "budget",
        "startDate",
        "dueDate",
        "createdAt",
        "updatedAt",
    ),
    "WorkTask": (
        "id",
        "userId",
        "projectId",
        "title",
        "notes",
        "status",
        "priority",
        "estimateHours",
        "dueAt",
        "completedAt",
        "createdAt",
    ),
}

LOCK_CLASS = 1937  # the advisory-lock key space of sync: (LOCK_CLASS, hashtext(user id))
BULK_LOCK_CLASS, MAX_USER_LOCKS = 1938, 32  # (BULK_LOCK_CLASS, 0): a writer for many users


def _owner(table: str) -> str:
    return "id" if table == "User" else "userId"


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _pg_function(owner: str) -> str:
    name = "goalport_sync_log_by_" + owner.lower()
    # one lock per user written for; a statement writing for more users than that (a bulk
    # load) takes the one bulk lock instead (advisory locks fill the shared lock table)
    lock = (
        f'SELECT array_agg(s.k ORDER BY s.k) INTO hashes FROM (SELECT DISTINCT hashtext("{owner}") '
        "AS k FROM {rows}) s; "
        f"IF cardinality(hashes) > {MAX_USER_LOCKS} THEN "
        f"PERFORM pg_advisory_xact_lock({BULK_LOCK_CLASS}, 0); "
        f"ELSIF hashes IS NOT NULL THEN FOREACH h IN ARRAY hashes LOOP "
        f"PERFORM pg_advisory_xact_lock({LOCK_CLASS}, h); END LOOP; END IF;"
    )
    columns = '"tableName", "rowId", "userId", "changedAt"'
    values = f'TG_TABLE_NAME, id, "{owner}", now()'
    # index lookups, whatever the planner guesses of a transition table's size; TG_TABLE_NAME
    # is a `name` (collation "C"): compared as it is, it would keep the index out
    version_of = (
        'SELECT c.seq FROM "SyncChange" c WHERE '
        'c."tableName" = (TG_TABLE_NAME::text COLLATE "default") AND c."rowId" = o.id'
    )
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  hashes integer[];
  h integer;
BEGIN
  IF TG_OP = 'INSERT' THEN
    {lock.format(rows="new_rows")}
    INSERT INTO "SyncChange" ({columns}) SELECT {values} FROM new_rows;
  ELSIF TG_OP = 'UPDATE' THEN
    {lock.format(rows="new_rows")}
    INSERT INTO "SyncRowHistory" ("tableName", "rowId", version, "userId", image, "savedAt")
      SELECT TG_TABLE_NAME, o.id, c.seq, o."{owner}", to_jsonb(o)::text, now()
      FROM old_rows o CROSS JOIN LATERAL ({version_of}) c ON CONFLICT DO NOTHING;
    INSERT INTO "SyncChange" ({columns}) SELECT {values} FROM new_rows
      ON CONFLICT ("tableName", "rowId") DO UPDATE SET seq = nextval('"SyncChange_seq_seq"'),
      "userId" = EXCLUDED."userId", "changedAt" = EXCLUDED."changedAt";
  ELSE
    {lock.format(rows="old_rows")}
    INSERT INTO "SyncTombstone" (seq, {columns})
      SELECT nextval('"SyncChange_seq_seq"'), {values} FROM old_rows;
    DELETE FROM "SyncChange" c WHERE c."tableName" = (TG_TABLE_NAME::text COLLATE "default")
      AND c."rowId" = ANY(ARRAY(SELECT id FROM old_rows));
  END IF;
  RETURN NULL;
END $$;
"""


# TRUNCATE fires no DELETE trigger: every entry of the table becomes a tombstone at once
_PG_TRUNCATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION goalport_sync_log_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock({BULK_LOCK_CLASS}, 0);
  INSERT INTO "SyncTombstone" (seq, "tableName", "rowId", "userId", "changedAt")
    SELECT nextval('"SyncChange_seq_seq"'), c."tableName", c."rowId", c."userId", now()
    FROM "SyncChange" c WHERE c."tableName" = (TG_TABLE_NAME::text COLLATE "default");
  DELETE FROM "SyncChange" c WHERE c."tableName" = (TG_TABLE_NAME::text COLLATE "default");
  RETURN NULL;
END $$;
"""


def _pg_triggers(table: str) -> list[str]:
    function = "goalport_sync_log_by_" + _owner(table).lower()
    made = []
    for event, referencing in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    ):
        made.append(
            f'CREATE TRIGGER "sync_{table}_{event.lower()}" AFTER {event} ON "{table}" '
            f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        )
    made.append(
        f'CREATE TRIGGER "sync_{table}_truncate" AFTER TRUNCATE ON "{table}" '
        "FOR EACH STATEMENT EXECUTE FUNCTION goalport_sync_log_truncate()"
    )
    return made


def sqlite_triggers(table: str, columns: tuple[str, ...]) -> list[str]:
    """The three row triggers of `table` on SQLite."""
    owner = _owner(table)
    now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    next_seq = 'UPDATE "SyncState" SET "lastSeq" = "lastSeq" + 1;'
    seq = '(SELECT "lastSeq" FROM "SyncState")'
    columns_sql = 'seq, "tableName", "rowId", "userId", "changedAt"'
    upsert = (
        f'{next_seq} INSERT INTO "SyncChange" ({columns_sql}) '
        f"VALUES ({seq}, '{table}', NEW.id, NEW.\"{owner}\", {now}) "
        'ON CONFLICT ("tableName", "rowId") DO UPDATE SET seq = excluded.seq, '
        '"userId" = excluded."userId", "changedAt" = excluded."changedAt";'
    )
    image = "json_object(" + ", ".join(f"'{c}', OLD.\"{c}\"" for c in columns) + ")"
    history = (
        'INSERT OR IGNORE INTO "SyncRowHistory" '
        '("tableName", "rowId", version, "userId", image, "savedAt") '
        f"SELECT '{table}', OLD.id, c.seq, OLD.\"{owner}\", {image}, {now} "
        f'FROM "SyncChange" c WHERE c."tableName" = \'{table}\' AND c."rowId" = OLD.id;'
    )
    tombstone = (
        f'{next_seq} INSERT INTO "SyncTombstone" ({columns_sql}) '
        f"VALUES ({seq}, '{table}', OLD.id, OLD.\"{owner}\", {now}); "
        f'DELETE FROM "SyncChange" WHERE "tableName" = \'{table}\' AND "rowId" = OLD.id;'
    )
    return [
        f'CREATE TRIGGER "sync_{table}_insert" AFTER INSERT ON "{table}" BEGIN {upsert} END',
        f'CREATE TRIGGER "sync_{table}_update" AFTER UPDATE ON "{table}" BEGIN '
        f"{history} {upsert} END",
        f'CREATE TRIGGER "sync_{table}_delete" AFTER DELETE ON "{table}" BEGIN {tombstone} END',
    ]


def upgrade() -> None:
    conn = op.get_bind()
    postgres = conn.dialect.name == "postgresql"
    op.create_table(
        "SyncChange",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tableName", sa.Text(), nullable=False),
        sa.Column("rowId", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        _ts("changedAt"),
        sa.PrimaryKeyConstraint("tableName", "rowId"),
    )
    if postgres:
        op.execute('CREATE SEQUENCE "SyncChange_seq_seq" OWNED BY "SyncChange".seq')
        op.execute(
            'ALTER TABLE "SyncChange" ALTER COLUMN seq SET DEFAULT nextval(\'"SyncChange_seq_seq"\')'
        )
    op.create_index("ix_SyncChange_userId_seq", "SyncChange", ["userId", "seq"])
    op.create_table(
        "SyncTombstone",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tableName", sa.Text(), nullable=False),
        sa.Column("rowId", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        _ts("changedAt"),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_SyncTombstone_userId_seq", "SyncTombstone", ["userId", "seq"])
    op.create_index("ix_SyncTombstone_row", "SyncTombstone", ["tableName", "rowId"])
    op.create_table(
        "SyncRowHistory",
        sa.Column("tableName", sa.Text(), nullable=False),
        sa.Column("rowId", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("image", sa.Text(), nullable=False),
        _ts("savedAt"),
        sa.PrimaryKeyConstraint("tableName", "rowId", "version"),
    )
    op.create_index("ix_SyncRowHistory_userId", "SyncRowHistory", ["userId"])
    op.create_index("ix_SyncRowHistory_savedAt", "SyncRowHistory", ["savedAt"])
    op.create_table(
        "SyncDevice",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("deviceId", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("lastCursor", sa.BigInteger(), nullable=True),
        _ts("createdAt"),
        _ts("lastSeenAt"),
        _ts("revokedAt", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("userId", "deviceId"),
    )
    op.create_table(
        "SyncPushReceipt",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("userId", sa.Text(), nullable=False),
        sa.Column("deviceId", sa.Text(), nullable=False),
        sa.Column("changeId", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        _ts("createdAt"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("userId", "deviceId", "changeId"),
    )
    op.create_index("ix_SyncPushReceipt_createdAt", "SyncPushReceipt", ["createdAt"])
    op.create_table(
        "SyncState",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("purgedThrough", sa.BigInteger(), nullable=False),
        sa.Column("lastSeq", sa.BigInteger(), nullable=False),  # SQLite's seq counter
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute('INSERT INTO "SyncState" (id, "purgedThrough", "lastSeq") VALUES (1, 0, 0)')

    # every existing row: its first version
    for table in APP_COLUMNS:
        if postgres:
            op.execute(
                'INSERT INTO "SyncChange" ("tableName", "rowId", "userId", "changedAt") '
                f'SELECT \'{table}\', id, "{_owner(table)}", now() FROM "{table}"'
            )
        else:
            op.execute(
                'INSERT INTO "SyncChange" (seq, "tableName", "rowId", "userId", "changedAt") '
                f'SELECT (SELECT "lastSeq" FROM "SyncState") + row_number() OVER (), \'{table}\', '
                f"id, \"{_owner(table)}\", strftime('%Y-%m-%d %H:%M:%f', 'now') "
                f'FROM "{table}"'
            )
            op.execute(
                'UPDATE "SyncState" SET "lastSeq" = '
                '(SELECT coalesce(max(seq), 0) FROM "SyncChange")'
            )
    if postgres:
        op.execute(_pg_function("userId"))
        op.execute(_pg_function("id"))
        op.execute(_PG_TRUNCATE_FUNCTION)
    for table, columns in APP_COLUMNS.items():
        for statement in _pg_triggers(table) if postgres else sqlite_triggers(table, columns):
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in APP_COLUMNS:
        for event in ("insert", "update", "delete", "truncate"):
            on = f' ON "{table}"' if postgres else ""
            op.execute(f'DROP TRIGGER IF EXISTS "sync_{table}_{event}"{on}')
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS goalport_sync_log_by_userid()")
        op.execute("DROP FUNCTION IF EXISTS goalport_sync_log_by_id()")
        op.execute("DROP FUNCTION IF EXISTS goalport_sync_log_truncate()")
    op.drop_table("SyncState")
    op.drop_index("ix_SyncPushReceipt_createdAt", table_name="SyncPushReceipt")
    op.drop_table("SyncPushReceipt")
    op.drop_table("SyncDevice")
    op.drop_index("ix_SyncRowHistory_savedAt", table_name="SyncRowHistory")
    op.drop_index("ix_SyncRowHistory_userId", table_name="SyncRowHistory")
    op.drop_table("SyncRowHistory")
    op.drop_index("ix_SyncTombstone_row", table_name="SyncTombstone")
    op.drop_index("ix_SyncTombstone_userId_seq", table_name="SyncTombstone")
    op.drop_table("SyncTombstone")
    op.drop_index("ix_SyncChange_userId_seq", table_name="SyncChange")
    op.drop_table("SyncChange")
