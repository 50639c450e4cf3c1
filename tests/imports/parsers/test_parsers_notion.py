"""Notion Markdown & CSV export: databases, relations, pages, to-dos, habit trackers, Part-N."""

from __future__ import annotations

import datetime as dt

import pytest
from parser_checks import (
    FIXTURES,
    NOW,
    assert_contract,
    bad_rows,
    by_title,
    parse_detected,
    rows,
    zip_bytes,
)

from assets.imports.parsers.base import ImportFormatError, ZipLimits
from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.notion import parse_notion

UTC = dt.UTC
EXPORT = FIXTURES / "notion" / "export"
ROOT = "Export-5f0e8c1a-1111-4222-8333-944455556666/"
TASKS = "0123456789abcdef0123456789abcdef"


def export_files() -> dict[str, bytes]:
    return {
        ROOT + p.relative_to(EXPORT).as_posix(): p.read_bytes()
        for p in sorted(EXPORT.rglob("*"))
        if p.is_file()
    }


def nested_export() -> bytes:
    """Notion's newer shape: a zip holding Export-<uuid>-Part-1.zip, re-packed on a Mac."""
    part = zip_bytes(export_files())
    return zip_bytes(
        {
            "Export-5f0e8c1a-1111-4222-8333-944455556666-Part-1.zip": part,
            "__MACOSX/._Export-5f0e8c1a-Part-1.zip": b"\x00\x05\x16\x07",
            ".DS_Store": b"\x00\x00\x00\x01Bud1",
        }
    )


@pytest.fixture(scope="module")
def notion():
    data = nested_export()
    return parse_detected(data, "notion.zip", "notion")


def test_database_rows_and_parent_relations(notion):
    goals = by_title(notion)
    tasks = goals["Tasks"]
    assert tasks["id"] == f"notion:database:{TASKS}" and tasks["parentGoalId"] is None
    assert tasks["description"] == "All my tasks, one database."
    trip = goals["Plan trip"]
    assert trip["id"] == "notion:page:" + "1" * 32 and trip["parentGoalId"] == tasks["id"]
    assert goals["Book flights"]["parentGoalId"] == trip["id"]
    assert goals["Pack"]["parentGoalId"] == trip["id"]
    # Level four (a sub-item of a sub-item) is flattened onto level three.
    socks = goals["Buy socks, warm"]
    assert socks["parentGoalId"] == trip["id"]
    assert notion.extras[socks["id"]]["sourceParent"] == goals["Pack"]["id"]
    assert goals["Réserver l’hôtel 🏨"]["parentGoalId"] == tasks["id"]


def test_properties_status_dates_priority_tags(notion):
    goals = by_title(notion)
    trip, flights = goals["Plan trip"], goals["Book flights"]
    assert trip["isCompleted"] is False and flights["isCompleted"] is True
    assert trip["targetDate"] == dt.date(2023, 6, 30)  # the end of the range
    assert flights["targetDate"] == dt.date(2023, 5, 15)
    assert goals["Réserver l’hôtel 🏨"]["targetDate"] == dt.date(2023, 10, 15)
    assert (trip["priority"], flights["priority"], goals["Buy socks, warm"]["priority"]) == (
        4,
        5,
        1,
    )
    assert trip["createdAt"] == dt.datetime(2023, 5, 1, 9, 30, tzinfo=UTC)
    assert trip["updatedAt"] == dt.datetime(2023, 5, 20, 22, 15, tzinfo=UTC)
    extras = notion.extras[trip["id"]]
    assert extras["labels"] == ["Travel", "Family"]
    assert extras["properties"] == {"Assignee": "Jordan Lee", "Estimate": "3"}
    assert extras["status"] == "In progress"


def test_page_bodies_and_todos(notion):
    goals = by_title(notion)
    trip = goals["Plan trip"]
    assert trip["description"].startswith("Some notes about the trip.\n\n# Ideas")
    assert trip["description"].endswith("Tags: Travel, Family")
    assert "Choose dates" not in trip["description"]
    todos = [
        (p["notes"], p["value"]) for p in rows(notion, "Progress") if p["goalId"] == trip["id"]
    ]
    assert todos == [("Choose dates", 1), ("Ask for days off", 0)]  # the empty to-do is dropped
    assert goals["Réserver l’hôtel 🏨"]["description"] == "Près de la gare.\n\nTags: Travel"
    reading = goals["Reading list"]
    assert reading["parentGoalId"] is None
    assert [p["notes"] for p in rows(notion, "Progress") if p["goalId"] == reading["id"]] == [
        "Dune",
        "Middlemarch",
    ]
    assert "Meeting notes" not in goals and "Dashboard" not in goals
    assert any("pages without to-dos" in e.reason and e.count == 2 for e in notion.skipped())


