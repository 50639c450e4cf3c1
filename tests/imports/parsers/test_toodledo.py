"""Toodledo's CSV exports (current tasks, completed tasks, notes), each on its own: its goals
as goals with their tasks beneath, folders/contexts/stars kept, content-built keys that
survive a re-export; BOM, CRLF, unicode; the real import pipeline."""

from __future__ import annotations

import datetime as dt

import pytest
from fuzzing import fuzz_parser
from parser_checks import (
    NOW,
    adjustments_of,
    assert_contract,
    by_title,
    fixture_bytes,
    parse_detected,
)
from pipeline_checks import assert_imported_as_parsed, assert_reimport_updates_only, new_user

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.toodledo import (
    clock_time,
    is_toodledo_header,
    is_toodledo_notes_header,
    parse_toodledo,
)

UTC = dt.UTC
APP = "toodledo"
TASKS = fixture_bytes(APP, "toodledo_tasks.csv")
COMPLETED = fixture_bytes(APP, "toodledo_completed.csv")
NOTES = fixture_bytes(APP, "toodledo_notes.csv")


@pytest.fixture(scope="module")
def current():
    return parse_detected(TASKS, "toodledo_tasks.csv", APP)


@pytest.fixture(scope="module")
def completed():
    return parse_detected(COMPLETED, "toodledo_completed.csv", APP)


def test_toodledo_goals_hold_their_tasks(current):
    goals = by_title(current)
    novel = goals["Finish the novel"]
    assert novel["id"] == "toodledo:goal:Finish the novel" and novel["parentGoalId"] is None
    assert goals["Write chapter 1 ✍️"]["parentGoalId"] == novel["id"]
    assert goals["Research the setting"]["parentGoalId"] == novel["id"]
    assert goals["Run 5 km"]["parentGoalId"] == goals["Get fit 🏃"]["id"]
    assert goals["Ünïcödé ☃ task"]["parentGoalId"] is None  # no goal: a goal of its own


def test_fields_priorities_dates_and_extras(current):
    goals = by_title(current)
    chapter = goals["Write chapter 1 ✍️"]
    assert chapter["priority"] == 5 and chapter["targetDate"] == dt.date(2024, 2, 29)
    assert chapter["description"] == "Outline first\nthen the scenes\n\nTags: book, drafts"
    assert chapter["createdAt"] == dt.datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert chapter["updatedAt"] == dt.datetime(2024, 1, 15, 12, tzinfo=UTC)
    extras = current.extras[chapter["id"]]
    assert extras["folder"] == "Writing" and extras["context"] == "@desk"
    assert extras["star"] is True and extras["status"] == "Next Action"
    assert extras["due"] == "2024-02-29T17:00:00.000Z"  # 5:00pm read in UTC (no user zone)
    assert (extras["length"], extras["timer"], extras["location"]) == ("120", "3600", "Home")
    priorities = [goals[t]["priority"] for t in ("Research the setting", "Run 5 km", "Untitled")]
    assert priorities == [4, 3, 1]
    unicode = goals["Ünïcödé ☃ task"]
    assert unicode["priority"] == 3 and unicode["targetDate"] == dt.date(2024, 1, 31)
    assert unicode["description"] == "Line one\nLine two"
    assert current.extras[goals["Run 5 km"]["id"]]["recurrence"] == "Weekly"
    assert "Repeats: Weekly" in goals["Run 5 km"]["description"]


def test_same_titles_unreadable_dates_and_inconsistencies(current):
    calls = [g for g in current.tables["Goal"].to_pylist() if g["title"] == "Call mum"]
    assert len(calls) == 2 and calls[0]["id"] != calls[1]["id"]
    # modified before added: createdAt moved to the last change, the source kept and said
    assert calls[0]["createdAt"] == calls[0]["updatedAt"] == dt.datetime(2024, 1, 4, 12, tzinfo=UTC)
    assert current.extras[calls[0]["id"]]["sourceCreatedAt"] == "2024-01-06T12:00:00Z"
    assert adjustments_of(current, calls[0]["id"]) == [
        "last modified (2024-01-04T12:00:00Z) before it was created (2024-01-06T12:00:00Z): "
        "createdAt moved to the earliest known time of the item"
    ]
    assert adjustments_of(current, calls[1]["id"]) == []
    bad = by_title(current)["Bad date task"]
    assert bad["targetDate"] is None
    assert current.warnings == [
        "toodledo_tasks.csv, row 9, field 'DUEDATE': 'someday soon' is not a date; left empty"
    ]


