"""Microsoft To Do, as saved Graph pages: lists, task pages with next/delta links, a list
object around its tasks, a zip of them; Windows and IANA zones, HTML notes, steps as
sub-goals, repeated and removed tasks; the real import pipeline."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fuzzing import fuzz_parser
from parser_checks import (
    FIXTURES,
    NOW,
    adjustments_of,
    by_id,
    fixture_bytes,
    parse_detected,
    zip_folder,
)
from pipeline_checks import assert_imported_as_parsed, assert_reimport_updates_only, new_user

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.microsoft_todo import (
    graph_zone,
    html_to_text,
    parse_microsoft_todo,
    recurrence_text,
)

UTC = dt.UTC
EXPORT = FIXTURES / "microsoft_todo" / "export"
DATA = zip_folder(EXPORT, prefix="todo-backup/")
NAME = "todo-backup.zip"
L1, L2 = "AAMkADIyAAAhrbPWAAA=", "AQMkADAwATM0MDAAMS0yNwBk"
PAGE_1 = f"lists/{L1}/tasks-page-1.json"


def task(n: str) -> str:
    return f"microsoft_todo:task:AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AmpT{n}"


@pytest.fixture(scope="module")
def backup():
    return parse_detected(DATA, NAME, "microsoft_todo")


def test_lists_tasks_and_steps_nest(backup):
    goals = by_id(backup)
    tasks_list = goals[f"microsoft_todo:list:{L1}"]
    assert tasks_list["title"] == "Tasks" and tasks_list["parentGoalId"] is None
    assert backup.extras[tasks_list["id"]]["wellknownListName"] == "defaultList"
    for n in "123456":  # page 1 (context names the list) and the delta page (deltaLink does)
        assert goals[task(n)]["parentGoalId"] == tasks_list["id"], n
    # tasks inside their list object
    courses = goals[f"microsoft_todo:list:{L2}"]
    assert courses["title"] == "Courses 🛒"
    inside = [g["title"] for g in goals.values() if g["parentGoalId"] == courses["id"]]
    assert sorted(inside) == ["Lait d'avoine", "Pain 🥖"]
    step_1, step_2 = goals["microsoft_todo:step:step-1"], goals["microsoft_todo:step:step-2"]
    assert step_1["parentGoalId"] == task("1") and step_1["isCompleted"]
    assert step_1["completedAt"] == dt.datetime(2024, 1, 11, 18, tzinfo=UTC)
    assert (step_2["title"], step_2["isCompleted"]) == ("Photos 📸", False)


def test_fields_html_body_importance_categories_and_recurrence(backup):
    goals = by_id(backup)
    passport = goals[task("1")]
    assert passport["title"] == "Renew passport 🛂" and passport["priority"] == 4
    assert passport["description"] == (
        "Bring the old one & two photos\nOffice: Rathaus\nRoom 3\n\nTags: Red category, Family 👪"
    )
    assert passport["createdAt"] == dt.datetime(2024, 1, 10, 9, 14, 2, 123000, tzinfo=UTC)
    extras = backup.extras[task("1")]
    assert extras["labels"] == ["Red category", "Family 👪"] and extras["isReminderOn"] is True
    assert extras["reminder"] == "2024-02-28T16:00:00.000Z"  # 17:00 W. Europe (UTC+1)
    rent = goals[task("2")]
    assert rent["isCompleted"]
    assert rent["completedAt"] == dt.datetime(2024, 2, 2, 23, tzinfo=UTC)  # midnight, Berlin
    assert backup.extras[task("2")]["recurrence"] == "every month on day 5"
    assert "Repeats: every month on day 5" in rent["description"]
    assert goals[task("3")]["priority"] == 1
    assert backup.extras[task("5")]["recurrence"] == (
        "every 2 weeks on monday, wednesday, until 2024-06-30"
    )
    assert backup.extras["microsoft_todo:task:BBkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AmpU2"][
        "status"
    ] == ("waitingOnOthers")


def test_due_dates_in_windows_and_iana_zones(backup):
    goals = by_id(backup)
    assert goals[task("1")]["targetDate"] == dt.date(2024, 3, 1)  # midnight, Pacific
    assert backup.extras[task("1")]["due"] == "2024-03-01T08:00:00.000Z"
    assert goals[task("2")]["targetDate"] == dt.date(2024, 2, 5)  # midnight UTC
    pain = goals["microsoft_todo:task:BBkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AmpU2"]
    assert pain["targetDate"] == dt.date(2024, 2, 16)  # midnight, Tokyo Standard Time
    assert graph_zone("W. Europe Standard Time").key == "Europe/Berlin"
    assert graph_zone("Europe/Paris").key == "Europe/Paris"
    assert graph_zone("tzone://Microsoft/Utc") is UTC and graph_zone("Mars Time") is None


def test_repeated_and_removed_tasks_and_inconsistencies(backup):
    goals = by_id(backup)
    # the stale copy on the delta page is older than page 1's: page 1's title stays
    assert goals[task("1")]["title"] == "Renew passport 🛂"
    assert any("repeated on several pages" in w for w in backup.warnings)
    removed = [e for e in backup.skipped() if "@removed" in e.reason]
    assert len(removed) == 1 and "AmpT9" in removed[0].source_item
    # each inconsistency is fitted to the app's rules and said in the mapping report
    chore = goals[task("3")]  # done before created, modified before created
    assert chore["createdAt"] == chore["updatedAt"] == dt.datetime(2024, 2, 1, 8, tzinfo=UTC)
    assert chore["completedAt"] == dt.datetime(2024, 2, 5, tzinfo=UTC)
    assert backup.extras[task("3")]["sourceCreatedAt"] == "2024-02-10T08:00:00Z"
    [moved] = adjustments_of(backup, task("3"))
    assert moved.startswith("last modified (2024-02-01T08:00:00Z) before it was created")
    done = goals[task("4")]
    assert done["isCompleted"] and done["completedAt"] == done["updatedAt"]
    assert adjustments_of(backup, task("4")) == [
        "done without a completion time: completedAt taken from the last change"
    ]
    open_one = goals[task("5")]
    assert not open_one["isCompleted"] and open_one["completedAt"] is None
    assert backup.extras[task("5")]["sourceCompletedAt"] == "2024-02-11T00:00:00Z"
    [reopened] = adjustments_of(backup, task("5"))
    assert reopened.startswith("open, but with a completion time: the item stays open")
    assert any("Customized Time Zone" in w for w in backup.warnings)
    assert goals[task("6")]["title"] == "Untitled"
    assert goals[task("6")]["description"] == "untitled, with a note"


def test_one_page_alone_and_a_newer_copy_wins():
    page = fixture_bytes("microsoft_todo", "tasks-page.json")
    parsed = parse_detected(page, "tasks.json", "microsoft_todo")
    goals = by_id(parsed)
    # the page names its list only in its URLs: a placeholder list goal under that id
    assert goals[f"microsoft_todo:list:{L1}"]["title"] == "Tasks"
    assert goals[task("1")]["updatedAt"] == dt.datetime(2024, 2, 20, 10, tzinfo=UTC)
    lists_only = (EXPORT / "lists.json").read_bytes()
    assert len(parse_detected(lists_only, "lists.json", "microsoft_todo").tables["Goal"]) == 2


def test_helpers():
    assert html_to_text("<p>a&nbsp;b</p><ul><li>one</li><li>two</li></ul>") == "a b\none\ntwo"
    assert recurrence_text({"pattern": {"type": "daily", "interval": 3}}) == "every 3 days"
    assert recurrence_text({"pattern": {}}) is None


def test_other_json_and_empty_zip_are_refused():
    with pytest.raises(ImportFormatError, match="x.json: not a Microsoft To Do"):
        parse_microsoft_todo(b'{"value": [1, 2]}', file_name="x.json")
    from parser_checks import zip_bytes

    with pytest.raises(ImportFormatError, match="x.zip: the zip holds no Microsoft To Do pages"):
        parse_microsoft_todo(zip_bytes({"a.json": "{}"}), file_name="x.zip")


PAGE = json.loads((EXPORT / PAGE_1).read_bytes())


def test_fuzzed_files_import_or_are_refused():
    samples = {PAGE_1.split("/")[-1]: json.dumps(PAGE).encode()}
    fuzz_parser(parse_microsoft_todo, samples, app="microsoft_todo")


# modified before created, done without a time, open with one: adjusted and reported
INCONSISTENT = {task("3"), task("4"), task("5")}


@pytest.mark.slow
def test_through_the_import_pipeline_then_again_then_edited(database, storage):
    user_id = new_user(database.engine, 152)
    stored = assert_imported_as_parsed(
        database, storage, user_id, DATA, NAME, "microsoft_todo", INCONSISTENT
    )
    assert stored[task("1")]["targetDate"] == dt.date(2024, 3, 1)
    assert stored["microsoft_todo:step:step-1"]["parentGoalId"] == stored[task("1")]["id"]
    page = json.loads((EXPORT / PAGE_1).read_bytes())
    page["value"][0]["checklistItems"][1].update(
        isChecked=True, checkedDateTime="2024-02-01T10:00:00Z"
    )
    page["value"][1]["title"] = "Pay the rent (flat 2)"
    members = {
        p.relative_to(EXPORT).as_posix(): p.read_bytes() for p in EXPORT.rglob("*") if p.is_file()
    }
    members[PAGE_1] = json.dumps(page).encode()
    from parser_checks import zip_bytes

    edited = zip_bytes({f"todo-backup/{n}": c for n, c in sorted(members.items())})
    assert_reimport_updates_only(
        database,
        storage,
        user_id,
        edited,
        NAME,
        "microsoft_todo",
        {
            "microsoft_todo:step:step-2": {"isCompleted", "completedAt"},
            task("2"): {"title"},
        },
    )
    assert NOW  # the parse used the job's time, not the tests'


def test_pages_nested_without_end_are_refused_in_one_line():
    page = json.dumps(PAGE)
    for depth in (2, 1000):
        deep = ("[" * depth + page + "]" * depth).encode()
        with pytest.raises(ImportFormatError, match="^deep.json: not a Microsoft To Do"):
            parse_microsoft_todo(deep, file_name="deep.json")
    pages = f"[{page}, {page}]".encode()
    assert parse_microsoft_todo(pages, file_name="ok.json", now=NOW).tables["Goal"].num_rows