def test_views_of_a_database_are_imported_once(notion):
    assert len([g for g in rows(notion, "Goal") if g["title"] == "Plan trip"]) == 1
    views = [e for e in notion.skipped() if "a view of database 'Tasks'" in e.reason]
    assert len(views) == 1 and "99999999" in views[0].source_item


def test_habit_tracker_database(notion):
    goals = by_title(notion)
    tracker = goals["Habit Tracker"]
    habits = {t: goals[t] for t in ("Exercise", "Reading", "Journal")}
    assert all(h["parentGoalId"] == tracker["id"] for h in habits.values())
    checkins = [
        (p["goalId"], p["recordedAt"])
        for p in rows(notion, "Progress")
        if p["id"].startswith("notion:checkin:")
    ]
    assert len(checkins) == 6
    assert (habits["Exercise"]["id"], dt.datetime(2024, 1, 8, 12, tzinfo=UTC)) in checkins
    assert any(
        e.reason == "an unticked box is not a check-in" and e.count == 3 for e in notion.skipped()
    )


def test_keys_are_stable_between_the_nested_and_the_flat_zip(notion):
    flat = parse_notion(zip_bytes(export_files()), file_name="flat.zip", now=NOW)
    assert_contract(flat, "notion")
    assert set(notion.tables["Goal"].column("id").to_pylist()) == set(
        flat.tables["Goal"].column("id").to_pylist()
    )


def test_a_database_csv_alone_in_another_time_zone():
    data = (EXPORT / f"Tasks {TASKS}_all.csv").read_bytes()
    name = f"Tasks {TASKS}_all.csv"
    assert detect_source(data, name) == "notion"
    parsed = parse_notion(data, file_name=name, now=NOW, timezone="America/New_York")
    assert_contract(parsed, "notion")
    trip = by_title(parsed)["Plan trip"]
    assert trip["createdAt"] == dt.datetime(2023, 5, 1, 13, 30, tzinfo=UTC)
    # Without the pages, rows get content keys and relations resolve by title.
    assert trip["id"].startswith("notion:page:h")
    assert by_title(parsed)["Book flights"]["parentGoalId"] == trip["id"]


def test_empty_database_and_html_export():
    parsed = parse_notion(
        zip_bytes({f"{ROOT}Empty {'d' * 32}.csv": "\ufeffName,Status\r\n"}), now=NOW
    )
    assert_contract(parsed, "notion")
    assert [g["title"] for g in rows(parsed, "Goal")] == ["Empty"]
    with pytest.raises(ImportFormatError, match="notion.zip: this is Notion's HTML export"):
        parse_notion(zip_bytes({f"{ROOT}index.html": "<html></html>"}), file_name="notion.zip")


def test_malformed_date_skips_its_row_naming_member_row_and_column():
    files = export_files()
    path = f"{ROOT}Tasks {TASKS}_all.csv"
    files[path] = files[path].replace(b"May 15, 2023", b"the fifteenth")
    parsed = parse_notion(zip_bytes(files), file_name="notion.zip", now=NOW)
    assert_contract(parsed, "notion")
    assert bad_rows(parsed) == [
        (f"row 3 (notion.zip/{path})", "field 'Due': 'the fifteenth' is not a date")
    ]
    assert "Plan trip" in by_title(parsed)


def test_nested_parts_share_one_size_budget():
    part = zip_bytes({f"{ROOT}Big {'e' * 32}.csv": "Name\r\n" + "x" * 4_000 + "\r\n"})
    parts = {f"Export-x-Part-{n}.zip": part for n in range(1, 9)}
    with pytest.raises(ImportFormatError, match="is too large"):
        parse_notion(
            zip_bytes(parts), file_name="parts.zip", zip_limits=ZipLimits(max_total_bytes=30_000)
        )
