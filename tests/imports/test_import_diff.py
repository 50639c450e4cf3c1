"""Staging and the diff without a database: external keys mapped through ExternalRef, the
conflict rule and each policy, replace within modules with the database's ON DELETE rules
made explicit, refusals, and the plan surviving its trip through storage unchanged."""

import datetime as dt

import pyarrow as pa
import pytest

from assets.imports.detect import DetectedImport
from assets.imports.diff import diff_import
from assets.imports.staging import derived_id, stage_import
from assets.imports.stored_plans import plan_from_bytes, plan_to_bytes
from resources.schema import APP_ARROW_SCHEMAS, empty_app_tables

USER = "cuser00000000000000000001"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
EXPORTED = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def table(name: str, rows: list[dict]) -> pa.Table:
    schema = APP_ARROW_SCHEMAS[name]
    return pa.Table.from_pylist(rows, schema=schema)


def goal(goal_id: str, title: str, updated: dt.datetime = T0, **extra) -> dict:
    row = {
        "id": goal_id,
        "userId": USER,
        "moduleId": None,
        "parentGoalId": None,
        "title": title,
        "description": None,
        "priority": 2,
        "difficulty": None,
        "targetDate": None,
        "isCompleted": False,
        "completedAt": None,
        "createdAt": T0,
        "updatedAt": updated,
    }
    row.update(extra)
    return row


def user_row() -> dict:
    return {
        "id": USER,
        "email": "ann@example.org",
        "firstName": "Ann",
        "lastName": None,
        "timezone": "UTC",
        "createdAt": T0,
        "updatedAt": T0,
    }


def own_file(goals: list[dict], **tables) -> DetectedImport:
    found = empty_app_tables()
    found["User"] = table("User", [user_row()])
    found["Goal"] = table("Goal", goals)
    for name, rows in tables.items():
        found[name] = table(name, rows)
    return DetectedImport(
        "export.json", "json", "goalport", found, "", 0, exported_at=EXPORTED, source_user_id=USER
    )


def current(goals: list[dict], **tables) -> dict[str, pa.Table]:
    found = empty_app_tables()
    found["User"] = table("User", [user_row()])
    found["Goal"] = table("Goal", goals)
    for name, rows in tables.items():
        found[name] = table(name, rows)
    return found


def plan_for(detected, now, mode="merge", policy="fail", **options):
    staged = stage_import(detected, user_id=USER, current=now, id_seed="job1", mode=mode)
    return diff_import(staged, now, mode=mode, conflict_policy=policy, **options)


def test_conflict_rule_and_policies():
    edited_after_export = EXPORTED + dt.timedelta(days=3)
    now = current(
        [
            goal("ga", "same"),
            goal("gb", "old title"),  # the database did not change since the export
            goal("gc", "edited in the app", edited_after_export),  # changed on both sides
        ]
    )
    incoming = own_file(
        [
            goal("ga", "same"),
            goal("gb", "new title"),
            goal("gc", "edited in the file", EXPORTED + dt.timedelta(days=5)),
            goal("gd", "brand new"),
        ]
    )
    plan = plan_for(incoming, now)
    counts = plan.counts["Goal"]
    assert [counts[k] for k in ("unchanged", "update", "conflict", "create")] == [1, 1, 1, 1]
    assert plan.unresolved_conflicts == 1
    conflict = plan.conflicts[0]
    assert conflict["id"] == "gc" and conflict["fields"]["title"] == [
        "edited in the app",
        "edited in the file",
    ]
    update = next(e for e in plan.changes["Goal"] if e["action"] == "update")
    assert update["fields"] == {"title": ["old title", "new title"]}

    written = {
        policy: sorted(
            plan_for(incoming, now, policy=policy).tables["Goal"].updates["id"].to_pylist()
        )
        for policy in ("keep-existing", "take-incoming", "newest-wins")
    }
    assert written == {
        "keep-existing": ["gb"],
        "take-incoming": ["gb", "gc"],
        "newest-wins": ["gb", "gc"],
    }
    older = own_file([goal("gc", "stale copy", EXPORTED - dt.timedelta(days=1))])
    stale = plan_for(older, now, policy="newest-wins")
    assert stale.counts["Goal"]["conflict"] == 1 and stale.tables["Goal"].updates.num_rows == 0


