"""Applying and undoing imports on a real PostgreSQL database: one transaction or nothing
(a failure injected mid-apply, a `kill -9` of the applying process), undo back to the state
before the import (and refused when rows changed since), stale previews refused, rows of
another user refused, replace within modules with the database's cascades made explicit,
append, imports from other apps through ExternalRef, and the embedded SQLite default."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from import_support import (
    corrupt_user_rows,
    dump,
    erase_user_rows,
    export_user,
    import_file,
    populate,
)

from assets.imports.apply import apply_import
from assets.imports.change_journal import change_counts
from assets.imports.jobs import (
    ImportJobError,
    StalePreviewError,
    create_import_job,
    get_import_job,
)
from assets.imports.preview import preview_import
from assets.imports.undo import UndoRefusedError, undo_import
from resources import schema
from resources.database import AppDatabase

REPO = Path(__file__).resolve().parents[2]
TRELLO = REPO / "tests" / "imports" / "fixtures" / "trello" / "board.json"


@pytest.fixture
def damaged(database):
    """Three seeded users; the first one's data corrupted after an export was taken."""
    users = sorted(populate(database.engine, 3, 41))
    user_id = users[0]
    before = dump(database.engine)
    exported = export_user(database, user_id, "json")
    corrupt_user_rows(database.engine, user_id, touch_updated_at=False)
    return user_id, exported, before, dump(database.engine)


def previewed_job(database, storage, user_id, data, **options) -> str:
    job_id = create_import_job(
        database.engine,
        user_id=user_id,
        file_name="export.json",
        mode=options.pop("mode", "replace"),
        conflict_policy=options.pop("policy", "take-incoming"),
        modules=options.pop("modules", None),
    )
    preview_import(database, storage, job_id, data, **options)
    return job_id


def test_failure_in_the_middle_of_apply_changes_nothing(database, storage, damaged):
    user_id, exported, before, corrupted = damaged
    job_id = previewed_job(database, storage, user_id, exported)
    for fail_after in (1, 3, 6, 9):
        calls = []

        def explode(number, what, fail_after=fail_after, calls=calls):
            calls.append(what)
            if number == fail_after:
                raise RuntimeError(f"injected failure after {what}")

        with pytest.raises(RuntimeError, match="injected failure"):
            apply_import(database, storage, job_id, on_statement=explode)
        assert len(calls) == fail_after
        assert dump(database.engine) == corrupted
        assert get_import_job(database.engine, job_id)["status"] == "previewed"
        with database.engine.connect() as conn:
            changes = conn.execute(sa.select(sa.func.count()).select_from(schema.import_change))
            assert changes.scalar() == 0
    # the plan is still there and applies cleanly afterwards
    apply_import(database, storage, job_id)
    assert dump(database.engine) == before


@pytest.mark.slow
def test_kill_9_while_applying_changes_nothing(database, storage, damaged, tmp_path, pg_url):
    user_id, exported, before, corrupted = damaged
    job_id = previewed_job(database, storage, user_id, exported)
    marker = tmp_path / "holding-the-transaction"
    script = f"""
import time
from assets.imports.apply import apply_import
from resources.database import AppDatabase
from resources.storage import ObjectStorage

def stop_here(number, what):
    if number == 3:
        open({str(marker)!r}, "w").write(what)
        time.sleep(300)

apply_import(AppDatabase(url={pg_url!r}), ObjectStorage(url={storage.url!r}), {job_id!r},
             on_statement=stop_here)
"""
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert process.poll() is None, "the applying process ended early"
            assert time.monotonic() < deadline, "the applying process never got going"
            time.sleep(0.1)
        database_name = sa.make_url(pg_url).database
        with database.engine.connect() as conn:
            holding = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :d "
                    "AND state = 'idle in transaction' AND backend_xid IS NOT NULL"
                ),
                {"d": database_name},
            ).scalar()
        assert holding == 1, "the apply should be inside its write transaction"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert dump(database.engine) == corrupted
    assert get_import_job(database.engine, job_id)["status"] == "previewed"
    apply_import(database, storage, job_id)
    assert dump(database.engine) == before


