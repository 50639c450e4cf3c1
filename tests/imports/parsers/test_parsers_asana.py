"""Asana project CSV: projects, sub-tasks by parent name, completion, resaved spreadsheets."""

from __future__ import annotations

import datetime as dt

import pytest
from parser_checks import NOW, assert_contract, by_id, by_title, fixture_bytes, parse_detected, rows

from assets.imports.parsers.asana import parse_asana

UTC = dt.UTC
NAME = "Website_Relaunch.csv"
DATA = fixture_bytes("asana", NAME)


@pytest.fixture(scope="module")
def project():
    return parse_detected(DATA, NAME, "asana")


def test_project_tasks_and_subtasks(project):
    goals = by_title(project)
    root = goals["Website Relaunch"]
    assert root["id"] == "asana:project:Website Relaunch" and root["parentGoalId"] is None
    launch = goals["Launch website"]
    assert launch["id"] == "asana:task:1203411112223331" and launch["parentGoalId"] == root["id"]
    assert goals["Pick a domain"]["parentGoalId"] == launch["id"]
    # Sub-sub-tasks are levels four and five: flattened onto level three.
    assert goals["Compare registrars"]["parentGoalId"] == launch["id"]
    assert goals["Ask for quotes"]["parentGoalId"] == launch["id"]
    flattened = [e for e in project.report if e.action == "flattened"]
    assert len(flattened) == 2
    assert rows(project, "Module")[0]["kind"] == "work"


def test_fields_dates_and_completion(project):
    goals = by_title(project)
    launch = goals["Launch website"]
    assert launch["targetDate"] == dt.date(2024, 3, 31)
    assert launch["priority"] == 4 and goals["Écrire le contenu"]["priority"] == 1
    assert launch["createdAt"] == dt.datetime(2024, 1, 2, 12, tzinfo=UTC)
    assert launch["description"] == "Kick-off notes:\n- domain\n- hosting\n\nTags: web, launch"
    extras = project.extras[launch["id"]]
    assert extras["section"] == "Planning" and extras["assignee"] == "Jordan Lee"
    assert extras["startDate"] == "2024-01-15"
    assert extras["customFields"] == {"Status": "On track", "Estimated hours": "12"}
    domain = goals["Pick a domain"]
    assert domain["isCompleted"] and domain["completedAt"] == dt.datetime(
        2024, 2, 1, 12, tzinfo=UTC
    )
    assert not launch["isCompleted"]


def test_same_name_for_two_assignees_is_two_tasks_and_nameless_rows_are_reported(project):
    reviews = [g for g in rows(project, "Goal") if g["title"] == "Review"]
    assert len(reviews) == 2
    assert {project.extras[r["id"]]["assignee"] for r in reviews} == {"Sam Rivera", "Zoë Müller"}
    assert any(e.reason == "task without a name" for e in project.skipped())


def test_spreadsheet_resaved_file():
    text = (
        DATA.decode()
        .replace("1203411112223331", "1.20341E+15")
        .replace("2024-03-31", "3/31/24")
        .replace("2024-01-02", "1/2/24")
        .replace(",", ";")
    )
    data = text.encode("cp1252", errors="replace")
    parsed = parse_asana(data, file_name="resaved.csv", now=NOW)
    assert_contract(parsed, "asana")
    launch = by_title(parsed)["Launch website"]
    assert launch["id"].startswith("asana:task:h")
    assert launch["targetDate"] == dt.date(2024, 3, 31)
    assert launch["createdAt"] == dt.datetime(2024, 1, 2, 12, tzinfo=UTC)
    assert any("scientific notation" in w for w in parsed.warnings)
    assert by_title(parsed)["Écrire le contenu"]["title"] == "Écrire le contenu"
    again = parse_asana(data, file_name="resaved.csv", now=NOW)
    assert set(by_id(again)) == set(by_id(parsed))


def test_header_only_export():
    header = DATA.split(b"\r\n", 1)[0] + b"\r\n"
    parsed = parse_asana(header, file_name=NAME, now=NOW)
    assert_contract(parsed, "asana")
    assert parsed.tables["Goal"].num_rows == 0


def test_malformed_date_leaves_the_field_empty_and_says_so():
    data = DATA.replace(b"2024-04-15", b"mid-April")
    parsed = parse_asana(data, file_name=NAME, now=NOW)
    assert_contract(parsed, "asana")
    [entry] = [e for e in parsed.adjusted() if "Due Date" in " ".join(e.adjustments)]
    assert "row 6" in entry.source_item
    assert entry.adjustments == [
        "Due Date 'mid-April' is not a date: left empty (kept in the extras)"
    ]
    goal = by_id(parsed)[entry.external_key]
    assert goal["targetDate"] is None
    assert parsed.extras[entry.external_key]["unreadableDates"] == {"Due Date": "mid-April"}
