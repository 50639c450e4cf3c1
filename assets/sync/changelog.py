"""The change log the app tables' triggers write (migration 0008_sync), read as a change feed.

**What the log holds.** `SyncChange` has one entry per live app row: its latest change,
whose `seq` (one sequence for every table) is the row's version, re-drawn by every INSERT
or UPDATE, whoever makes it (the app, an import, a sync push). A DELETE moves the entry to
`SyncTombstone` with a new `seq`. The UPDATE trigger keeps the row's image at the version
it leaves (`SyncRowHistory`), the base a three-way merge needs. Versions live in the log,
not in a column of the app tables: a column would appear in every export format, schema,
golden file and import, and the app would have to maintain it.

**Order without gaps.** Every writer of a user's rows takes that user's advisory lock (the
triggers; `lock_user` for a push), exclusive, before it draws a `seq` (a statement writing
for more than 32 users takes one bulk lock instead), and a pull takes both shared. So while a pull reads, no change of that user is in flight: every `seq` of theirs
up to the sequence's current value is committed and visible, and any later one will be
larger. The cursor can therefore move up to that value even when the user changed nothing.

**The cursor** is URL-safe text holding (position, base): the page has delivered the
user's entries up to `position`; `base` is where the device's last complete pull ended (0
for an initial sync, which sends no tombstones). A pull that reaches the end returns
(high-water mark, high-water mark).

**Horizon.** `compact_change_log` deletes tombstones, row images and push receipts older
than the retention (GOALPORT_SYNC_RETENTION_DAYS, 30) and records the newest tombstone
`seq` it dropped as `SyncState.purgedThrough`. A device whose base is below it may have missed a
deletion: its pull gets `CursorExpiredError` (HTTP 410) and it starts again without a
cursor. Live rows keep their entries forever (one per row), so an initial sync is always
possible.

**Parents before children.** Within a page, deletes come first (children before parents),
then upserts (parents before children: table order, and goals above their sub-goals). A row
whose parent has a newer version not yet delivered pulls that parent into the page too.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from assets.imports.bulk_sql import in_ids
from assets.imports.staging import REFERENCES_FROM
from assets.sync.rows import SYNC_TABLES, app_table, encode_row, stored_row
from resources import schema
from resources.audit import utc_now

LOCK_CLASS = 1937  # as migration 0008_sync's triggers: (LOCK_CLASS, hashtext(user id))
BULK_LOCK_CLASS = 1938  # (BULK_LOCK_CLASS, 0): the triggers' lock for a many-user statement
DEFAULT_PAGE = 500
MAX_PAGE = 5000
TABLE_ORDER = {name: i for i, name in enumerate(SYNC_TABLES)}
changes = schema.sync_change
tombstones = schema.sync_tombstone
state = schema.sync_state


class CursorError(ValueError):
    """The cursor is not one this server made."""


class CursorExpiredError(RuntimeError):
    """The cursor is older than the retained log: the device must sync from scratch."""


@dataclass(frozen=True)
class Cursor:
    position: int
    base: int

    def encode(self) -> str:
        text = f"v1.{self.position}.{self.base}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            version, position, base = raw.split(".")
            if version != "v1":
                raise ValueError(version)
            cursor = cls(int(position), int(base))
        except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
            raise CursorError("this cursor is not valid") from exc
        if cursor.position < 0 or cursor.base < 0 or cursor.base > cursor.position:
            raise CursorError("this cursor is not valid")
        return cursor


@dataclass
class Change:
    table: str
    id: str
    op: str  # upsert, delete
    version: int
    row: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "id": self.id,
            "op": self.op,
            "row": self.row,
            "version": self.version,
        }


@dataclass
class Page:
    changes: list[Change] = field(default_factory=list)
    cursor: Cursor = Cursor(0, 0)
    has_more: bool = False


def lock_user(conn: sa.Connection, user_id: str, *, shared: bool = False) -> None:
    """The user's sync lock for the rest of the transaction (PostgreSQL; SQLite serialises
    writers by itself): exclusive for a writer, shared for a reader."""
    if conn.dialect.name != "postgresql":
        return
    if shared:  # no writer of theirs in flight: one for them alone, or a bulk writer
        conn.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock_shared(:cls, hashtext(:user)), "
                "pg_advisory_xact_lock_shared(:bulk, 0)"
            ),
            {"cls": LOCK_CLASS, "user": user_id, "bulk": BULK_LOCK_CLASS},
        )
        return
    conn.execute(
        sa.text("SELECT pg_advisory_xact_lock(:cls, hashtext(:user))"),
        {"cls": LOCK_CLASS, "user": user_id},
    )


def high_water_mark(conn: sa.Connection) -> int:
    """The newest `seq` drawn so far (with the user's lock held: every one of theirs up to
    it is committed)."""
    if conn.dialect.name == "postgresql":
        return int(
            conn.execute(sa.text('SELECT last_value FROM "SyncChange_seq_seq"')).scalar() or 0
        )
    return int(conn.execute(sa.select(state.c.lastSeq)).scalar() or 0)


def purged_through(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(state.c.purgedThrough)).scalar() or 0)


def row_version(conn: sa.Connection, table: str, row_id: str) -> int | None:
    return conn.execute(
        sa.select(changes.c.seq).where(changes.c.tableName == table, changes.c.rowId == row_id)
    ).scalar()


def deleted_version(conn: sa.Connection, user_id: str, table: str, row_id: str) -> int | None:
    """The seq of the user's row's latest tombstone still in the log, if any."""
    return conn.execute(
        sa.select(sa.func.max(tombstones.c.seq)).where(
            tombstones.c.tableName == table,
            tombstones.c.rowId == row_id,
            tombstones.c.userId == user_id,
        )
    ).scalar()


def _versions(conn: sa.Connection, keys: list[tuple[str, Any]]) -> dict[tuple[str, Any], int]:
    """The versions of these (table, row id)s, one query per table."""
    by_table: dict[str, list[str]] = {}
    for table, row_id in keys:
        by_table.setdefault(table, []).append(row_id)
    found = {}
    for table, ids in by_table.items():
        for clause in in_ids(conn, changes.c.rowId, ids):
            query = sa.select(changes.c.rowId, changes.c.seq).where(
                changes.c.tableName == table, clause
            )
            found.update({(table, row_id): seq for row_id, seq in conn.execute(query)})
    return found


def read_rows(conn: sa.Connection, table: str, ids: list[str], user_id: str) -> dict[str, dict]:
    """The user's rows of `table` with these ids, by id (stored values)."""
    t = app_table(table)
    owner = t.c[schema.owner_column(table)]
    found: dict[str, dict] = {}
    for clause in in_ids(conn, t.c.id, ids):
        for row in conn.execute(sa.select(t).where(clause, owner == user_id)).mappings():
            found[row["id"]] = stored_row(row)
    return found


