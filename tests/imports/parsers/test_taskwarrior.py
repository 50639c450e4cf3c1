"""Taskwarrior `task export`: projects as nested goals, recurring tasks as one goal with
their instances as progress, deleted tasks skipped, the export's inconsistencies passed
through as the file says them; the old one-task-per-line form; the real import pipeline."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fuzzing import fuzz_parser
from parser_checks import (
    NOW,
    adjustments_of,
    assert_contract,
    by_id,
    fixture_bytes,
    parse_detected,
    rows,
)
from pipeline_checks import assert_imported_as_parsed, assert_reimport_updates_only, new_user

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.taskwarrior import parse_taskwarrior, parse_tw_time

UTC = dt.UTC
NAME = "taskwarrior.json"
DATA = fixture_bytes("taskwarrior", NAME)
TASKS = json.loads(DATA)


def uuid(n: int) -> str:
    return f"{n:08x}-1b2c-4d3e-8f40-5a6b7c8d9e0f"


def key(n: int) -> str:
    return f"taskwarrior:task:{uuid(n)}"


@pytest.fixture(scope="module")
def export():
    return parse_detected(DATA, NAME, "taskwarrior")


def test_projects_become_nested_goals_and_tasks_sit_under_them(export):
    goals = by_id(export)
    garden = goals["taskwarrior:project:Home.Garden"]
    assert garden["title"] == "Garden" and garden["parentGoalId"] == "taskwarrior:project:Home"
    assert goals[key(1)]["parentGoalId"] == garden["id"]
    assert goals[key(2)]["parentGoalId"] == "taskwarrior:project:Home"
    assert goals[key(3)]["parentGoalId"] is None  # no project
    # Work.Clients.Acme.Q3 + the task: five levels, flattened under level two
    assert goals[key(11)]["parentGoalId"] == "taskwarrior:project:Work.Clients"
    flattened = {e.external_key for e in export.report if e.action == "flattened"}
    assert key(11) in flattened and export.extras[key(11)]["sourceParent"].endswith("Acme.Q3")


def test_fields_dates_priority_tags_annotations_and_udas(export):
    tomatoes = by_id(export)[key(1)]
    assert tomatoes["title"] == "Plant tomatoes 🍅" and tomatoes["priority"] == 5
    assert tomatoes["createdAt"] == dt.datetime(2024, 3, 1, 8, tzinfo=UTC)
    assert tomatoes["updatedAt"] == dt.datetime(2024, 3, 2, 9, 15, tzinfo=UTC)
    # due 22:00Z, read as the user's day: NOW's parse has no zone, so UTC
    assert tomatoes["targetDate"] == dt.date(2024, 4, 15)
    extras = export.extras[key(1)]
    assert extras["labels"] == ["garden", "spring"] and extras["urgency"] == 8.2
    assert extras["uda"] == {"estimate": "2h"} and extras["due"] == "2024-04-15T22:00:00.000Z"
    assert extras["annotations"][0] == {
        "entry": "2024-03-01T08:10:00.000Z",
        "description": "Buy seeds first",
    }
    description = tomatoes["description"]
    assert description.startswith("Tags: garden, spring\nComments:\n- Buy seeds first\n- Long")
    # the very long annotation: shortened to the app's 5,000, the whole text kept and reported
    assert len(description) == 5000
    assert len(extras["sourceDescription"]) > 10_000
    [shortened] = adjustments_of(export, key(1))
    assert "longer than the app's 5000: shortened" in shortened
    goals = by_id(export)
    assert (goals[key(2)]["priority"], goals[key(3)]["priority"], goals[key(4)]["priority"]) == (
        3,
        1,
        2,
    )


def test_a_recurring_task_is_one_goal_and_its_instances_are_progress(export):
    template = by_id(export)[key(5)]
    assert template["title"] == "Water the plants" and not template["isCompleted"]
    assert export.extras[key(5)]["recurrence"] == "weekly"
    assert "Repeats: weekly" in template["description"]
    instances = {p["id"]: p for p in rows(export, "Progress")}
    assert set(instances) == {f"taskwarrior:instance:{uuid(6)}", f"taskwarrior:instance:{uuid(8)}"}
    done = instances[f"taskwarrior:instance:{uuid(6)}"]
    assert (done["goalId"], done["value"], done["recordedAt"]) == (
        key(5),
        1,
        dt.datetime(2024, 1, 1, 19, tzinfo=UTC),
    )
    assert instances[f"taskwarrior:instance:{uuid(8)}"]["value"] == 0
    titles = [g["title"] for g in rows(export, "Goal")]
    assert titles.count("Water the plants") == 1
    # an instance whose template is not in the export is a task of its own
    assert by_id(export)[key(10)]["title"] == "Orphan instance"


def test_deleted_tasks_are_skipped_with_a_reason(export):
    skipped = {e.external_key: e.reason for e in export.skipped()}
    assert skipped == {
        key(9): "deleted in Taskwarrior",
        f"taskwarrior:instance:{uuid(7)}": "deleted in Taskwarrior",
    }


def test_inconsistencies_are_normalised_and_each_adjustment_reported(export):
    goals = by_id(export)
    fence = goals[key(2)]  # done before it was entered, modified before entered
    done_at = dt.datetime(2024, 1, 10, 9, tzinfo=UTC)
    assert fence["isCompleted"] and fence["completedAt"] == fence["createdAt"] == done_at
    assert fence["updatedAt"] == dt.datetime(2024, 1, 15, 12, tzinfo=UTC)
    assert export.extras[key(2)]["sourceCreatedAt"] == "2024-02-01T10:00:00Z"
    assert adjustments_of(export, key(2)) == [
        "completed (2024-01-10T09:00:00Z) before it was created (2024-02-01T10:00:00Z): "
        "createdAt moved to the earliest known time of the item"
    ]
    bank = goals[key(12)]  # completed without an end time: the last change
    assert bank["isCompleted"] and bank["completedAt"] == bank["updatedAt"]
    assert adjustments_of(export, key(12)) == [
        "done without a completion time: completedAt taken from the last change"
    ]
    zoe = goals[key(13)]  # pending with an end time: stays open, the time kept
    assert not zoe["isCompleted"] and zoe["completedAt"] is None
    assert export.extras[key(13)]["sourceCompletedAt"] == "2024-01-07T08:00:00Z"
    [reopened] = adjustments_of(export, key(13))
    assert reopened.startswith("open, but with a completion time")
    assert goals[key(14)]["title"] == "Untitled"  # empty description
    # a repeated uuid: both kept, the second under a suffixed key
    assert goals[key(1) + "#2"]["title"] == "Plant tomatoes (copy)"
    # a dependency cycle is data, kept both ways, and breaks nothing
    assert export.extras[key(3)]["depends"] == [uuid(4)]
    assert export.extras[key(4)]["depends"] == [uuid(3)]
    assert "Depends on: Book eye test 👓" in goals[key(3)]["description"]


def test_the_old_line_per_task_export_and_comma_string_depends():
    old = [dict(t) for t in TASKS[:4]]
    old[2]["depends"] = f"{uuid(4)},{uuid(1)}"
    lines = ",\r\n".join(json.dumps(t, ensure_ascii=False) for t in old)
    data = ("\ufeff" + lines + "\r\n").encode()
    assert detect_source(data, "export.txt") == "taskwarrior"
    parsed = parse_detected(data, "export.txt", "taskwarrior")
    assert parsed.extras[key(3)]["depends"] == [uuid(4), uuid(1)]
    assert by_id(parsed)[key(1)]["title"] == "Plant tomatoes 🍅"
    single = parse_taskwarrior(json.dumps(TASKS[0]).encode(), now=NOW)
    assert_contract(single, "taskwarrior")
    assert single.tables["Goal"].num_rows == 3


def test_time_forms():
    assert parse_tw_time("20240131T120000Z") == dt.datetime(2024, 1, 31, 12, tzinfo=UTC)
    assert parse_tw_time("2024-01-31T12:00:00Z") == dt.datetime(2024, 1, 31, 12, tzinfo=UTC)
    assert parse_tw_time("1706702400") == dt.datetime(2024, 1, 31, 12, tzinfo=UTC)
    assert parse_tw_time("20241331T120000Z") is None and parse_tw_time("") is None


def test_other_json_is_refused_with_the_file_name():
    with pytest.raises(ImportFormatError, match="tw.json: not a Taskwarrior export"):
        parse_taskwarrior(b'{"tasks": []}', file_name="tw.json")
    with pytest.raises(ImportFormatError, match=r"tw.json, \[0\]: not a Taskwarrior export"):
        parse_taskwarrior(b'[{"id": 1}]', file_name="tw.json")
    with pytest.raises(ImportFormatError, match="tw.json, line 2"):
        parse_taskwarrior((json.dumps(TASKS[0]) + "\n{broken\n").encode(), file_name="tw.json")


def test_fuzzed_files_import_or_are_refused():
    fuzz_parser(parse_taskwarrior, {NAME: DATA}, app="taskwarrior")


# done before entered, done without an end, an end on a pending task, a description over
# the app's 5,000 characters: each imported, adjusted to fit, the adjustment reported
INCONSISTENT = {key(1), key(2), key(12), key(13)}


@pytest.mark.slow
def test_through_the_import_pipeline_then_again_then_edited(database, storage):
    user_id = new_user(database.engine, 151)
    stored = assert_imported_as_parsed(
        database, storage, user_id, DATA, NAME, "taskwarrior", INCONSISTENT
    )
    assert stored[key(3)]["title"] == "Renew Führerschein"
    edited = json.loads(DATA)
    edited[3]["priority"] = "L"
    edited[2]["status"] = "completed"
    edited[2]["end"] = "20240105T080000Z"
    edited[2]["modified"] = "20240105T080000Z"
    assert_reimport_updates_only(
        database,
        storage,
        user_id,
        json.dumps(edited).encode(),
        NAME,
        "taskwarrior",
        {
            key(4): {"priority"},
            key(3): {"isCompleted", "completedAt", "updatedAt"},
        },
    )
