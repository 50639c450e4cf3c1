"""Joplin's JEX export: nested notebooks, notes, to-dos with completion and due times, tags,
trash and orphans; hostile tars refused; fuzzed items never crash the parser."""

from __future__ import annotations

import datetime as dt

import pytest
from file_exports import (
    J_DEEP,
    J_DEEPTODO,
    J_HOME,
    J_MILK,
    J_NOTE,
    J_ORPHAN,
    J_PROJECTS,
    J_REPORT,
    J_TRASHED,
    J_WORK,
    joplin_export,
    joplin_item,
    tar_bytes,
)
from fuzzing import FUZZ_SETTINGS, byte_mutations, parses_or_refuses
from hypothesis import given
from parser_checks import NOW, adjustments_of, by_id, parse_detected

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.joplin import parse_joplin, split_item

UTC = dt.UTC


def folder(i: str) -> str:
    return f"joplin:folder:{i}"


def note(i: str) -> str:
    return f"joplin:note:{i}"


@pytest.fixture(scope="module")
def parsed():
    return parse_detected(joplin_export(), "Joplin 2023.jex", "joplin")


def test_notebooks_nest_and_notes_sit_in_them(parsed):
    goals = by_id(parsed)
    assert goals[folder(J_WORK)]["title"] == "Arbeit 💼"
    assert goals[folder(J_PROJECTS)]["parentGoalId"] == folder(J_WORK)
    assert goals[folder(J_HOME)]["title"] == "Untitled notebook"
    assert goals[note(J_REPORT)]["parentGoalId"] == folder(J_PROJECTS)
    assert goals[note(J_NOTE)]["parentGoalId"] == folder(J_WORK)
    assert len(goals[note(J_NOTE)]["description"]) > 4_000
    # notebook > notebook > notebook > to-do: the fourth level is flattened
    assert goals[note(J_DEEPTODO)]["parentGoalId"] == folder(J_PROJECTS)
    assert parsed.extras[note(J_DEEPTODO)]["sourceParent"] == folder(J_DEEP)
    # its notebook is not in the export: under the import's root goal, said so
    assert goals[note(J_ORPHAN)]["parentGoalId"] == "joplin:goal:import-root"
    assert parsed.extras[note(J_ORPHAN)]["sourceParent"] == folder("9" * 32)
    assert "is not in the file" in adjustments_of(parsed, note(J_ORPHAN))[0]
    assert note(J_TRASHED) not in goals
    assert any(e.reason == "in Joplin's trash" for e in parsed.skipped())


def test_to_dos_completion_due_dates_and_tags(parsed):
    goals = by_id(parsed)
    milk, report = goals[note(J_MILK)], goals[note(J_REPORT)]
    assert milk["isCompleted"] and milk["completedAt"] == dt.datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=UTC
    )
    assert not report["isCompleted"] and report["completedAt"] is None
    assert report["targetDate"] == dt.date(2023, 11, 15)
    assert report["createdAt"] == dt.datetime(2023, 11, 14, 9, tzinfo=UTC)
    assert report["description"].startswith("Draft the **numbers**")
    assert "Tags: wichtig ❗" in report["description"]
    assert parsed.extras[note(J_REPORT)]["tags"] == ["wichtig ❗"]
    assert parsed.extras[note(J_NOTE)]["isTodo"] is False


def test_due_date_follows_the_users_time_zone():
    goals = by_id(parse_joplin(joplin_export(), now=NOW, timezone="Pacific/Kiritimati"))
    assert goals[note(J_REPORT)]["targetDate"] == dt.date(2023, 11, 16)


def test_inconsistent_items_are_normalised_and_each_adjustment_reported():
    parsed = parse_joplin(joplin_export(inconsistent=True), now=NOW)
    goals = by_id(parsed)
    milk, deep = goals[note(J_MILK)], goals[note(J_DEEPTODO)]
    done_at = dt.datetime(2022, 10, 10, 22, 13, 20, tzinfo=dt.UTC)
    assert milk["createdAt"] == milk["completedAt"] == done_at and milk["isCompleted"]
    assert parsed.extras[note(J_MILK)]["sourceCreatedAt"] == "2023-11-13T09:00:00Z"
    [milk_note] = adjustments_of(parsed, note(J_MILK))
    assert milk_note.startswith("completed (2022-10-10T22:13:20Z) before it was created")
    edited_at = dt.datetime(2023, 4, 1, tzinfo=dt.UTC)
    assert deep["createdAt"] == deep["updatedAt"] == edited_at
    [deep_note] = adjustments_of(parsed, note(J_DEEPTODO))
    assert deep_note.startswith("last modified (2023-04-01T00:00:00Z) before it was created")
    assert len(goals[note(J_NOTE)]["description"]) == 5000
    assert "longer than the app's 5000" in adjustments_of(parsed, note(J_NOTE))[0]


def test_an_item_splits_into_metadata_title_and_body():
    text = joplin_item("Title: with colon", "Body\nsecond: line", id="a" * 32).decode()
    properties, title, body = split_item(text)
    assert title == "Title: with colon" and body == "Body\nsecond: line"
    assert properties["type_"] == "1" and properties["id"] == "a" * 32


def test_detection_and_hostile_archives():
    assert detect_source(joplin_export(), "x.tar") == "joplin"
    markdown = tar_bytes({f"{'a' * 32}.md": b"# just markdown\n"}, gzip=False)
    assert detect_source(markdown, "x.tar") == "unknown"
    with pytest.raises(ImportFormatError, match="unsafe path"):
        parse_joplin(tar_bytes({f"../{'a' * 32}.md": b"x"}, gzip=False), file_name="e.jex")
    with pytest.raises(ImportFormatError, match="not a readable tar|is a tar"):
        parse_joplin(joplin_export()[:700], file_name="cut.jex")


FUZZ_ITEM = joplin_item(
    "Quarterly", "Body", id=J_REPORT, parent_id=J_WORK, is_todo=1, todo_completed=1
)


@FUZZ_SETTINGS
@given(byte_mutations(FUZZ_ITEM))
def test_fuzzed_items_import_or_are_refused(mutated):
    members = {
        f"{J_REPORT}.md": mutated,
        f"{J_WORK}.md": joplin_item("Work", "", id=J_WORK, type_=2),
    }
    parses_or_refuses(parse_joplin, tar_bytes(members, gzip=False), "x.jex", "joplin")