def test_undo_restores_the_state_before_the_import(database, storage, damaged):
    user_id, exported, before, corrupted = damaged
    job_id = previewed_job(database, storage, user_id, exported)
    apply_import(database, storage, job_id)
    assert dump(database.engine) == before
    with database.engine.connect() as conn:
        assert change_counts(conn, job_id) == {"create": 5, "update": 4, "delete": 1}
    undo_import(database, job_id)
    assert dump(database.engine) == corrupted
    assert get_import_job(database.engine, job_id)["status"] == "undone"
    with pytest.raises(ImportJobError, match="undone"):
        undo_import(database, job_id)


def test_undo_refuses_when_rows_changed_after_the_import(database, storage, damaged):
    user_id, exported, before, _ = damaged
    job_id = previewed_job(database, storage, user_id, exported)
    apply_import(database, storage, job_id)
    changed = json.loads(get_import_job(database.engine, job_id)["previewData"])
    goal_id = next(e["id"] for e in changed["changes"]["Goal"] if e["action"] == "update")
    with database.engine.begin() as conn:
        conn.execute(
            schema.goal.update().where(schema.goal.c.id == goal_id).values(title="edited later")
        )
    edited = dump(database.engine)
    with pytest.raises(UndoRefusedError, match=f"Goal {goal_id} was changed after the import"):
        undo_import(database, job_id)
    assert dump(database.engine) == edited
    assert get_import_job(database.engine, job_id)["status"] == "applied"


def test_undo_refuses_when_rows_were_added_under_imported_rows(database, storage):
    user_id = sorted(populate(database.engine, 2, 43))[0]
    exported = export_user(database, user_id, "json")
    erase_user_rows(database.engine, user_id, keep_account=True)
    job_id, _ = import_file(database, storage, user_id, exported)
    with database.engine.begin() as conn:
        goal_id = conn.execute(
            sa.select(schema.goal.c.id).where(schema.goal.c.userId == user_id).limit(1)
        ).scalar()
        conn.execute(
            schema.progress.insert().values(
                id="cprogressaddedlater000001",
                userId=user_id,
                goalId=goal_id,
                value=1,
                recordedAt=sa.func.now(),
            )
        )
    with pytest.raises(UndoRefusedError, match="added after the import"):
        undo_import(database, job_id)


def test_apply_refuses_when_the_data_changed_after_the_preview(database, storage, damaged):
    user_id, exported, _, _ = damaged
    job_id = previewed_job(database, storage, user_id, exported)
    with database.engine.begin() as conn:
        conn.execute(
            schema.user.update()
            .where(schema.user.c.id == user_id)
            .values(firstName="Moved", lastName="on")
        )
    moved = dump(database.engine)
    with pytest.raises(StalePreviewError, match="changed after the preview"):
        apply_import(database, storage, job_id)
    assert dump(database.engine) == moved
    assert get_import_job(database.engine, job_id)["status"] == "stale"


def test_conflict_policies(database, storage):
    user_id = sorted(populate(database.engine, 2, 44))[0]
    exported = export_user(database, user_id, "json")
    corrupt_user_rows(database.engine, user_id, touch_updated_at=True)
    corrupted = dump(database.engine)

    job_id = previewed_job(database, storage, user_id, exported, mode="merge", policy="fail")
    job = get_import_job(database.engine, job_id)
    assert job["conflictsDetected"] == 3
    preview = json.loads(job["previewData"])
    assert {c["resolution"] for c in preview["conflicts"]} == {"unresolved"}
    assert preview["conflicts"][0]["fields"]["title"][0] == "corrupted"
    with pytest.raises(ImportJobError, match="3 rows are in conflict"):
        apply_import(database, storage, job_id)
    assert dump(database.engine) == corrupted

    for policy in ("keep-existing", "newest-wins"):
        _, plan = import_file(database, storage, user_id, exported, policy=policy, apply=False)
        assert plan.totals()["conflict"] == 3
        # the database's edits are newer than the file's rows: both policies keep them
        assert plan.tables["Goal"].updates.num_rows == 0
        assert {c["resolution"] for c in plan.conflicts} == {"keep-existing"}


