"""An app's export through the real import pipeline (job -> stage -> preview -> apply) on the
test database, and the checks every app's end-to-end test makes: every row of the file is
imported (inconsistent ones adjusted, none refused, with the default share of bad rows),
as parsed (title, parent, done state, dates), every adjustment is in the job's mapping
report, the same file again writes nothing, an edited file updates exactly what was
edited."""

from __future__ import annotations

import json

import sqlalchemy as sa

from assets.imports.apply import apply_import
from assets.imports.jobs import create_import_job, get_import_job
from assets.imports.parsers.detect import parse_foreign_export
from assets.imports.preview import preview_import
from resources import schema
from synthetic.load import load_population
from synthetic.population import generate_population

COMPARED = ("title", "description", "isCompleted", "completedAt", "targetDate", "priority")


def new_user(engine: sa.Engine, seed: int, timezone: str | None = "Europe/Berlin") -> str:
    users = generate_population(1, seed=seed, heavy_every=0)["User"]
    load_population(engine, {"User": users})
    user_id = users["id"][0].as_py()
    with engine.begin() as conn:
        conn.execute(
            schema.user.update().where(schema.user.c.id == user_id).values(timezone=timezone)
        )
    return user_id


def run_import(database, storage, user_id: str, data: bytes, name: str, *, mode="merge"):
    """(job row, plan) of `data` imported for `user_id` (the default share of bad rows)."""
    job_id = create_import_job(database.engine, user_id=user_id, file_name=name, mode=mode)
    preview = preview_import(database, storage, job_id, data)
    apply_import(database, storage, job_id)
    job = get_import_job(database.engine, job_id)
    assert job["status"] == "applied", job
    return job, preview.plan


def written(plan) -> dict[str, dict[str, int]]:
    return {
        name: {k: c[k] for k in ("create", "update", "delete")}
        for name, c in plan.counts.items()
        if c["create"] or c["update"] or c["delete"]
    }


def goals_by_key(engine: sa.Engine, user_id: str, app: str) -> dict[str, dict]:
    """The user's goals that came from `app`, by the parser's external key."""
    goal, ref = schema.goal, schema.external_ref
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(goal, ref.c.externalId)
            .join(ref, sa.and_(ref.c.localId == goal.c.id, ref.c.tableName == "Goal"))
            .where(ref.c.userId == user_id, ref.c.sourceApp == app)
        ).mappings()
        return {r["externalId"]: dict(r) for r in rows}


def user_timezone(engine: sa.Engine, user_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(schema.user.c.timezone).where(schema.user.c.id == user_id)
        ).scalar_one()


def assert_imported_as_parsed(
    database, storage, user_id: str, data: bytes, name: str, app: str, inconsistent: set[str]
) -> dict[str, dict]:
    """Import `data`; every goal the parser makes is in the database as parsed, none refused.
    The rows of `inconsistent` (done before created, a note over the app's limit ...) are
    adjusted to fit, and every adjustment of the file is in the job's mapping report with
    its reason. Returns the goals by external key."""
    engine = database.engine
    job, plan = run_import(database, storage, user_id, data, name)
    assert job["sourceApp"] == app and plan.source_app == app
    assert plan.issues == [], plan.issues
    parsed = parse_foreign_export(data, file_name=name, timezone=user_timezone(engine, user_id))
    adjusted = {e.external_key: e.adjustments for e in parsed.adjusted()}
    assert inconsistent <= set(adjusted), inconsistent - set(adjusted)
    preview = json.loads(job["previewData"])
    reported = {
        e["externalKey"]: e["adjustments"] for e in preview["file"]["report"] if "adjustments" in e
    }
    assert reported == adjusted, (reported, adjusted)
    assert preview["file"]["mapping"]["adjusted"] == len(adjusted)
    assert preview["file"]["mapping"]["unmappable"] == 0
    stored = goals_by_key(engine, user_id, app)
    local_to_key = {row["id"]: key for key, row in stored.items()}
    expected = {g["id"]: g for g in parsed.tables["Goal"].to_pylist()}
    assert set(stored) == set(expected), set(stored) ^ set(expected)
    for key, row in stored.items():
        want = expected[key]
        for column in COMPARED:
            assert row[column] == want[column], (key, column, row[column], want[column])
        assert local_to_key.get(row["parentGoalId"]) == want["parentGoalId"], key
        if "createdAt" not in parsed.extras.get(key, {}).get("inferred", ()):
            assert row["createdAt"] == want["createdAt"], key
    again = run_import(database, storage, user_id, data, name)[1]
    assert written(again) == {}, written(again)
    assert goals_by_key(engine, user_id, app) == stored
    return stored


def assert_reimport_updates_only(
    database,
    storage,
    user_id: str,
    edited: bytes,
    name: str,
    app: str,
    expected: dict[str, set[str]],
    *,
    progress_updates: int = 0,
) -> dict[str, dict]:
    """Re-importing `edited` (merge) updates exactly the goals and fields of `expected`
    (external key -> field names), touches nothing else, and lands on the same rows."""
    engine = database.engine
    before = goals_by_key(engine, user_id, app)
    key_of = {row["id"]: key for key, row in before.items()}
    _, plan = run_import(database, storage, user_id, edited, name)
    want = {"Goal": {"create": 0, "update": len(expected), "delete": 0}}
    if progress_updates:
        want["Progress"] = {"create": 0, "update": progress_updates, "delete": 0}
    assert written(plan) == want, written(plan)
    updates = {
        key_of[e["id"]]: set(e["fields"])
        for e in plan.changes.get("Goal", [])
        if e["action"] == "update"
    }
    assert updates == expected, updates
    after = goals_by_key(engine, user_id, app)
    assert set(after) == set(before), set(after) ^ set(before)
    for key, row in after.items():
        differs = {k for k in row if row[k] != before[key][k]}
        assert differs == expected.get(key, set()), (key, differs)
    return after
