"""Remember The Milk: the account's JSON export and saved REST API replies (with the API's
one-object-for-a-one-element-array quirk) give the same goals under the same keys; lists,
sub-tasks, notes, tags, priorities, repeating series, smart and deleted items; the real
import pipeline."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fuzzing import fuzz_parser
from parser_checks import adjustments_of, by_id, fixture_bytes, parse_detected, rows, zip_bytes
from pipeline_checks import assert_imported_as_parsed, assert_reimport_updates_only, new_user

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.remember_the_milk import many, parse_remember_the_milk

UTC = dt.UTC
APP = "remember_the_milk"
NAME = "rememberthemilk_export.json"
EXPORT = fixture_bytes(APP, NAME)
LISTS_RSP = fixture_bytes(APP, "rtm.lists.getList.json")
TASKS_RSP = fixture_bytes(APP, "rtm.tasks.getList.json")
API_ZIP = zip_bytes({"rtm-backup/lists.json": LISTS_RSP, "rtm-backup/tasks.json": TASKS_RSP})


def series(n: int) -> str:
    return f"remember_the_milk:series:6000000{n}" if n < 10 else f"{APP}:series:600000{n}"


def rtm_list(n: int) -> str:
    return f"remember_the_milk:list:4100000{n}"


@pytest.fixture(scope="module")
def account():
    return parse_detected(EXPORT, NAME, APP)


@pytest.fixture(scope="module")
def api():
    return parse_detected(API_ZIP, "rtm-backup.zip", APP)


def test_lists_tasks_and_subtasks(account):
    goals = by_id(account)
    assert goals[rtm_list(1)]["title"] == "Inbox" and goals[rtm_list(2)]["title"] == "Einkäufe 🛒"
    tax = goals[series(1)]
    assert tax["title"] == "File the tax return 🧾" and tax["parentGoalId"] == rtm_list(1)
    receipts = goals[series(2)]
    assert receipts["parentGoalId"] == series(1)  # parent_id names the parent's task id
    assert receipts["isCompleted"]
    assert receipts["completedAt"] == dt.datetime(2024, 1, 3, 9, tzinfo=UTC)
    assert account.extras[rtm_list(5)]["archived"] is True


def test_fields_notes_tags_priorities_and_dates(account):
    tax = by_id(account)[series(1)]
    assert tax["priority"] == 5 and by_id(account)[series(2)]["priority"] == 3
    assert by_id(account)[series(7)]["priority"] == 1
    assert by_id(account)[series(8)]["priority"] == 2
    assert tax["createdAt"] == dt.datetime(2024, 1, 2, 9, tzinfo=UTC)
    assert tax["updatedAt"] == dt.datetime(2024, 1, 5, 9, tzinfo=UTC)
    assert tax["targetDate"] == dt.date(2024, 4, 14)  # no user zone here: the UTC day
    assert tax["description"] == (
        "Steuer-ID\nLook in the\nletter from 2019\n\nTags: money, yearly"
    )  # the note's CRLF made LF
    extras = account.extras[series(1)]
    assert extras["postponed"] == 2 and extras["url"] == "https://example.invalid/elster"
    assert [n["title"] for n in extras["notes"]] == ["Steuer-ID"]
    # a note over the app's 5,000 characters: shortened, the full text kept and reported
    long_note = by_id(account)[series(2)]["description"]
    assert long_note.startswith("Zeile Zeile") and len(long_note) == 5000
    assert account.extras[series(2)]["sourceDescription"] == ("Zeile " * 3000).rstrip()
    [shortened] = adjustments_of(account, series(2))
    assert shortened.startswith("description of 17999 characters is longer than the app's 5000")
    # a task with no name but a note
    untitled = by_id(account)[series(10)]
    assert untitled["title"] == "Untitled"
    assert untitled["description"] == "a task with no name, only this note"


def test_a_repeating_series_is_one_goal_with_its_occurrences_as_progress(account):
    milk = by_id(account)[series(3)]
    assert milk["title"] == "Milch" and not milk["isCompleted"]
    assert milk["targetDate"] == dt.date(2024, 1, 20)  # the open occurrence's due
    assert account.extras[series(3)]["recurrence"] == "FREQ=WEEKLY;INTERVAL=1"
    progress = [(p["id"], p["value"]) for p in rows(account, "Progress")]
    assert progress == [
        ("remember_the_milk:task:70000003", 1),
        ("remember_the_milk:task:70000004", 1),
        ("remember_the_milk:task:70000005", 0),
    ]
    assert sum(1 for g in rows(account, "Goal") if g["title"] == "Milch") == 1


def test_smart_and_deleted_items_are_skipped_and_orphans_kept(account):
    skipped = {e.source_item.split(" (")[0]: e.reason for e in account.skipped()}
    assert skipped == {
        "list 'Due today'": "a smart list (a saved search, no tasks of its own)",
        "list 'Old list'": "deleted in Remember The Milk",
        "task 'Forgotten idea'": "deleted in Remember The Milk",
    }
    goals = by_id(account)
    placeholder = "remember_the_milk:list:41000099"
    assert goals[series(8)]["parentGoalId"] == placeholder  # a list not in the file
    assert goals[placeholder]["title"] == "Tasks"
    assert goals[series(9)]["parentGoalId"] == rtm_list(1)  # parent task missing
    assert any("79999999" in w for w in account.warnings)


def test_inconsistencies_are_normalised_and_each_adjustment_reported(account):
    back = by_id(account)[series(7)]  # modified and completed before it was created
    assert back["createdAt"] == back["updatedAt"] == dt.datetime(2024, 2, 1, 7, tzinfo=UTC)
    assert back["completedAt"] == dt.datetime(2024, 2, 5, 7, tzinfo=UTC) and back["isCompleted"]
    assert account.extras[series(7)]["sourceCreatedAt"] == "2024-02-10T07:00:00Z"
    assert adjustments_of(account, series(7)) == [
        "last modified (2024-02-01T07:00:00Z) before it was created (2024-02-10T07:00:00Z): "
        "createdAt moved to the earliest known time of the item"
    ]


def test_the_api_replies_give_the_same_goals_under_the_same_keys(account, api):
    from_api, from_export = by_id(api), by_id(account)
    assert set(from_api) == {rtm_list(1), rtm_list(2), series(1), series(2), series(3)}
    for key in (series(1), series(2), series(3)):
        for column in ("title", "parentGoalId", "isCompleted", "completedAt", "targetDate"):
            assert from_api[key][column] == from_export[key][column], (key, column)
    assert from_api[series(1)]["description"] == from_export[series(1)]["description"]
    assert [p["id"] for p in rows(api, "Progress")] == [p["id"] for p in rows(account, "Progress")]
    skipped = sorted(e.source_item.split(" (")[0] for e in api.skipped())
    assert skipped == ["list 'Due today'", "task 'Forgotten idea'", "task series 60000077"]


def test_one_reply_alone_an_array_of_replies_and_the_one_object_quirk():
    assert detect_source(TASKS_RSP, "tasks.json") == APP
    alone = parse_detected(TASKS_RSP, "tasks.json", APP)
    # without the lists reply: placeholder lists under the same keys
    assert by_id(alone)[rtm_list(1)]["title"] == "Tasks"
    both = json.dumps([json.loads(LISTS_RSP), json.loads(TASKS_RSP)]).encode()
    assert by_id(parse_detected(both, "backup.json", APP))[rtm_list(1)]["title"] == "Inbox"
    assert many({"a": 1}) == [{"a": 1}] and many([1]) == [1] and many("") == []


def test_a_saved_api_error_and_other_json_are_refused():
    error = b'{"rsp": {"stat": "fail", "err": {"code": "98", "msg": "Invalid auth token"}}}'
    with pytest.raises(ImportFormatError, match="rtm.json.*Invalid auth token"):
        parse_remember_the_milk(error, file_name="rtm.json")
    with pytest.raises(ImportFormatError, match="rtm.json: not a Remember The Milk export"):
        parse_remember_the_milk(b'{"lists": [], "tasks": "x"}', file_name="rtm.json")


def test_fuzzed_files_import_or_are_refused():
    samples = {NAME: EXPORT, "rtm.tasks.getList.json": TASKS_RSP}
    fuzz_parser(parse_remember_the_milk, samples, app=APP)


# the back-dated task, and the sub-task whose long note is over the app's 5,000 characters:
# both imported, adjusted to fit, each adjustment reported
INCONSISTENT = {series(7), series(2)}


@pytest.mark.slow
def test_through_the_import_pipeline_then_again_then_edited(database, storage):
    user_id = new_user(database.engine, 153)
    stored = assert_imported_as_parsed(database, storage, user_id, EXPORT, NAME, APP, INCONSISTENT)
    assert stored[series(3)]["title"] == "Milch"
    edited = json.loads(EXPORT)
    milk = edited["tasks"][4]
    milk.update(date_completed=milk["date_due"] + 3600_000, date_modified=milk["date_due"])
    edited["tasks"][7]["name"] = "In a list not in the file (renamed)"
    assert_reimport_updates_only(
        database,
        storage,
        user_id,
        json.dumps(edited).encode(),
        NAME,
        APP,
        {
            series(3): {"isCompleted", "completedAt", "updatedAt"},
            series(8): {"title"},
        },
        progress_updates=1,  # the occurrence done now: 1 of 1
    )


@pytest.mark.slow
def test_a_refused_file_ends_its_job_failed_with_one_line(database, storage):
    from assets.imports.jobs import create_import_job, get_import_job
    from assets.imports.preview import preview_import

    user_id = new_user(database.engine, 155)
    error = b'{"rsp": {"stat": "fail", "err": {"code": "98", "msg": "Invalid auth token"}}}'
    for data in (EXPORT[: len(EXPORT) // 2], error):
        job_id = create_import_job(database.engine, user_id=user_id, file_name="rtm.json")
        with pytest.raises(ImportFormatError):
            preview_import(database, storage, job_id, data)
        job = get_import_job(database.engine, job_id)
        assert job["status"] == "failed"
        assert job["errorMessage"].startswith("rtm.json") and "\n" not in job["errorMessage"]
