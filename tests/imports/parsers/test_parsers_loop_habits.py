"""Loop Habit Tracker CSV export: habits, per-habit and root check marks, measurable habits."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from parser_checks import FIXTURES, NOW, assert_contract, by_title, parse_detected, rows, zip_bytes

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.loop_habits import parse_loop_habits, sanitized_habit_name

UTC = dt.UTC
EXPORT = FIXTURES / "loop_habits" / "export"


def export_members(prefix: str = "") -> dict[str, bytes]:
    members = {
        prefix + p.relative_to(EXPORT).as_posix(): p.read_bytes()
        for p in sorted(EXPORT.rglob("*"))
        if p.is_file()
    }
    # "日記" loses every character to Loop's folder-name sanitising: the folder is "003 ".
    members[f"{prefix}003 /Checkmarks.csv"] = b"Date,Value,Notes\n2024-02-03,YES_MANUAL,\n"
    return members


@pytest.fixture(scope="module")
def loop():
    data = zip_bytes(export_members())
    return parse_detected(data, "Loop Habits CSV 2024-02-03.zip", "loop_habits")


def test_habits_become_goals_with_frequency_and_colour(loop):
    goals = by_title(loop)
    assert list(goals) == ["Meditate", "Run", "日記", "Read, books"]
    meditate = goals["Meditate"]
    assert meditate["id"] == "loop_habits:habit:Meditate" and meditate["parentGoalId"] is None
    assert meditate["description"] == (
        "Did you meditate today?\n\nSit quietly\n\nRepeats: every day"
    )
    assert loop.extras[goals["Run"]["id"]]["recurrence"] == "3 times a week"
    assert loop.extras[goals["Run"]["id"]]["unit"] == "km"
    assert loop.extras[meditate["id"]]["color"] == "#FF8F00"
    assert loop.extras[goals["Read, books"]["id"]]["archived"] is True
    # Created and updated at the first and last marked day.
    assert meditate["createdAt"] == dt.datetime(2024, 1, 29, 12, tzinfo=UTC)
    assert meditate["updatedAt"] == dt.datetime(2024, 2, 3, 12, tzinfo=UTC)


def test_check_ins_from_per_habit_files(loop):
    goals = by_title(loop)
    progress = rows(loop, "Progress")
    meditate = [p for p in progress if p["goalId"] == goals["Meditate"]["id"]]
    assert [(p["recordedAt"].date(), p["value"], p["notes"]) for p in meditate] == [
        (dt.date(2024, 2, 3), 1, "Calm, 10 min"),
        (dt.date(2024, 1, 29), 1, None),
    ]
    assert meditate[0]["id"] == "loop_habits:checkmark:Meditate:2024-02-03"
    assert meditate[0]["recordedAt"] == dt.datetime(2024, 2, 3, 12, tzinfo=UTC)
    skipped = {e.reason: e.count for e in loop.skipped() if "Meditate" in e.source_item}
    assert skipped == {
        "check mark says skipped: not a check-in": 1,
        "check mark says not needed that day: not a check-in": 1,
        "check mark says not done: not a check-in": 1,
        "check mark says unknown: not a check-in": 1,
    }
    diary = [p for p in progress if p["goalId"] == goals["日記"]["id"]]
    assert len(diary) == 1


def test_measurable_habits_keep_amounts_and_target(loop):
    run = by_title(loop)["Run"]
    amounts = [
        (p["value"], p["maxValue"]) for p in rows(loop, "Progress") if p["goalId"] == run["id"]
    ]
    # above the target: the app keeps value <= maxValue, so the target gives way (reported)
    assert amounts == [(Decimal("5.00"), Decimal("5.00")), (Decimal("12.50"), Decimal("12.50"))]
    raised = [e for e in loop.adjusted() if e.target_table == "Progress"]
    assert len(raised) == 1 and "target is raised" in raised[0].adjustments[0]
    assert loop.extras[raised[0].external_key]["sourceMaxValue"] == "5.00"


def test_root_checkmarks_fill_in_an_empty_per_habit_file(loop):
    books = by_title(loop)["Read, books"]
    marks = [p for p in rows(loop, "Progress") if p["goalId"] == books["id"]]
    assert [p["recordedAt"].date() for p in marks] == [dt.date(2024, 2, 3)]
    assert any(e.source_item == "Scores.csv files" for e in loop.skipped())


def test_loop_2_0_entry_bug_and_spreadsheet_dates_in_the_root_file():
    members = {
        "Habits.csv": b"\xef\xbb\xbfPosition,Name,Question,Description,NumRepetitions,Interval,Color\r\n"
        b"0,Walk,,,1,1,#FF0000\r\n1,Swim,,,1,7,#0000FF\r\n",
        "Checkmarks.csv": b"Date,Walk,Swim,\n"
        b"02-03-24,Entry(timestamp=2024-02-03, value=2),"
        b"Entry(timestamp=2024-02-03, value=0),\n",
    }
    parsed = parse_loop_habits(zip_bytes(members), file_name="old.zip", now=NOW)
    assert_contract(parsed, "loop_habits")
    goals = by_title(parsed)
    marks = rows(parsed, "Progress")
    assert [(p["goalId"], p["recordedAt"].date()) for p in marks] == [
        (goals["Walk"]["id"], dt.date(2024, 2, 3))
    ]
    assert parsed.extras[goals["Swim"]["id"]]["recurrence"] == "once a week"


def test_habits_csv_alone_and_empty_export():
    parsed = parse_loop_habits(
        (EXPORT / "Habits.csv").read_bytes(), file_name="Habits.csv", now=NOW
    )
    assert_contract(parsed, "loop_habits")
    assert parsed.tables["Goal"].num_rows == 4 and parsed.tables["Progress"].num_rows == 0
    assert any("only Habits.csv" in w for w in parsed.warnings)
    empty = parse_loop_habits(
        zip_bytes(
            {"Habits.csv": "Position,Name,Question,Description,NumRepetitions,Interval,Color\n"}
        ),
        now=NOW,
    )
    assert_contract(empty, "loop_habits")
    assert empty.tables["Goal"].num_rows == 0


def test_malformed_check_marks_name_file_row_and_field():
    members = export_members("Loop Habits CSV 2024-02-03/")
    members["Loop Habits CSV 2024-02-03/002 Run/Checkmarks.csv"] = (
        b"2024-02-03,5000\n31/31/2024,2\n"
    )
    with pytest.raises(ImportFormatError) as caught:
        parse_loop_habits(zip_bytes(members), file_name="loop.zip")
    assert str(caught.value).startswith(
        "loop.zip/Loop Habits CSV 2024-02-03/002 Run/Checkmarks.csv, row 2, field 'Date': "
        "'31/31/2024' is not a date"
    )
    members["Loop Habits CSV 2024-02-03/002 Run/Checkmarks.csv"] = b"2024-02-03,lots\n"
    with pytest.raises(ImportFormatError, match=r"002 Run/Checkmarks.csv, row 1, field 'Value'"):
        parse_loop_habits(zip_bytes(members), file_name="loop.zip")


def test_folder_names_follow_loops_sanitising():
    assert sanitized_habit_name("Read, books") == "Read books"
    assert sanitized_habit_name("日記") == ""
    assert sanitized_habit_name("Café 10 km/day") == "Caf 10 kmday"
