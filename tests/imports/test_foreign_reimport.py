"""Re-importing a newer dump of another app's account (Todoist CSV, Google Tasks JSON) on a
real PostgreSQL database: ExternalRef lands each item on the row it created, so the preview
and the apply update exactly the changed items, insert exactly the new ones, remove (in
replace mode) exactly the removed ones, leave the rest and the user's own data as they
were, and never duplicate; the same dump twice changes nothing. Also the mapping report:
stored on the job's preview and summarised by `goalport import`."""

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from import_support import dump, import_file, populate

from assets.imports.jobs import get_import_job
from assets.imports.undo import undo_import
from pipelines.cli.main import main
from resources import schema

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HEADER = "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE"
# absolute dates only: a relative one ("in 3 days") moves with the day the file is read
TODOIST_V1 = [
    "task,Renew passport,Bring the old one,1,1,Alex (1),,12 Mar 2026,en,Europe/Paris",
    "task,Book photo booth,,4,2,Alex (1),,,en,Europe/Paris",
    "task,Pay taxes,,2,1,Alex (1),,2026-04-15,en,Europe/Paris",
    "task,Clean the garage,,3,1,Alex (1),,,en,Europe/Paris",
    "task,Read 東京 guide 📚,,4,1,Alex (1),,,en,Asia/Tokyo",
]
TODOIST_V2 = [
    "task,Renew passport,Bring the old one and two photos,1,1,Alex (1),,12 Mar 2026,en,Europe/Paris",
    "task,Book photo booth,,4,2,Alex (1),,,en,Europe/Paris",
    "task,Pay taxes,,1,1,Alex (1),,2026-04-15,en,Europe/Paris",
    "task,Read 東京 guide 📚,,4,1,Alex (1),,,en,Asia/Tokyo",
    "task,Call the München office,,3,1,Alex (1),,2026-05-02,en,Europe/Berlin",
]
TODOIST_NAME = "Home [2203306141].csv"


def todoist_csv(tasks: list[str]) -> bytes:
    return ("\ufeff" + "\r\n".join([HEADER, *tasks]) + "\r\n").encode()


def google_tasks_v2() -> bytes:
    document = json.loads((FIXTURES / "google_tasks" / "Tasks.json").read_bytes())
    tasks = document["items"][0]["items"]
    by_title = {t["title"]: t for t in tasks}
    by_title["Dentist"].update(title="Dentist (moved)", updated="2024-03-01T08:00:00.000Z")
    by_title["Water the plants 🌿"].update(
        status="completed",
        completed="2024-03-02T18:00:00.000Z",
        updated="2024-03-02T18:00:00.000Z",
    )
    tasks.remove(by_title["Fill the can"])
    document["items"][1]["items"] = [
        {
            "kind": "tasks#task",
            "id": "bmV3dGFzaw",
            "title": "Buy stamps ✉️",
            "status": "needsAction",
            "updated": "2024-03-01T09:00:00.000Z",
        }
    ]
    return json.dumps(document).encode()


def goals_by_title(engine: sa.Engine, user_id: str, source: str) -> dict[str, dict]:
    """The user's goals that came from `source` (through its ExternalRefs), by title."""
    goal, ref = schema.goal, schema.external_ref
    from_source = sa.select(ref.c.localId).where(
        ref.c.userId == user_id, ref.c.sourceApp == source, ref.c.tableName == "Goal"
    )
    with engine.connect() as conn:
        rows = (
            conn.execute(
                sa.select(goal).where(goal.c.userId == user_id, goal.c.id.in_(from_source))
            )
            .mappings()
            .all()
        )
    titles = [r["title"] for r in rows]
    assert len(titles) == len(set(titles)), "a goal was duplicated"
    return {r["title"]: dict(r) for r in rows}