def test_rows_of_another_user_are_refused(database, storage):
    owner, other = sorted(populate(database.engine, 2, 45))
    before = dump(database.engine)
    exported = export_user(database, owner, "json")
    _, plan = import_file(database, storage, other, exported, apply=False)
    assert plan.totals()["create"] == 0
    # rows keep their ids, and those ids are the owner's: refused, never moved
    refused_tables = {r["table"] for r in plan.refused}
    assert {"Goal", "Progress", "Module"} <= refused_tables
    assert all("belongs to another user" in r["reason"] for r in plan.refused)
    assert any("account details" in w for w in plan.warnings)
    # settings are one per (user, key): the file's preferences land on the user's own rows
    assert {n for n, p in plan.tables.items() if p.writes} <= {"UserSetting"}
    job_id = create_import_job(database.engine, user_id=other, file_name="x.json")
    preview_import(database, storage, job_id, exported)
    apply_import(database, storage, job_id)
    after = dump(database.engine)
    for name, rows in before.items():
        if name != "UserSetting":
            assert after[name] == rows, name
    owner_column = [c.name for c in schema.user_setting.columns].index("userId")
    assert [r for r in after["UserSetting"] if r[owner_column] == owner] == [
        r for r in before["UserSetting"] if r[owner_column] == owner
    ]


def test_replace_within_modules_and_append(database, storage):
    user_id = sorted(populate(database.engine, 2, 46))[0]
    exported = export_user(database, user_id, "json")
    engine = database.engine
    with engine.begin() as conn:
        extra = {
            "userId": user_id,
            "name": "Extra plan",
            "startDate": "2026-01-01",
            "createdAt": sa.func.now(),
        }
        conn.execute(
            schema.bible_reading_plan.insert().values(id="cextraplan00000000000000x", **extra)
        )
        conn.execute(
            schema.bible_reading.insert().values(
                id="cextrareading00000000000x",
                userId=user_id,
                planId="cextraplan00000000000000x",
                book="Ruth",
                chapter=1,
            )
        )
        conn.execute(
            schema.goal.update()
            .where(schema.goal.c.userId == user_id)
            .values(description="changed")
        )
    changed = dump(engine)
    _, plan = import_file(database, storage, user_id, exported, mode="replace", modules=["bible"])
    after = dump(engine)
    assert plan.counts["BibleReadingPlan"]["delete"] == 1
    assert plan.counts["BibleReading"]["delete"] == 1  # the cascade, explicit in the plan
    assert plan.counts["Goal"]["update"] == 0  # goals are outside the chosen modules
    assert "cextraplan00000000000000x" not in {r[0] for r in after["BibleReadingPlan"]}
    assert after["Goal"] == changed["Goal"]

    counts_before = {n: len(rows) for n, rows in after.items()}
    _, plan = import_file(database, storage, user_id, exported, mode="append")
    appended = dump(engine)
    assert plan.totals()["update"] == plan.totals()["delete"] == 0
    assert len(appended["Goal"]) == 2 * counts_before["Goal"] - sum(
        1 for r in after["Goal"] if r[1] != user_id
    )
    assert len(appended["UserSetting"]) == counts_before["UserSetting"]