def test_the_completed_export_and_keys_shared_with_the_current_one(current, completed):
    goals = by_title(completed)
    outline = goals["Outline the plot"]
    assert outline["isCompleted"]
    assert outline["completedAt"] == dt.datetime(2024, 1, 9, 12, tzinfo=UTC)
    assert outline["parentGoalId"] == "toodledo:goal:Finish the novel"  # the same goal key
    back = goals["Back-dated task"]
    assert back["createdAt"] == back["updatedAt"] == dt.datetime(2024, 2, 1, 12, tzinfo=UTC)
    assert back["completedAt"] == dt.datetime(2024, 2, 5, 12, tzinfo=UTC)
    [moved_back] = adjustments_of(completed, back["id"])
    assert moved_back.startswith("last modified (2024-02-01T12:00:00Z) before it was created")
    # a task moved from the current export to the completed one keeps its key
    moved = TASKS.replace(b'"Research the setting"', b'"Outline the plot"').replace(
        b'"2024-01-01","2024-01-02"', b'"2024-01-01","2024-01-09"'
    )
    again = by_title(parse_toodledo(moved, now=NOW))
    assert again["Outline the plot"]["id"] == outline["id"]


def test_the_notes_export():
    parsed = parse_detected(NOTES, "toodledo_notes.csv", APP)
    goals = by_title(parsed)
    packing = goals["Packing list 🎒"]
    assert packing["parentGoalId"] == goals["Travel"]["id"] == "toodledo:folder:Travel"
    assert packing["description"] == "Passport\nCharger\nSocks"
    assert goals["Book ideas"]["parentGoalId"] == "toodledo:folder:Notes"
    assert goals["Untitled note body"]["parentGoalId"] == "toodledo:folder:Travel"
    assert packing["createdAt"] == dt.datetime(2023, 6, 1, 12, tzinfo=UTC)


def test_time_columns():
    assert clock_time("5:00pm") == dt.time(17) and clock_time("12:30 AM") == dt.time(0, 30)
    assert clock_time("5pm") == dt.time(17) and clock_time("17:05") == dt.time(17, 5)
    assert [clock_time(t) for t in ("", "13pm", "25:00", "noon", "5:123")] == [None] * 5


def test_headers_and_other_csvs():
    assert is_toodledo_header({"task", "folder", "context", "duedate"})
    assert not is_toodledo_header({"task", "priority", "status", "note"})
    assert is_toodledo_notes_header({"title", "folder", "added", "note"})
    assert not is_toodledo_notes_header({"title", "note"})
    for other in (b"TASK,NOTE\r\nx,y\r\n", b"name,amount\nrent,900\n"):
        assert detect_source(other, "x.csv") != APP
    with pytest.raises(ImportFormatError, match="t.csv: no Toodledo header found"):
        parse_toodledo(b"a,b\n1,2\n", file_name="t.csv")
    header_only = parse_toodledo(TASKS.split(b"\r\n")[0] + b"\r\n", file_name="t.csv", now=NOW)
    assert_contract(header_only, APP)
    assert header_only.tables["Goal"].num_rows == 0


def test_sub_tasks_by_id_or_by_title():
    csv = (
        b"ID,PARENT,TASK,FOLDER,CONTEXT,GOAL,DUEDATE,PRIORITY\n"
        b"11,0,Move house,Home,,,2024-05-01,2\n"
        b"12,11,Pack books,Home,,,,1\n"
        b"13,99,Orphan,Home,,,,1\n"
    )
    goals = by_title(parse_detected(csv, "tasks.csv", APP))
    assert goals["Pack books"]["parentGoalId"] == "toodledo:task:11"
    assert goals["Orphan"]["parentGoalId"] is None
    titled = csv.replace(b"12,11,", b",Move house,").replace(b"ID,PARENT", b"X,PARENT")
    assert by_title(parse_toodledo(titled, now=NOW))["Pack books"]["parentGoalId"] is not None


def test_fuzzed_files_import_or_are_refused():
    samples = {"toodledo_tasks.csv": TASKS, "toodledo_notes.csv": NOTES}
    fuzz_parser(parse_toodledo, samples, app=APP)


@pytest.mark.slow
def test_through_the_import_pipeline_then_again_then_edited(database, storage):
    user_id = new_user(database.engine, 154)
    parsed = parse_toodledo(TASKS, now=NOW)
    call_mum = next(g["id"] for g in parsed.tables["Goal"].to_pylist() if g["title"] == "Call mum")
    inconsistent = {call_mum}  # modified before added
    stored = assert_imported_as_parsed(
        database, storage, user_id, TASKS, "toodledo_tasks.csv", APP, inconsistent
    )
    chapter = by_title(parsed)["Write chapter 1 ✍️"]["id"]
    assert stored[chapter]["targetDate"] == dt.date(2024, 2, 29)
    edited = TASKS.replace(b'"Outline first\nthen the scenes"', b'"Outline first"').replace(
        b'"Run 5 km","Health","@outside","Get fit \xf0\x9f\x8f\x83","Park","","","2024-03-10"',
        b'"Run 5 km","Health","@outside","Get fit \xf0\x9f\x8f\x83","Park","","","2024-03-17"',
    )
    assert edited.count(b"2024-03-17") == 1 and b"then the scenes" not in edited
    run = by_title(parsed)["Run 5 km"]["id"]
    assert_reimport_updates_only(
        database,
        storage,
        user_id,
        edited,
        "toodledo_tasks.csv",
        APP,
        {chapter: {"description"}, run: {"targetDate"}},
    )
