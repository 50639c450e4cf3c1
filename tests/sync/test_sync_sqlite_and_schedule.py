"""Sync on SQLite (the embedded default: row triggers, seq from SyncState) through the same
functions the API calls, and the daily compaction job run by a real Dagster instance,
whose records then name no user."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.sync.changelog import Cursor, CursorExpiredError, pull_changes
from assets.sync.defs import compact_sync_log_job
from assets.sync.merge import PushedChange, push_changes
from resources import schema
from resources.database import AppDatabase
from synthetic.seed import seed_database
from tests.gdpr.scan import scan_dagster


def _pull_all(engine, user_id, cursor=None):
    rows, versions = {}, {}
    while True:
        page = pull_changes(engine, user_id, cursor, limit=50)
        for change in page.changes:
            key = (change.table, change.id)
            if change.op == "delete":
                rows.pop(key, None)
            else:
                rows[key], versions[key] = change.row, change.version
        cursor = page.cursor
        if not page.has_more:
            return rows, versions, cursor


def test_pull_and_push_on_sqlite(sqlite_url):
    seed_database(sqlite_url, 2, seed=5, heavy_every=0)
    database = AppDatabase(url=sqlite_url)
    engine = database.engine
    alice = sorted(database.all_user_ids())[0]
    rows, versions, cursor = _pull_all(engine, alice)
    goal_ids = sorted(i for (t, i) in rows if t == "Goal")
    assert len(goal_ids) >= 2 and all(r.get("userId", alice) == alice for r in rows.values())
    first, second = goal_ids[0], goal_ids[1]
    # the app edits one field; the device another, from the older version: merged
    with engine.begin() as conn:
        conn.execute(
            schema.goal.update().where(schema.goal.c.id == first).values(description="app side")
        )
    pushed = push_changes(
        engine,
        alice,
        "sqlite-phone",
        [
            PushedChange("c1", "Goal", first, "upsert", versions[("Goal", first)], {"priority": 1}),
            PushedChange(
                "c2", "Goal", second, "upsert", versions[("Goal", second)], {"priority": 9}
            ),
        ],
    )
    merged, refused = pushed.results
    assert merged["status"] == "merged"
    assert merged["row"]["description"] == "app side" and merged["row"]["priority"] == 1
    assert refused["status"] == "rejected" and refused["error"]["field"] == "priority"
    again = push_changes(
        engine, alice, "sqlite-phone", [PushedChange("c1", "Goal", first, "upsert", 0, {})]
    )
    assert again.results == [merged] and again.job_id is None
    later, later_versions, _ = _pull_all(engine, alice, cursor)
    assert later[("Goal", first)]["priority"] == 1
    assert later_versions[("Goal", first)] == merged["version"]
    assert ("Goal", second) not in later  # the refused change wrote nothing


def test_compaction_job_names_no_user(pg_url):
    seed_database(pg_url, 2, seed=6, heavy_every=0)
    database = AppDatabase(url=pg_url)
    users = database.all_user_ids()
    with database.engine.begin() as conn:
        conn.execute(schema.progress.delete().where(schema.progress.c.userId == users[0]))
        conn.execute(
            schema.sync_tombstone.update().values(
                changedAt=dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
            )
        )
    with dg.instance_for_test() as instance:
        result = compact_sync_log_job.execute_in_process(
            resources={"database": database}, instance=instance
        )
        assert result.success
        assert scan_dagster(instance, users) == []
    with database.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(schema.sync_tombstone)).scalar()
        horizon = conn.execute(sa.select(schema.sync_state.c.purgedThrough)).scalar()
    assert left == 0 and horizon > 0
    # a cursor from before the deletions is past the horizon now; a fresh one is not
    with pytest.raises(CursorExpiredError):
        pull_changes(database.engine, users[0], Cursor(1, 1))
    assert pull_changes(database.engine, users[0], Cursor(horizon, horizon)).changes == []


def test_truncate_leaves_tombstones_and_ids_can_come_back(pg_url):
    """TRUNCATE fires no DELETE trigger: its own trigger turns the table's entries into
    tombstones, so devices learn of it and the same ids can be inserted again."""
    seed_database(pg_url, 2, seed=7, heavy_every=0)
    database = AppDatabase(url=pg_url)
    user_id = database.all_user_ids()[0]
    _, _, cursor = _pull_all(database.engine, user_id)
    with database.engine.begin() as conn:
        before = conn.execute(
            sa.select(schema.progress).where(schema.progress.c.userId == user_id)
        ).all()
        conn.execute(sa.text('TRUNCATE "Progress"'))
        conn.execute(schema.progress.insert(), [dict(r._mapping) for r in before[:1]])
    page = pull_changes(database.engine, user_id, cursor, limit=5000)
    ops = {(c.id, c.op) for c in page.changes if c.table == "Progress"}
    assert {(r.id, "delete") for r in before[1:]} <= ops
    assert (before[0].id, "upsert") in ops and len(before) > 1