def refs_of(engine: sa.Engine, user_id: str, source: str) -> list[tuple[str, str, str]]:
    ref = schema.external_ref
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(ref.c.tableName, ref.c.externalId, ref.c.localId).where(
                    ref.c.userId == user_id, ref.c.sourceApp == source
                )
            )
        ]


def written(plan) -> dict[str, dict[str, int]]:
    """Per table with any write: the rows created, updated and deleted."""
    return {
        name: {k: c[k] for k in ("create", "update", "delete")}
        for name, c in plan.counts.items()
        if c["create"] or c["update"] or c["delete"]
    }


def updated_fields(plan) -> dict[str, set[str]]:
    """Goal id -> the fields the preview says change."""
    return {
        e["id"]: set(e["fields"]) for e in plan.changes.get("Goal", []) if e["action"] == "update"
    }


def check_reimport(database, storage, user_id, v1, v2, name, source, expected):
    """Import v1; v1 again is a no-op; v2 merge previews exactly `expected`'s updates and
    creates; v2 replace applies them and deletes exactly the removed; v2 again is a no-op."""
    engine = database.engine
    own_before = dump(engine)
    _, first = import_file(database, storage, user_id, v1, file_name=name)
    assert first.source_app == source
    imported = goals_by_title(engine, user_id, source)
    after_first = dump(engine)

    _, same = import_file(database, storage, user_id, v1, file_name=name, mode="replace")
    assert written(same) == {} and same.external_refs.num_rows == 0
    assert dump(engine) == after_first  # createdAt the parser inferred did not move

    _, merge = import_file(database, storage, user_id, v2, file_name=name, apply=False)
    goal_ids = {t: g["id"] for t, g in imported.items()}
    changed = {goal_ids[t]: fields for t, fields in expected["updated"].items()}
    assert written(merge) == {
        "Goal": {"create": len(expected["created"]), "update": len(changed), "delete": 0}
    }
    assert updated_fields(merge) == changed
    creates = [e["row"]["title"] for e in merge.changes["Goal"] if e["action"] == "create"]
    assert sorted(creates) == sorted(expected["created"])

    _, replace = import_file(database, storage, user_id, v2, file_name=name, mode="replace")
    removed = {goal_ids[t] for t in expected["removed"]}
    assert written(replace) == {
        "Goal": {
            "create": len(expected["created"]),
            "update": len(changed),
            "delete": len(removed),
        }
    }
    assert set(replace.tables["Goal"].deletes["id"].to_pylist()) == removed

    now = goals_by_title(engine, user_id, source)
    renamed = expected.get("renamed", {})
    for title, row in imported.items():
        if title in expected["removed"]:
            assert title not in now
        elif title in expected["updated"] or title in renamed:
            new = now[renamed.get(title, title)]
            assert new["id"] == row["id"] and new["createdAt"] == row["createdAt"]
            differs = {k for k in row if row[k] != new[k]}
            assert differs == expected["updated"][title], title
        else:
            assert now[title] == row, title  # untouched, to the millisecond
    assert set(now) - set(imported) - set(renamed.values()) == set(expected["created"])
    after = dump(engine)
    for table, rows in own_before.items():  # the user's own rows (the seed) are all still there
        assert set(rows) - set(after[table]) == set(), table

    refs = refs_of(engine, user_id, source)
    assert len({(t, e) for t, e, _ in refs}) == len(refs)
    goal_refs = {local for t, _, local in refs if t == "Goal"}
    assert {g["id"] for t, g in now.items() if t in imported or t in expected["created"]} | {
        now[t]["id"] for t in renamed.values()
    } <= goal_refs

    _, again = import_file(database, storage, user_id, v2, file_name=name, mode="replace")
    assert written(again) == {} and again.external_refs.num_rows == 0
    assert goals_by_title(engine, user_id, source) == now


