"""Notion HTML, Things 3, Google Keep and Joplin exports through the real import pipeline
(stage -> preview -> apply on PostgreSQL), with the inconsistencies real exports have (done
before created, modified before created, a note over the app's length limit, a parent not in
the file): every item lands with its title, nesting, done state and dates, none refused
(the default share of bad rows), each adjustment is in the job's mapping report; the same
file again changes nothing; the account exported again after a few edits updates exactly
those items."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from import_support import dump, import_file, populate

from assets.imports.jobs import get_import_job
from resources import schema

sys.path.insert(0, str(Path(__file__).parent / "parsers"))
import file_exports  # noqa: E402
from parser_checks import NOW, parse_foreign_export  # noqa: E402

EXPORTS = {
    "notion_html": ("Export-5f0e8c1a.zip", file_exports.notion_html_export),
    "things3": ("ThingsData.zip", file_exports.things_zip),
    "google_keep": ("takeout-20231115T000000Z-001.tgz", file_exports.keep_takeout),
    "joplin": ("Joplin.jex", file_exports.joplin_export),
}
# title in the first export -> the fields the second export changes
CHANGES = {
    "notion_html": {
        "Plan trip": {"isCompleted", "completedAt"},
        "Réserver l’hôtel 🏨": {"title"},
    },
    "things3": {"Paint walls": {"title"}},
    "google_keep": {
        "Einkaufsliste 🛒": {"updatedAt"},
        "Milch": {"updatedAt", "completedAt"},
        "Brot": {"isCompleted", "completedAt", "updatedAt"},
        "Käse 🧀": {"updatedAt"},
        "Erledigt": {"title"},
    },
    "joplin": {"Quarterly report": {"isCompleted", "completedAt", "updatedAt"}},
}
PROGRESS_UPDATES = {"notion_html": 1, "things3": 1, "google_keep": 0, "joplin": 0}


def imported_goals(engine: sa.Engine, user_id: str, source: str) -> dict[str, dict]:
    goal, ref = schema.goal, schema.external_ref
    local = sa.select(ref.c.localId).where(
        ref.c.userId == user_id, ref.c.sourceApp == source, ref.c.tableName == "Goal"
    )
    with engine.connect() as conn:
        found = conn.execute(sa.select(goal).where(goal.c.id.in_(local))).mappings().all()
    return {r["id"]: dict(r) for r in found}


def written(plan) -> dict[str, dict[str, int]]:
    return {
        name: {k: c[k] for k in ("create", "update", "delete")}
        for name, c in plan.counts.items()
        if c["create"] or c["update"] or c["delete"]
    }


@pytest.mark.slow
@pytest.mark.parametrize("app", list(EXPORTS))
def test_imports_then_reimports_exactly(database, storage, app):
    engine = database.engine
    user_id = populate(engine, 1, 90)[0]
    name, build = EXPORTS[app]
    first_file = build(inconsistent=True)
    with engine.connect() as conn:
        zone = conn.execute(
            sa.select(schema.user.c.timezone).where(schema.user.c.id == user_id)
        ).scalar()
    # the pipeline reads zone-less times and due days in the user's time zone
    expected = parse_foreign_export(first_file, file_name=name, now=NOW, timezone=zone)

    job_id, first = import_file(database, storage, user_id, first_file, file_name=name)
    assert first.source_app == app
    assert first.issues == [] and first.counts["Goal"]["invalid"] == 0
    # every adjustment the normaliser made is in the job's mapping report, with its reason
    adjusted = {e.external_key: e.adjustments for e in expected.adjusted()}
    assert any("before it was created" in note for notes in adjusted.values() for note in notes)
    assert any("longer than the app's 5000" in n for notes in adjusted.values() for n in notes)
    preview = json.loads(get_import_job(engine, job_id)["previewData"])
    reported = {
        e["externalKey"]: e["adjustments"] for e in preview["file"]["report"] if "adjustments" in e
    }
    assert reported == adjusted
    goals = imported_goals(engine, user_id, app)
    parsed_goals = expected.tables["Goal"].to_pylist()
    assert len(goals) == len(parsed_goals)
    by_title = {}
    for row in goals.values():
        by_title.setdefault(row["title"], []).append(row)
    local_of = {}
    for source in parsed_goals:
        # a time the import's clock gave (done, no time known) is the run's, not NOW
        inferred = expected.extras.get(source["id"], {}).get("inferred", ())
        compared = ["isCompleted", "targetDate"] + ["completedAt"] * ("completedAt" not in inferred)
        match = [
            r
            for r in by_title[source["title"]]
            if all(r[column] == source[column] for column in compared)
        ]
        assert match, source["title"]
        local_of[source["id"]] = match[0]["id"]
    for source in parsed_goals:  # the nesting survives the swap to local ids
        parent = goals[local_of[source["id"]]]["parentGoalId"]
        assert parent == (local_of[source["parentGoalId"]] if source["parentGoalId"] else None)
    after_first = dump(engine)

    _, same = import_file(database, storage, user_id, first_file, file_name=name)
    assert written(same) == {}
    assert dump(engine) == after_first

    edited = build(edited=True, inconsistent=True)
    _, again = import_file(database, storage, user_id, edited, file_name=name)
    changes = CHANGES[app]
    expected_writes = {"Goal": {"create": 0, "update": len(changes), "delete": 0}}
    if PROGRESS_UPDATES[app]:
        expected_writes["Progress"] = {"create": 0, "update": PROGRESS_UPDATES[app], "delete": 0}
    assert written(again) == expected_writes
    now = imported_goals(engine, user_id, app)
    assert set(now) == set(goals)
    for local_id, before in goals.items():
        differs = {k for k in before if before[k] != now[local_id][k]}
        assert differs == changes.get(before["title"], set()), before["title"]
