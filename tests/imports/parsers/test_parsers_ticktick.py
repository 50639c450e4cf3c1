"""TickTick backup CSV: preamble, lists, sub-tasks before parents, all-day dates, checklists."""

from __future__ import annotations

import datetime as dt

import pytest
from parser_checks import (
    NOW,
    assert_contract,
    bad_rows,
    by_title,
    fixture_bytes,
    parse_detected,
    rows,
)

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.ticktick import parse_ticktick

UTC = dt.UTC
NAME = "TickTick-backup-2024-03-10.csv"
HEADER_V3 = (
    '"List Name","Title","Content","Is Checklist","Start Date","Due Date","Reminder",'
    '"Repeat","Priority","Status","Completed Time","Order","Timezone","Is All Day"'
)


@pytest.fixture(scope="module")
def backup():
    return parse_detected(fixture_bytes("ticktick", NAME), NAME, "ticktick")


def test_lists_tasks_and_subtasks_listed_before_their_parent(backup):
    goals = by_title(backup)
    inbox = goals["Inbox"]
    assert inbox["id"] == "ticktick:list:Inbox" and inbox["parentGoalId"] is None
    dentist = goals["Call the dentist"]
    assert dentist["id"] == "ticktick:task:9001" and dentist["parentGoalId"] == inbox["id"]
    assert goals["Book the hygienist"]["parentGoalId"] == dentist["id"]
    assert goals["Weekly groceries"]["parentGoalId"] == goals["Courses 🛒"]["id"]
    assert backup.extras[goals["Courses 🛒"]["id"]]["folder"] == "Home"


def test_all_day_dates_are_the_local_day_and_times_are_utc(backup):
    goals = by_title(backup)
    dentist = goals["Call the dentist"]
    assert dentist["targetDate"] == dt.date(2021, 6, 15)  # 22:00Z all-day in Paris
    assert dentist["createdAt"] == dt.datetime(2023, 5, 10, 9, 12, 44, tzinfo=UTC)
    groceries = goals["Weekly groceries"]
    # "2024-01-31 18:00:00" has no offset: read in the row's zone (New York, UTC-5).
    assert backup.extras[groceries["id"]]["due"] == "2024-01-31T23:00:00.000Z"
    assert groceries["targetDate"] == dt.date(2024, 1, 31)
    assert groceries["completedAt"] == dt.datetime(2024, 1, 31, 17, 45, 30, tzinfo=UTC)


def test_status_priority_tags_recurrence(backup):
    goals = by_title(backup)
    dentist, groceries = goals["Call the dentist"], goals["Weekly groceries"]
    archived = goals["Old archived chore"]
    assert (dentist["isCompleted"], groceries["isCompleted"], archived["isCompleted"]) == (
        False,
        True,
        True,
    )
    assert backup.extras[archived["id"]]["archived"] is True
    assert (dentist["priority"], groceries["priority"], archived["priority"]) == (3, 5, 1)
    assert goals["Book the hygienist"]["priority"] == 2
    assert backup.extras[dentist["id"]]["labels"] == ["health", "😬"]
    assert dentist["description"] == "Ask about\nthe bill\n\nTags: health, 😬"
    assert backup.extras[groceries["id"]]["recurrence"] == "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU,TH"


def test_checklist_content_becomes_progress_and_notes_are_skipped(backup):
    groceries = by_title(backup)["Weekly groceries"]
    items = [(p["notes"], p["value"]) for p in rows(backup, "Progress")]
    assert items == [("Milk", 1), ("Bread", 0), ("Œufs", 0)]
    assert all(p["goalId"] == groceries["id"] for p in rows(backup, "Progress"))
    assert groceries["description"] is not None and "Milk" not in groceries["description"]
    assert any(e.reason == "a TickTick note, not a task" for e in backup.skipped())


def test_old_version_without_ids_kind_or_preamble_and_header_only():
    data = (
        HEADER_V3 + '\n"Inbox","Plain task","","N","","2024-02-01T10:00:00+0000","","",'
        '"0","0","","1","UTC","false"\n'
    ).encode("utf-8")
    parsed = parse_ticktick(data, file_name="old.csv", now=NOW)
    assert_contract(parsed, "ticktick")
    task = by_title(parsed)["Plain task"]
    assert task["id"].startswith("ticktick:task:h") and task["targetDate"] == dt.date(2024, 2, 1)
    assert task["id"] == by_title(parse_ticktick(data, now=NOW))["Plain task"]["id"]
    empty = parse_ticktick(HEADER_V3.encode() + b"\n", file_name="empty.csv", now=NOW)
    assert_contract(empty, "ticktick")
    assert empty.tables["Goal"].num_rows == 0


@pytest.mark.parametrize(
    ("column", "value", "note"),
    [
        ("Due Date", "next week", "Due Date 'next week' is not a date: left empty"),
        ("Priority", "7", "Priority '7' is not a TickTick priority"),
        ("Status", "done", "Status 'done' is not a TickTick status (0, 1, 2): imported as open"),
    ],
)
def test_unreadable_cells_are_adjusted_on_their_row(column, value, note):
    values = {"Due Date": "", "Priority": "0", "Status": "0"}
    values[column] = value
    data = (
        HEADER_V3 + f'\n"Inbox","Task","","N","","{values["Due Date"]}","","",'
        f'"{values["Priority"]}","{values["Status"]}","","1","UTC","false"\n'
    ).encode()
    parsed = parse_ticktick(data, file_name="tt.csv", now=NOW)
    assert_contract(parsed, "ticktick")
    task = by_title(parsed)["Task"]
    assert (task["priority"], task["isCompleted"], task["targetDate"]) == (2, False, None)
    [entry] = parsed.adjusted()
    assert entry.external_key == task["id"] and "tt.csv, row 2" in entry.source_item
    assert entry.adjustments[0].startswith(note)
    assert bad_rows(parsed) == []


def test_a_csv_of_something_else_is_refused():
    with pytest.raises(ImportFormatError, match="tt.csv: no TickTick header found"):
        parse_ticktick(b"a,b\n1,2\n", file_name="tt.csv")
