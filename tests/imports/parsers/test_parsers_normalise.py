"""The normalisation every parser's rows go through (parsers/normalise.py via
ImportBuilder.finish), the archive guard's total ratio, the linear unique keys, and the
export guides: what each rule changes, what it keeps and what it says."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from click.testing import CliRunner
from parser_checks import NOW, assert_contract, by_id, zip_bytes

from assets.imports.parsers.base import ImportBuilder, ImportFormatError, safe_zip_members
from assets.imports.parsers.detect import PARSERS, export_guides
from assets.imports.parsers.normalise import normalise_goal, normalise_progress
from pipelines.cli.main import main

DAY = dt.timedelta(days=1)


def goal_row(**values) -> dict:
    row = {
        "title": "Task",
        "description": None,
        "priority": 2,
        "difficulty": None,
        "isCompleted": False,
        "completedAt": None,
        "createdAt": NOW - 10 * DAY,
        "updatedAt": NOW - 5 * DAY,
    }
    row.update(values)
    return row


def test_a_row_that_fits_is_left_alone():
    row = goal_row()
    assert normalise_goal(row, {}, NOW, []) == [] and row == goal_row()


def test_completion_before_creation_moves_creation_and_keeps_the_source_value():
    row, extras = goal_row(isCompleted=True, completedAt=NOW - 20 * DAY), {}
    [note] = normalise_goal(row, extras, NOW, [])
    assert row["createdAt"] == NOW - 20 * DAY and row["updatedAt"] == NOW - 5 * DAY
    assert extras["sourceCreatedAt"] == (NOW - 10 * DAY).isoformat().replace("+00:00", "Z")
    assert note.startswith("completed (") and "createdAt moved to the earliest known time" in note


def test_done_without_time_and_open_with_time():
    done = goal_row(isCompleted=True)
    assert normalise_goal(done, {}, NOW, []) == [
        "done without a completion time: completedAt taken from the last change"
    ]
    assert done["completedAt"] == NOW - 5 * DAY
    invented = goal_row(isCompleted=True)
    inferred = ["createdAt", "updatedAt"]
    normalise_goal(invented, {}, NOW, inferred)
    assert "completedAt" in inferred  # the import's clock: a re-import keeps the stored one
    reopened, extras = goal_row(completedAt=NOW - 6 * DAY), {}
    [note] = normalise_goal(reopened, extras, NOW, [])
    assert reopened["completedAt"] is None and "sourceCompletedAt" in extras
    assert note.startswith("open, but with a completion time")


def test_future_times_long_text_and_levels():
    row, extras, inferred = (
        goal_row(
            title="t" * 250,
            description="d" * 6000,
            priority=9,
            difficulty=0,
            createdAt=NOW + 30 * DAY,
            updatedAt=NOW + 30 * DAY,
        ),
        {},
        [],
    )
    notes = normalise_goal(row, extras, NOW, inferred)
    assert len(row["title"]) == 200 and row["title"].endswith("…")
    assert len(row["description"]) == 5000 and extras["sourceDescription"].startswith("t" * 250)
    assert (row["priority"], row["difficulty"]) == (5, 1)
    assert (extras["sourcePriority"], extras["sourceDifficulty"]) == (9, 0)
    assert row["createdAt"] == row["updatedAt"] == NOW and inferred == ["createdAt", "updatedAt"]
    assert len(notes) == 6


def test_progress_values_fit_the_app():
    row = {"value": Decimal("-3"), "maxValue": Decimal("-1"), "notes": None, "recordedAt": NOW}
    extras: dict = {}
    notes = normalise_progress(row, extras, NOW, [])
    assert (row["value"], row["maxValue"]) == (Decimal("0.00"), None) and len(notes) == 2
    above = {
        "value": Decimal("8"),
        "maxValue": Decimal("5"),
        "notes": "n" * 6000,
        "recordedAt": NOW,
    }
    notes = normalise_progress(above, extras, NOW, [])
    assert above["maxValue"] == Decimal("8") and len(above["notes"]) == 5000 and len(notes) == 2


def test_twenty_thousand_repeated_ids_get_distinct_keys_in_order():
    builder = ImportBuilder("trello", now=NOW)
    keys = [
        builder.add_goal("trello:card:x", title=f"c{i}", source_item=f"c{i}") for i in range(20_000)
    ]
    assert keys[:3] == ["trello:card:x", "trello:card:x#2", "trello:card:x#3"]
    assert len(set(keys)) == 20_000 and keys[-1] == "trello:card:x#20000"
    parsed = builder.finish()
    assert_contract(parsed, "trello")
    assert len(parsed.adjusted()) == 19_999


def test_orphans_share_one_root_goal_that_is_made_only_when_needed():
    builder = ImportBuilder("asana", now=NOW)
    builder.add_goal("asana:task:a", title="A", source_item="a", parent="asana:task:gone")
    builder.add_goal("asana:task:b", title="B", source_item="b", parent="asana:task:gone2")
    builder.add_goal("asana:task:c", title="C", source_item="c")
    goals = by_id(builder.finish())
    assert (
        goals["asana:task:a"]["parentGoalId"]
        == goals["asana:task:b"]["parentGoalId"]
        == ("asana:goal:import-root")
    )
    plain = ImportBuilder("asana", now=NOW)
    plain.add_goal("asana:task:c", title="C", source_item="c")
    assert "asana:goal:import-root" not in by_id(plain.finish())


def test_many_small_members_of_zeros_are_refused_as_a_bomb():
    members = {f"Tasks/{i}.json": bytes(256 * 1024) for i in range(100)}  # 25 MiB of zeros
    with pytest.raises(ImportFormatError, match="compressed suspiciously well"):
        safe_zip_members(zip_bytes(members), file_name="takeout.zip")
    fine = {f"Tasks/{i}.json": bytes(range(256)) * 64 for i in range(100)}
    assert len(safe_zip_members(zip_bytes(fine), file_name="takeout.zip")) == 100


def test_every_parser_has_a_guide_and_the_cli_prints_it():
    guides = export_guides()
    assert set(guides) == set(PARSERS)
    for app, guide in guides.items():
        assert guide.startswith("## ") and "**How to export**" in guide, app
        assert "**What goalport keeps**" in guide and "**What it cannot keep**" in guide, app
    result = CliRunner().invoke(main, ["import", "guide", "Google-Tasks"])
    assert result.exit_code == 0 and result.output == guides["google_tasks"]
    assert "Takeout" in result.output
    everything = CliRunner().invoke(main, ["import", "guide"])
    assert all(g in everything.output for g in guides.values())
    unknown = CliRunner().invoke(main, ["import", "guide", "evernote"])
    assert unknown.exit_code == 2 and "supported apps: todoist" in unknown.output