def test_replace_within_modules_makes_cascades_explicit():
    modules = [
        {
            "id": "mb",
            "userId": USER,
            "kind": "bible",
            "name": "Bible",
            "isActive": True,
            "createdAt": T0,
        },
        {
            "id": "mf",
            "userId": USER,
            "kind": "fitness",
            "name": "Run",
            "isActive": True,
            "createdAt": T0,
        },
    ]
    now = current(
        [
            goal("g1", "keep", moduleId="mb"),
            goal("g2", "gone", moduleId="mb"),
            goal("g3", "child of gone", moduleId="mf", parentGoalId="g2"),
            goal("g4", "fitness", moduleId="mf"),
        ],
        Module=modules,
        Achievement=[
            {
                "id": "a1",
                "userId": USER,
                "goalId": "g2",
                "kind": "streak",
                "title": "Streak",
                "description": None,
                "points": 10,
                "earnedAt": T0,
            }
        ],
        WorkProject=[
            {
                "id": "w1",
                "userId": USER,
                "goalId": "g2",
                "name": "Project",
                "description": None,
                "status": "active",
                "budget": None,
                "startDate": None,
                "dueDate": None,
                "createdAt": T0,
                "updatedAt": T0,
            }
        ],
    )
    incoming = own_file([goal("g1", "keep", moduleId="mb")], Module=modules[:1])
    plan = plan_for(incoming, now, mode="replace", policy="fail", modules=["bible"])
    assert plan.tables["Goal"].deletes["id"].to_pylist() == ["g2", "g3"]  # g3: ON DELETE CASCADE
    assert plan.tables["Module"].deletes.num_rows == 0  # the fitness module is out of scope
    # the goal's achievement is within the bible module: not in the file, so deleted
    assert plan.tables["Achievement"].deletes["id"].to_pylist() == ["a1"]
    # the work project is outside it and stays, its reference cleared (ON DELETE SET NULL)
    cleared = plan.tables["WorkProject"].updates.to_pylist()
    assert [(r["id"], r["goalId"]) for r in cleared] == [("w1", None)]
    assert plan.tables["WorkProject"].before["goalId"].to_pylist() == ["g2"]

    restored = plan_from_bytes(plan_to_bytes(plan))
    for name, table_plan in plan.tables.items():
        for part in ("creates", "updates", "before", "deletes"):
            assert getattr(restored.tables[name], part).equals(getattr(table_plan, part)), (
                name,
                part,
            )
    assert restored.preview() == plan.preview()


def test_references_to_rows_another_user_holds_are_refused():
    now = current([])
    incoming = own_file([goal("gx", "theirs"), goal("gy", "mine, under theirs", parentGoalId="gx")])
    plan = plan_for(incoming, now, other_owner_ids={"Goal": pa.array(["gx"])})
    refused = {r["id"]: r["reason"] for r in plan.refused}
    assert "belongs to another user" in refused["gx"]
    assert "refers to Goal gx" in refused["gy"]
    assert plan.tables["Goal"].creates.num_rows == 0


def test_external_keys_map_through_external_refs():
    found = empty_app_tables()
    found["Goal"] = table(
        "Goal",
        [
            goal("trello:card:1", "known", updated=T0) | {"userId": ""},
            goal("trello:card:2", "new", parentGoalId="trello:card:1") | {"userId": ""},
        ],
    )
    detected = DetectedImport("board.json", "trello", "trello", found, "", 0)
    known = pa.table(
        {
            "tableName": ["Goal"],
            "externalId": ["trello:card:1"],
            "localId": ["glocal1"],
            "updatedAt": pa.array([T0], pa.timestamp("us", tz="UTC")),
        }
    )
    now = current([goal("glocal1", "known")])
    staged = stage_import(detected, user_id=USER, current=now, known_refs=known, id_seed="job9")
    rows = staged.tables["Goal"].to_pylist()
    fresh = derived_id("job9", "Goal", "trello:card:2")
    assert [(r["id"], r["parentGoalId"], r["userId"]) for r in rows] == [
        ("glocal1", None, USER),
        (fresh, "glocal1", USER),
    ]
    assert fresh != derived_id("job8", "Goal", "trello:card:2")  # a new job, new ids
    plan = diff_import(staged, now, known_refs=known.append_column("id", pa.array(["r1"])))
    assert plan.counts["Goal"]["create"] == 1 and plan.counts["Goal"]["unchanged"] == 1
    assert plan.external_refs["externalId"].to_pylist() == ["trello:card:2"]


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_an_identical_file_plans_nothing(mode):
    rows = [goal("g1", "a"), goal("g2", "b", parentGoalId="g1")]
    plan = plan_for(own_file(rows), current(rows), mode=mode)
    assert not plan.has_changes and plan.totals()["unchanged"] == 3
