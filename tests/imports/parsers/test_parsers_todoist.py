"""Todoist CSV and backup-zip parsing: hierarchy by indent, dates, labels, notes, errors."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from parser_checks import (
    NOW,
    assert_contract,
    by_id,
    by_title,
    fixture_bytes,
    parse_detected,
    rows,
    zip_bytes,
)

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import parse_foreign_export
from assets.imports.parsers.todoist import generate_todoist_csv, parse_todoist, read_todoist_date

HOME = "Home [2203306141].csv"


@pytest.fixture(scope="module")
def home():
    return parse_todoist(fixture_bytes("todoist", HOME), file_name=HOME, now=NOW)


def test_project_tasks_and_subtasks_become_three_goal_levels(home):
    assert_contract(home, "todoist")
    goals = by_title(home)
    project = goals["Home"]
    assert project["id"] == "todoist:project:2203306141" and project["parentGoalId"] is None
    assert goals["Renew passport"]["parentGoalId"] == project["id"]
    assert goals["Book photo booth"]["parentGoalId"] == goals["Renew passport"]["id"]
    # INDENT 3 and 4 would be levels four and five: flattened onto level three, reported.
    for title, source_parent in (
        ("Find coins", "Book photo booth"),
        ("Check the machine works 🔧", "Find coins"),
    ):
        deep = goals[title]
        assert deep["parentGoalId"] == goals["Renew passport"]["id"]
        entry = next(e for e in home.report if e.external_key == deep["id"])
        assert entry.action == "flattened" and "level" in entry.reason
        assert home.extras[deep["id"]]["sourceParent"] == goals[source_parent]["id"]


def test_priorities_labels_notes_and_sections(home):
    goals = by_title(home)
    passport = goals["Renew passport"]
    assert passport["priority"] == 5  # p1
    assert goals["Book photo booth"]["priority"] == 2  # p4, Todoist's default
    extras = home.extras[passport["id"]]
    assert extras["labels"] == ["errands", "/city"]
    assert passport["description"].startswith("Bring the old one")
    assert "Tags: errands, /city" in passport["description"]
    assert 'and the "old" passport' in passport["description"]
    assert "[file: scan.png]" in passport["description"]
    assert extras["attachments"][0]["file_url"] == "https://files.example.invalid/scan.png"
    assert extras["author"] == "Alex (1234567)"
    assert home.extras[goals["Book photo booth"]["id"]]["responsible"] == "Sam (7654321)"
    assert home.extras[home.tables["Goal"].column("id")[0].as_py()]["meta"] == ["view_style=list"]
    watering = goals["Gießkanne kaufen 🌱"]
    assert home.extras[watering["id"]]["section"] == "Garten – Frühling"
    assert home.extras[watering["id"]]["uncompletable"] is True


def test_due_dates_are_read_in_the_rows_time_zone(home):
    goals = by_title(home)
    assert goals["Renew passport"]["targetDate"] == dt.date(2024, 3, 12)
    assert home.extras[goals["Renew passport"]["id"]]["dueTime"] == "10:00"
    # "in 3 days" at 2024-03-01 23:30 UTC is 2024-03-02 00:30 in Paris: due 5 March.
    assert goals["Gießkanne kaufen 🌱"]["targetDate"] == dt.date(2024, 3, 5)
    booth = goals["Book photo booth"]
    assert booth["targetDate"] == dt.date(2024, 3, 4)  # the next Monday in Paris
    assert home.extras[booth["id"]]["recurrence"] == "every monday"
    assert "Repeats: every monday" in booth["description"]
    for goal in goals.values():
        assert goal["isCompleted"] is False and goal["createdAt"] == NOW


def test_same_titled_tasks_get_distinct_keys_that_survive_a_reexport():
    data = fixture_bytes("todoist", HOME)
    first = parse_todoist(data, file_name=HOME, now=NOW)
    trips = [g for g in rows(first, "Goal") if g["title"] == "東京 trip plan"]
    assert len({t["id"] for t in trips}) == 2
    # A newer export with a task added at the top and one renamed: the others keep their keys.
    newer = data.replace(
        b"meta,view_style=list,,,,,,,,\r\n",
        b"meta,view_style=list,,,,,,,,\r\ntask,Brand new,,4,1,,,,en,UTC\r\n",
    )
    newer = newer.replace(b"Find coins", b"Find some coins")
    second = parse_todoist(newer, file_name=HOME, now=NOW + dt.timedelta(days=3))
    before, after = set(by_id(first)), set(by_id(second))
    assert len(after - before) == 2 and len(before - after) == 1  # new, renamed
    assert (
        by_title(second)["Check the machine works 🔧"]["id"]
        == by_title(first)["Check the machine works 🔧"]["id"]
    )


def test_backup_zip_holds_one_project_per_csv_and_old_files_without_description():
    backup = zip_bytes(
        {
            HOME: fixture_bytes("todoist", HOME),
            "Legacy 2017.csv": fixture_bytes("todoist", "Legacy 2017.csv"),
            "__MACOSX/._Legacy 2017.csv": b"\x00\x05junk",
        }
    )
    parsed = parse_detected(backup, "todoist-backup.zip", "todoist")
    goals = by_title(parsed)
    assert goals["Legacy 2017"]["parentGoalId"] is None
    assert goals["Its child"]["parentGoalId"] == goals["Old style task"]["id"]
    assert goals["Its child"]["priority"] == 4
    assert goals["Home"]["id"] != goals["Legacy 2017"]["id"]


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda t: t.encode("utf-16"), id="utf-16"),
        pytest.param(lambda t: t.encode("cp1252"), id="windows-1252"),
        pytest.param(lambda t: t.replace(",", ";").encode(), id="semicolons"),
        pytest.param(
            lambda t: (
                t.replace("TIMEZONE", "TIMEZONE,EXTRA")
                .replace("Europe/Paris\r\n", "Europe/Paris,x\r\n")
                .encode()
            ),
            id="extra-column",
        ),
    ],
)
def test_encodings_delimiters_and_extra_columns(encode):
    text = (
        "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE\r\n"
        "task,Café crème,Entrée,2,1,,,2024-05-06,en,Europe/Paris\r\n"
    )
    parsed = parse_todoist(encode(text), file_name="Menu.csv", now=NOW)
    assert_contract(parsed, "todoist")
    cafe = by_title(parsed)["Café crème"]
    assert cafe["description"] == "Entrée" and cafe["targetDate"] == dt.date(2024, 5, 6)


def test_empty_export_is_the_project_alone_and_an_empty_file_is_an_error():
    parsed = parse_todoist(
        b"\xef\xbb\xbfTYPE,CONTENT,PRIORITY,INDENT\r\n", file_name="Empty.csv", now=NOW
    )
    assert_contract(parsed, "todoist")
    assert [g["title"] for g in rows(parsed, "Goal")] == ["Empty"]
    with pytest.raises(ImportFormatError, match="Empty.csv: the file is empty"):
        parse_todoist(b"", file_name="Empty.csv")


@pytest.mark.parametrize(
    ("line", "field", "why"),
    [
        ("task,Bad indent,,4,two,,,,en,UTC", "INDENT", "not an indent level"),
        ("task,Bad priority,,urgent,1,,,,en,UTC", "PRIORITY", "not a Todoist priority"),
    ],
)
def test_malformed_cells_are_adjusted_on_their_row_not_refused(line, field, why):
    data = (
        "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE\n"
        "task,Fine,,4,1,,,,en,UTC\n"
        f"{line}\n"
    ).encode()
    parsed = parse_todoist(data, file_name="Work.csv", now=NOW)
    assert_contract(parsed, "todoist")
    assert sorted(by_title(parsed)) == sorted(["Work", "Fine", line.split(",")[1]])
    [entry] = parsed.adjusted()
    assert "Work.csv, row 3" in entry.source_item
    assert entry.adjustments[0].startswith(field) and why in entry.adjustments[0]
    goal = by_title(parsed)[line.split(",")[1]]
    assert goal["priority"] == 2 or field == "INDENT"
    assert goal["parentGoalId"] == by_title(parsed)["Work"]["id"]


def test_not_a_todoist_file_is_refused_with_the_file_named():
    with pytest.raises(ImportFormatError, match=r"notes.csv, row 1: no Todoist header"):
        parse_todoist(b"a,b,c\n1,2,3\n", file_name="notes.csv")


def test_unreadable_due_dates_are_kept_as_text_with_a_warning():
    data = (
        b"TYPE,CONTENT,PRIORITY,INDENT,DATE,DATE_LANG,TIMEZONE\n"
        b"task,Rendez-vous,4,1,le premier lundi,fr,Europe/Paris\n"
    )
    parsed = parse_todoist(data, file_name="Fr.csv", now=NOW)
    goal = by_title(parsed)["Rendez-vous"]
    assert goal["targetDate"] is None
    assert parsed.extras[goal["id"]]["dueText"] == "le premier lundi"
    assert any("le premier lundi" in w and "row 2" in w for w in parsed.warnings)


@pytest.mark.parametrize(
    ("text", "expected", "recurrence"),
    [
        ("tomorrow", dt.date(2024, 3, 2), None),
        ("in 2 weeks", dt.date(2024, 3, 15), None),
        ("in 1 month", dt.date(2024, 4, 1), None),
        ("12 Feb", dt.date(2025, 2, 12), None),  # no year: the next 12 February
        ("Mar 5 2026 10:00", dt.date(2026, 3, 5), None),
        ("friday", dt.date(2024, 3, 1), None),
        ("every day", dt.date(2024, 3, 1), "every day"),
        ("every 3rd monday", None, "every 3rd monday"),
    ],
)
def test_natural_language_due_dates(text, expected, recurrence):
    reading = read_todoist_date(text, today=dt.date(2024, 3, 1))
    assert reading.day == expected and reading.recurrence == recurrence


def test_generated_benchmark_export_parses_completely():
    data = generate_todoist_csv(2_000, seed=7)
    assert data == generate_todoist_csv(2_000, seed=7)
    started = time.perf_counter()
    parsed = parse_foreign_export(data, file_name="Benchmark.csv", now=NOW)
    assert time.perf_counter() - started < 5
    assert_contract(parsed, "todoist")
    assert parsed.tables["Goal"].num_rows == 2_001
    assert not parsed.warnings
