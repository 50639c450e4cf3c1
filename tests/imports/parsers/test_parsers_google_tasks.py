"""Google Takeout Tasks.json: lists, tasks, one level of sub-tasks, completion, dates."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from parser_checks import (
    NOW,
    assert_contract,
    bad_rows,
    by_title,
    fixture_bytes,
    parse_detected,
    rows,
    zip_bytes,
)

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.google_tasks import parse_google_tasks

UTC = dt.UTC


@pytest.fixture(scope="module")
def takeout():
    data = zip_bytes(
        {
            "Takeout/Tasks/Tasks.json": fixture_bytes("google_tasks", "Tasks.json"),
            "Takeout/archive_browser.html": "<html></html>",
        }
    )
    return parse_detected(data, "takeout-20240301.zip", "google_tasks")


def test_lists_tasks_and_subtasks(takeout):
    goals = by_title(takeout)
    my_tasks = goals["My Tasks"]
    assert my_tasks["id"] == "google_tasks:list:MTAxMjM0NTY3ODkw"
    plants = goals["Water the plants 🌿"]
    assert plants["parentGoalId"] == my_tasks["id"]
    assert goals["Fill the can"]["parentGoalId"] == plants["id"]
    assert goals["Ünïcödé list"]["parentGoalId"] is None  # a list with no `items` key


def test_completion_dates_and_fields(takeout):
    goals = by_title(takeout)
    can = goals["Fill the can"]
    assert can["isCompleted"] is True
    assert can["completedAt"] == dt.datetime(2024, 2, 3, 7, 8, 9, 999000, tzinfo=UTC)
    plants = goals["Water the plants 🌿"]
    assert plants["targetDate"] == dt.date(2024, 3, 2)
    assert plants["description"] == "Balcony first\nthen the kitchen"
    assert plants["priority"] == 4  # starred
    assert plants["createdAt"] == dt.datetime(2024, 2, 1, 10, tzinfo=UTC)
    assert plants["updatedAt"] == dt.datetime(2024, 2, 2, 11, 22, 33, 456000, tzinfo=UTC)
    assert takeout.extras[plants["id"]]["position"] == "00000000000000000001"
    assert takeout.extras[goals["Dentist"]["id"]]["links"][0]["type"] == "email"


def test_a_due_time_from_calendar_is_a_day_in_the_users_zone():
    data = fixture_bytes("google_tasks", "Tasks.json")
    utc = by_title(parse_google_tasks(data, now=NOW))["Dentist"]
    tokyo = by_title(parse_google_tasks(data, now=NOW, timezone="Asia/Tokyo"))["Dentist"]
    assert (utc["targetDate"], tokyo["targetDate"]) == (dt.date(2024, 3, 4), dt.date(2024, 3, 5))
    # A date-only due (midnight UTC) stays that day in every zone.
    plants = by_title(parse_google_tasks(data, now=NOW, timezone="America/New_York"))
    assert plants["Water the plants 🌿"]["targetDate"] == dt.date(2024, 3, 2)


def test_deleted_and_empty_tasks_are_reported(takeout):
    skipped = {e.external_key: e.reason for e in takeout.skipped()}
    assert skipped["google_tasks:task:dGFzazQ"] == "deleted in Google Tasks"
    assert "empty task" in skipped["google_tasks:task:dGFzazU"]
    assert "Gone" not in by_title(takeout)


def test_empty_export_and_bare_json():
    data = json.dumps({"kind": "tasks#taskLists", "items": []}).encode()
    assert detect_source(data, "Tasks.json") == "google_tasks"
    parsed = parse_google_tasks(data, now=NOW)
    assert_contract(parsed, "google_tasks")
    assert rows(parsed, "Goal") == [] and rows(parsed, "Module") == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"kind": "tasks#taskLists", "items": [{"title": "no id"}]},
            "Tasks.json, items[0], field 'id': missing or not text",
        ),
        ({"kind": "something#else"}, "Tasks.json, field 'kind': not a Google Tasks export"),
    ],
)
def test_malformed_exports_name_the_item(doc, message):
    with pytest.raises(ImportFormatError, match="^" + re.escape(message)):
        parse_google_tasks(json.dumps(doc).encode(), file_name="Tasks.json")


def test_a_task_that_cannot_be_read_is_skipped_alone():
    tasks = [{"id": "t", "title": "x", "due": "someday"}, {"id": "u", "title": "Fine"}]
    doc = {"kind": "tasks#taskLists", "items": [{"id": "l", "title": "L", "items": tasks}]}
    parsed = parse_google_tasks(json.dumps(doc).encode(), file_name="Tasks.json", now=NOW)
    assert_contract(parsed, "google_tasks")
    assert sorted(by_title(parsed)) == ["Fine", "L"]
    assert bad_rows(parsed) == [
        ("task (Tasks.json, items[0].items[0])", "field 'due': 'someday' is not a date")
    ]


def test_a_zip_without_tasks_json_is_refused():
    with pytest.raises(ImportFormatError, match="takeout.zip: the zip holds no Takeout"):
        parse_google_tasks(zip_bytes({"Takeout/Mail/x.mbox": "x"}), file_name="takeout.zip")