def pull_changes(
    engine: sa.Engine, user_id: str, cursor: Cursor | None, limit: int = DEFAULT_PAGE
) -> Page:
    """The user's changes after `cursor` (None: the whole account), one page."""
    with engine.begin() as conn:
        return pull_page(conn, user_id, cursor, limit)


def pull_page(conn: sa.Connection, user_id: str, cursor: Cursor | None, limit: int) -> Page:
    """`pull_changes` in the caller's transaction (which it locks for the user, shared)."""
    lock_user(conn, user_id, shared=True)
    if cursor is not None and cursor.base and cursor.base < purged_through(conn):
        raise CursorExpiredError(
            "this cursor is older than the retained change log: sync again without a cursor"
        )
    hwm = high_water_mark(conn)
    after = cursor.position if cursor else 0
    base = cursor.base if cursor else 0
    entries = log_entries(conn, user_id, after, limit + 1, tombstones_too=cursor is not None)
    has_more = len(entries) > limit
    entries = entries[:limit]
    position = entries[-1][0] if entries else after
    page = Page(has_more=has_more)
    page.cursor = Cursor(position, base) if has_more else Cursor(max(hwm, after), max(hwm, after))
    page.changes = _page_changes(conn, user_id, entries, position)
    return page


def log_entries(
    conn: sa.Connection, user_id: str, after: int, limit: int, *, tombstones_too: bool
) -> list[tuple[int, str, str, str]]:
    """(seq, table, row id, op) of the user's log after `after`, oldest first."""
    live = sa.select(
        changes.c.seq, changes.c.tableName, changes.c.rowId, sa.literal("upsert").label("op")
    ).where(changes.c.userId == user_id, changes.c.seq > after)
    query: sa.Select | sa.CompoundSelect = live
    if tombstones_too:
        gone = sa.select(
            tombstones.c.seq,
            tombstones.c.tableName,
            tombstones.c.rowId,
            sa.literal("delete").label("op"),
        ).where(tombstones.c.userId == user_id, tombstones.c.seq > after)
        query = sa.union_all(live, gone)
    ordered = query.order_by(sa.literal_column("seq")).limit(limit)
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(ordered)]


