"""Every supported app's export built to its documented format with the inconsistencies
real files have (tests/imports/messy_exports.py): the file is read, not refused; every item
is there with its nesting, done state and dates fitted to the app's rules; every
adjustment is in the mapping report; only rows that cannot be mapped at all are skipped."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from parser_checks import NOW, assert_contract

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from messy_exports import all_messy_exports  # noqa: E402

from assets.imports.parsers.detect import detect_source, parse_foreign_export  # noqa: E402

MESSY = all_messy_exports()


def goals_by_title(parsed) -> dict[str, dict]:
    goals = parsed.tables["Goal"].to_pylist()
    return {g["title"]: g for g in goals}


@pytest.mark.parametrize("case", sorted(MESSY))
def test_messy_export_imports_with_every_adjustment_reported(case):
    export = MESSY[case]
    assert detect_source(export.data, export.file_name) == export.app
    parsed = parse_foreign_export(export.data, file_name=export.file_name, now=NOW)
    assert_contract(parsed, export.app)
    goals = goals_by_title(parsed)
    by_id = {g["id"]: g for g in goals.values()}
    for title, item in export.items.items():
        assert title in goals, f"{title!r} missing; have {sorted(goals)}"
        goal = goals[title]
        if item.parent is not None or title in ("Home",):
            parent = by_id.get(goal["parentGoalId"])
            assert (parent["title"] if parent else None) == item.parent, title
        if item.done is not None:
            assert goal["isCompleted"] is item.done, title
            assert (goal["completedAt"] is not None) is item.done, title
        if item.created:
            assert goal["createdAt"].date().isoformat() == item.created, title
        if item.completed:
            assert goal["completedAt"].date().isoformat() == item.completed, title
    # the app's rules hold for every row, adjusted or not
    for goal in goals.values():
        assert len(goal["title"]) <= 200
        assert goal["createdAt"] <= goal["updatedAt"]
        assert goal["completedAt"] is None or goal["createdAt"] <= goal["completedAt"]
        assert (goal["completedAt"] is not None) == goal["isCompleted"]
    for progress in (
        parsed.tables.get("Progress", None).to_pylist() if "Progress" in parsed.tables else []
    ):
        assert progress["value"] >= 0
        assert progress["maxValue"] is None or progress["value"] <= progress["maxValue"]
    adjustments = [a for e in parsed.report for a in e.adjustments]
    for expected in export.adjustments:
        assert any(a.startswith(expected) for a in adjustments), (expected, adjustments)
    # each adjustment sits on the entry of the row it changed, with a reason
    for entry in parsed.adjusted():
        assert entry.action in ("adjusted", "flattened") and entry.external_key
    assert parsed.unmappable_rows() == export.bad_rows
    if SHORT_IN(export):
        long_goal = goals[next(t for t in goals if t.endswith("…"))]
        assert long_goal["description"].startswith("Write the long essay about moving house")


def SHORT_IN(export) -> bool:
    return any(t.endswith("…") for t in export.items)


@pytest.mark.parametrize("case", sorted(MESSY))
def test_the_same_file_parses_to_the_same_rows(case):
    export = MESSY[case]
    first = parse_foreign_export(export.data, file_name=export.file_name, now=NOW)
    again = parse_foreign_export(export.data, file_name=export.file_name, now=NOW)
    for name, table in first.tables.items():
        assert table.equals(again.tables[name]), name


def test_todoist_current_columns_and_json_backup_fields_are_kept():
    csv_export, json_export = MESSY["todoist_csv"], MESSY["todoist_json"]
    parsed = parse_foreign_export(csv_export.data, file_name=csv_export.file_name, now=NOW)
    move = goals_by_title(parsed)["Plan the move"]
    assert move["description"].startswith("Boxes first") and move["priority"] == 5
    assert parsed.extras[move["id"]]["duration"] == "90 minute"
    assert parsed.extras[move["id"]]["attachments"] == [
        {"file_name": "quote.pdf", "file_type": "application/pdf", "file_url": None}
    ]
    parsed = parse_foreign_export(json_export.data, file_name=json_export.file_name, now=NOW)
    milk = goals_by_title(parsed)["Buy milk"]
    assert milk["id"] == "todoist:item:1" and milk["priority"] == 5
    assert milk["description"] == "2 litres\n\nTags: errands\nComments:\n- the big carton"
    extras = parsed.extras[milk["id"]]
    assert extras["duration"] == "15 minute" and extras["labels"] == ["errands"]
    assert extras["sourceCreatedAt"] == "2024-02-10T08:00:00Z"