@pytest.mark.slow
def test_todoist_csv_reimport_updates_inserts_and_removes_exactly(database, storage):
    user_id = populate(database.engine, 1, 81)[0]
    check_reimport(
        database,
        storage,
        user_id,
        todoist_csv(TODOIST_V1),
        todoist_csv(TODOIST_V2),
        TODOIST_NAME,
        "todoist",
        {
            "updated": {"Renew passport": {"description"}, "Pay taxes": {"priority"}},
            "created": ["Call the München office"],
            "removed": ["Clean the garage"],
        },
    )


@pytest.mark.slow
def test_google_tasks_reimport_updates_inserts_and_removes_exactly(database, storage):
    user_id = populate(database.engine, 1, 82)[0]
    check_reimport(
        database,
        storage,
        user_id,
        (FIXTURES / "google_tasks" / "Tasks.json").read_bytes(),
        google_tasks_v2(),
        "Tasks.json",
        "google_tasks",
        {
            "updated": {
                "Dentist": {"title", "updatedAt"},
                "Water the plants 🌿": {"isCompleted", "completedAt", "updatedAt"},
            },
            "renamed": {"Dentist": "Dentist (moved)"},
            "created": ["Buy stamps ✉️"],
            "removed": ["Fill the can"],
        },
    )


def test_mapping_report_is_on_the_preview_and_printed(database, storage, tmp_path, monkeypatch):
    user_id = populate(database.engine, 1, 83)[0]
    data = (FIXTURES / "google_tasks" / "Tasks.json").read_bytes()
    job_id, _ = import_file(database, storage, user_id, data, file_name="Tasks.json", apply=False)
    preview = json.loads(get_import_job(database.engine, job_id)["previewData"])
    report = preview["file"]["report"]
    skipped = {e["externalKey"]: e["reason"] for e in report if e["action"] == "skipped"}
    assert skipped["google_tasks:task:dGFzazQ"] == "deleted in Google Tasks"
    assert "empty task" in skipped["google_tasks:task:dGFzazU"]
    imported = [e for e in report if e["action"] == "imported"]
    assert {e["table"] for e in imported} == {"Goal"} and len(imported) == 5
    assert preview["file"]["mapping"]["imported"] == {"Goal": 5, "Module": 1}
    assert preview["file"]["mapping"]["skipped"] == 2

    monkeypatch.setenv("GOALPORT_DATABASE_URL", database.resolved_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "cli-storage"))
    path = tmp_path / "Tasks.json"
    path.write_bytes(data)
    result = CliRunner().invoke(
        main, ["import", str(path), "--user", user_id], input="n\n", catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "mapping: 5 items imported as Goal, 1 as Module; 2 skipped" in out
    assert "skipped task 'Gone' (items[0].items[3]): deleted in Google Tasks" in out
    assert "skipped task (items[0].items[4]): empty task: no title and no notes" in out


@pytest.mark.slow
def test_a_reimport_that_moves_a_task_under_a_new_one_can_be_undone(database, storage):
    """The re-import updates an existing sub-task to hang under a task it creates; undoing
    it gives the sub-task its old parent back, so nothing added later is in the way."""
    user_id = populate(database.engine, 1, 83)[0]
    import_file(database, storage, user_id, todoist_csv(TODOIST_V1), file_name=TODOIST_NAME)
    before = dump(database.engine)
    first = goals_by_title(database.engine, user_id, "todoist")
    moved = [
        *TODOIST_V1[:1],
        "task,Plan the trip,,2,1,Alex (1),,,en,Europe/Paris",
        *TODOIST_V1[1:],
    ]
    job_id, plan = import_file(
        database, storage, user_id, todoist_csv(moved), file_name=TODOIST_NAME
    )
    now = goals_by_title(database.engine, user_id, "todoist")
    assert now["Book photo booth"]["parentGoalId"] == now["Plan the trip"]["id"]
    assert first["Book photo booth"]["parentGoalId"] == first["Renew passport"]["id"]

    undo_import(database, job_id)
    assert dump(database.engine) == before