def test_other_apps_import_updates_in_place_on_reimport(database, storage):
    user_id = sorted(populate(database.engine, 1, 47))[0]
    board = TRELLO.read_bytes()
    _, first = import_file(database, storage, user_id, board, file_name="board.json")
    assert first.source_app == "trello" and first.totals()["create"] > 3
    with database.engine.connect() as conn:
        refs = conn.execute(
            sa.select(schema.external_ref.c.externalId, schema.external_ref.c.localId).where(
                schema.external_ref.c.userId == user_id
            )
        ).all()
    assert len(refs) == first.totals()["create"]
    imported = dump(database.engine)

    _, again = import_file(database, storage, user_id, board, file_name="board.json", apply=False)
    assert again.row_writes == 0 and again.external_refs.num_rows == 0

    document = json.loads(board)
    renamed, removed = document["cards"][0], document["cards"][1]
    renamed["name"] = "Paint the kitchen (and the hall)"
    document["cards"] = [c for c in document["cards"] if c is not removed]
    newer = json.dumps(document).encode()
    _, merge = import_file(database, storage, user_id, newer, file_name="board.json", apply=False)
    assert merge.totals()["update"] >= 1 and merge.totals()["create"] == 0
    titles = [
        u
        for e in merge.changes["Goal"]
        if e["action"] == "update"
        for u in e["fields"].get("title", [])
    ]
    assert "Paint the kitchen (and the hall)" in titles
    _, replace = import_file(
        database, storage, user_id, newer, file_name="board.json", mode="replace"
    )
    # replace removes what left the board, and nothing the user has from elsewhere
    from_trello = {local for _, local in refs}
    deleted = {
        row["id"] for p in replace.tables.values() for row in p.deletes.select(["id"]).to_pylist()
    }
    assert deleted and deleted <= from_trello
    assert replace.totals()["create"] == 0
    after = dump(database.engine)
    assert {r[0] for r in imported["Goal"]} - {r[0] for r in after["Goal"]} <= from_trello
    assert len(after["Goal"]) < len(imported["Goal"])


def test_invalid_rows_are_reported_and_too_many_stop_the_import(database, storage):
    user_id = sorted(populate(database.engine, 1, 48))[0]
    document = json.loads(export_user(database, user_id, "json"))
    erase_user_rows(database.engine, user_id, keep_account=True)
    goal = document["goals"][0]
    goal["priority"] = 9
    bad_title = goal["title"]
    data = json.dumps(document).encode()
    job_id, plan = import_file(database, storage, user_id, data, apply=False)
    issue = next(i for i in plan.issues if i["field"] == "priority")
    assert issue["table"] == "Goal" and issue["id"] == goal["id"] and issue["row"] >= 1
    assert "between 1 and 5" in issue["reason"]
    # its progress and sub-goals cannot be imported without it: reported too, not dropped
    dependent = [i for i in plan.issues if goal["id"] in i["reason"]]
    assert len(dependent) == len(goal["progress"]) + len(goal["subGoals"])
    assert bad_title not in json.dumps(plan.changes)

    from assets.imports.preview import TooManyBadRowsError

    job_id = create_import_job(database.engine, user_id=user_id, file_name="x.json")
    with pytest.raises(TooManyBadRowsError, match="more than the 0.1%"):
        preview_import(database, storage, job_id, data, max_bad_share=0.001)
    job = get_import_job(database.engine, job_id)
    assert job["status"] == "failed" and "invalid" in job["errorMessage"]
    assert json.loads(job["previewData"])["invalidRows"][0]["field"] == "priority"


def test_round_trip_on_the_embedded_sqlite_database(sqlite_url, storage):
    database = AppDatabase(url=sqlite_url)
    user_id = sorted(populate(database.engine, 2, 49))[0]
    before = dump(database.engine)
    exported = export_user(database, user_id, "csv")
    corrupt_user_rows(database.engine, user_id, touch_updated_at=True)
    corrupted = dump(database.engine)
    job_id, _ = import_file(
        database, storage, user_id, exported, mode="replace", policy="take-incoming"
    )
    assert dump(database.engine) == before
    undo_import(database, job_id)
    assert dump(database.engine) == corrupted
    database.engine.dispose()