def _page_changes(conn: sa.Connection, user_id: str, entries: list, position: int) -> list[Change]:
    upserts: dict[tuple[str, str], int] = {}
    deletes: dict[tuple[str, str], int] = {}
    for seq, table, row_id, op in entries:
        (upserts if op == "upsert" else deletes)[(table, row_id)] = seq
    rows: dict[tuple[str, str], dict] = {}
    wanted: dict[tuple[str, Any], int] = dict(upserts)
    while wanted:
        by_table: dict[str, list[str]] = {}
        for table, row_id in wanted:
            by_table.setdefault(table, []).append(row_id)
        parents: dict[tuple[str, Any], int] = {}
        for table, ids in by_table.items():
            for row_id, row in read_rows(conn, table, ids, user_id).items():
                rows[(table, row_id)] = row
                for ref in REFERENCES_FROM.get(table, ()):
                    target = row.get(ref.column)
                    key = (ref.target, target)
                    if target is not None and key not in upserts and key not in parents:
                        parents[key] = 0
        # a parent with a newer version than this page delivers comes along
        wanted = {}
        for key, version in _versions(conn, list(parents)).items():
            if version > position:
                upserts[key] = version
                wanted[key] = version
    found = [
        Change(table, row_id, "upsert", version, encode_row(rows[(table, row_id)]))
        for (table, row_id), version in upserts.items()
        if (table, row_id) in rows  # gone meanwhile: its tombstone follows
    ]
    gone = [Change(t, i, "delete", v) for (t, i), v in deletes.items() if (t, i) not in upserts]
    gone.sort(key=lambda c: (-TABLE_ORDER.get(c.table, 0), c.version))
    return gone + parents_first(found)


def parents_first(found: list[Change]) -> list[Change]:
    """Upserts in table order; goals after the goal above them (when it is in the list)."""
    found.sort(key=lambda c: (TABLE_ORDER.get(c.table, 0), c.version))
    goals = [c for c in found if c.table == "Goal"]
    if len(goals) < 2:
        return found
    by_id = {c.id: c for c in goals}
    depth: dict[str, int] = {}

    def depth_of(goal_id: str) -> int:
        seen: list[str] = []
        current: str | None = goal_id
        while current in by_id and current not in depth and current not in seen:
            seen.append(current)
            current = (by_id[current].row or {}).get("parentGoalId")
        level = depth.get(current, -1) if current is not None else -1
        for node in reversed(seen):
            level += 1
            depth[node] = level
        return depth[goal_id]

    ordered_goals = sorted(goals, key=lambda c: (depth_of(c.id), c.version))
    start = found.index(goals[0])
    others = [c for c in found if c.table != "Goal"]
    return others[:start] + ordered_goals + others[start:]


# ---------------------------------------------------------------- compaction


@dataclass
class Compaction:
    purged_through: int
    tombstones_deleted: int
    images_deleted: int
    receipts_deleted: int


def compact_change_log(
    engine: sa.Engine, retention: dt.timedelta, now: dt.datetime | None = None
) -> Compaction:
    """Drop tombstones, row images and push receipts older than `retention`, and move the
    horizon (`purgedThrough`) to the newest seq that may have gone with them."""
    cutoff = (now or utc_now()) - retention
    history, receipts = schema.sync_row_history, schema.sync_push_receipt
    with engine.begin() as conn:
        # only a dropped tombstone can make a device miss something; a dropped image makes
        # a merge against that base treat every field the device changed as a conflict
        horizon = (
            conn.execute(
                sa.select(sa.func.max(tombstones.c.seq)).where(tombstones.c.changedAt < cutoff)
            ).scalar()
            or 0
        )
        gone = conn.execute(tombstones.delete().where(tombstones.c.seq <= horizon)).rowcount
        images = conn.execute(history.delete().where(history.c.savedAt < cutoff)).rowcount
        old_receipts = conn.execute(receipts.delete().where(receipts.c.createdAt < cutoff)).rowcount
        current = purged_through(conn)
        if horizon > current:
            moved = conn.execute(
                state.update().where(state.c.id == 1).values(purgedThrough=horizon)
            ).rowcount
            if not moved:  # the row was truncated away with the tables
                conn.execute(
                    state.insert().values(
                        id=1, purgedThrough=horizon, lastSeq=high_water_mark(conn)
                    )
                )
    return Compaction(max(horizon, current), gone, images, old_receipts)
