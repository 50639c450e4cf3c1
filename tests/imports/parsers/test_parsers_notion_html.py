"""Notion's HTML export: pages nested by folder, databases and their rows, typed properties,
to-dos, the nested Part-N.zip; hostile archives refused quickly; fuzzed pages never crash."""

from __future__ import annotations

import datetime as dt
import io
import time
import zipfile

import pytest
from file_exports import (
    CHILD_PAGE,
    DB,
    FLIGHTS,
    GRANDCHILD,
    HOTEL,
    NO_PAGE_ROW,
    ORPHAN_CHILD,
    ROOT_PAGE,
    TRIP,
    notion_html_export,
    notion_page,
)
from fuzzing import FUZZ_SETTINGS, byte_mutations, parses_or_refuses
from hypothesis import given
from hypothesis import strategies as st
from parser_checks import NOW, adjustments_of, by_id, parse_detected, rows, zip_bytes

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.notion_html import parse_notion_html

UTC = dt.UTC


def key(page: str) -> str:
    return f"notion_html:page:{page}"


@pytest.fixture(scope="module")
def parsed():
    return parse_detected(notion_html_export(), "Export-5f0e8c1a.zip", "notion_html")


def test_pages_databases_and_rows_keep_their_nesting(parsed):
    goals = by_id(parsed)
    assert goals[key(DB)]["title"] == "Tasks" and goals[key(DB)]["parentGoalId"] is None
    assert goals[key(DB)]["description"] == "All my tasks, one database."
    assert goals[key(TRIP)]["parentGoalId"] == key(DB)
    assert goals[key(FLIGHTS)]["parentGoalId"] == key(TRIP)  # the "Parent item" relation
    assert goals[key(HOTEL)]["title"] == "Réserver l’hôtel 🏨"
    assert goals[key(HOTEL)]["parentGoalId"] == key(DB)
    assert goals[key(NO_PAGE_ROW)]["title"] == "Row without page 🌵"
    assert goals[key(NO_PAGE_ROW)]["parentGoalId"] == key(DB)
    assert goals[key(CHILD_PAGE)]["parentGoalId"] == key(ROOT_PAGE)
    assert goals[key(GRANDCHILD)]["parentGoalId"] == key(CHILD_PAGE)
    assert goals[key(GRANDCHILD)]["title"] == "Day"  # no title in the page: its file's name
    assert goals[key(ORPHAN_CHILD)]["parentGoalId"] is None
    assert any(ORPHAN_CHILD not in w and "9" * 32 in w for w in parsed.warnings) or (
        goals[key(ORPHAN_CHILD)]["parentGoalId"] is None
    )
    assert len(goals) == 9  # index.html and the Mac litter are not pages


def test_properties_give_done_dates_priority_and_tags(parsed):
    goals = by_id(parsed)
    trip, flights, hotel = goals[key(TRIP)], goals[key(FLIGHTS)], goals[key(HOTEL)]
    assert (trip["isCompleted"], flights["isCompleted"], hotel["isCompleted"]) == (
        False,
        True,
        False,
    )
    assert flights["completedAt"] == dt.datetime(2023, 5, 3, 8, tzinfo=UTC)
    assert trip["targetDate"] == dt.date(2023, 6, 30)  # the end of the range
    assert hotel["targetDate"] == dt.date(2023, 10, 15)
    assert trip["priority"] == 4
    assert trip["createdAt"] == dt.datetime(2023, 5, 1, 9, 30, tzinfo=UTC)
    assert trip["updatedAt"] == dt.datetime(2023, 5, 20, 22, 15, tzinfo=UTC)
    extras = parsed.extras[key(TRIP)]
    assert extras["labels"] == ["Travel", "Family 👪"] and extras["status"] == "In progress"
    assert extras["properties"] == {"Assignee": "Jordan Lee"}
    assert "Tags: Travel, Family 👪" in trip["description"]
    assert "Kyoto & Osaka" in trip["description"] and "Passport" not in trip["description"]
    # a cell that is no date is kept as written, not refused
    assert parsed.extras[key(NO_PAGE_ROW)]["properties"]["Due"] == "@not a date"


def test_long_pages_and_to_dos(parsed):
    goals = by_id(parsed)
    assert len(goals[key(ROOT_PAGE)]["description"]) > 4_000
    todos = {p["notes"]: p for p in rows(parsed, "Progress")}
    assert {n: int(p["value"]) for n, p in todos.items()} == {"Passport": 1, "Adapter 🔌": 0}
    assert {p["goalId"] for p in todos.values()} == {key(TRIP)}


def test_inconsistent_times_are_normalised_and_each_adjustment_reported():
    parsed = parse_notion_html(notion_html_export(inconsistent=True), now=NOW)
    goals = by_id(parsed)
    # last edited before the "Created" property: createdAt moved to the last edit
    trip = goals[key(TRIP)]
    assert trip["createdAt"] == trip["updatedAt"] == dt.datetime(2023, 5, 20, 22, 15, tzinfo=UTC)
    assert parsed.extras[key(TRIP)]["sourceCreatedAt"] == "2023-05-25T09:30:00Z"
    [trip_note] = adjustments_of(parsed, key(TRIP))
    assert trip_note.startswith("last modified (2023-05-20T22:15:00Z) before it was created")
    # a page over the app's 5,000 characters: shortened, the full text in the extras
    journal = goals[key(ROOT_PAGE)]["description"]
    assert len(journal) == 5000 and journal.endswith("…")
    assert len(parsed.extras[key(ROOT_PAGE)]["sourceDescription"]) > 30_000
    assert "longer than the app's 5000" in adjustments_of(parsed, key(ROOT_PAGE))[0]
    # done with no time known anywhere: the import's time, said so
    row = goals[key(NO_PAGE_ROW)]
    assert row["isCompleted"] and row["completedAt"] == NOW
    assert adjustments_of(parsed, key(NO_PAGE_ROW)) == [
        "done without a completion time: completedAt set to the import time"
    ]


def test_the_flat_zip_gives_the_same_keys(parsed):
    with zipfile.ZipFile(io.BytesIO(notion_html_export())) as outer:
        part = outer.read(outer.namelist()[0])
    flat = parse_notion_html(part, now=NOW)
    assert set(by_id(flat)) == set(by_id(parsed))


def test_detection_is_by_content():
    data = notion_html_export()
    assert detect_source(data, "whatever.bin") == "notion_html"
    plain = zip_bytes({f"Page {'a' * 32}.html": b"<html><body>hello</body></html>"})
    assert detect_source(plain, "site.zip") == "unknown"
    markdown = zip_bytes({f"Tasks {'b' * 32}.md": "# Tasks\n"})
    assert detect_source(markdown, "notion.zip") == "notion"


def test_a_nested_zip_bomb_is_refused_quickly():
    bomb = zip_bytes({f"Page {'a' * 32}.html": b"\x00" * (64 * 1024 * 1024)})
    data = zip_bytes({"Export-1-Part-1.zip": bomb, "Export-1-Part-2.zip": bomb})
    started = time.monotonic()
    with pytest.raises(ImportFormatError, match="zip bomb"):
        parse_notion_html(data, file_name="bomb.zip")
    assert time.monotonic() - started < 1


def test_a_path_outside_the_archive_is_refused():
    inner = zip_bytes({f"../../etc/Page {'a' * 32}.html": notion_page("a" * 32, "x")})
    with pytest.raises(ImportFormatError, match="unsafe path"):
        parse_notion_html(zip_bytes({"Export-Part-1.zip": inner}), file_name="evil.zip")


def test_deeply_nested_markup_is_refused_before_parsing():
    deep = notion_page("a" * 32, "Deep", body="<div>" * 80_000 + "x" + "</div>" * 80_000)
    started = time.monotonic()
    with pytest.raises(ImportFormatError, match="nests more than 1000 elements deep"):
        parse_notion_html(zip_bytes({f"Deep {'a' * 32}.html": deep}), file_name="deep.zip")
    assert time.monotonic() - started < 1
    wide = notion_page("c" * 32, "Wide", body=("<div>" * 900 + "x" + "</div>" * 900) * 200)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # no ratio to trip on
        archive.writestr(f"Wide {'c' * 32}.html", wide)
    started = time.monotonic()
    with pytest.raises(ImportFormatError, match="too deep to be read"):
        parse_notion_html(buffer.getvalue(), file_name="wide.zip")
    assert time.monotonic() - started < 1
    shallow = notion_page("b" * 32, "Fine", body="<div>" * 500 + "x" + "</div>" * 500)
    parsed = parse_notion_html(zip_bytes({f"Fine {'b' * 32}.html": shallow}), now=NOW)
    assert by_id(parsed)[key("b" * 32)]["title"] == "Fine"


def test_a_zip_without_pages_is_refused():
    with pytest.raises(ImportFormatError, match="no Notion HTML page"):
        parse_notion_html(zip_bytes({"readme.txt": "hi"}), file_name="x.zip")


def fuzz_page(page: str) -> tuple[str, bytes]:
    return page, notion_page(
        page,
        "Plan trip",
        properties=[("status", "Status", "Done"), ("date", "Due", "<time>@May 1, 2023</time>")],
        table=(
            '<table class="collection-content"><thead><tr><th>Name</th></tr></thead><tbody>'
            f'<tr id="{HOTEL}"><td class="cell-title"><a href="Hotel%20{HOTEL}.html">H</a></td>'
            "</tr></tbody></table>"
        ),
    )


@FUZZ_SETTINGS
@given(
    st.sampled_from([TRIP, DB, HOTEL])
    .map(fuzz_page)
    .flatmap(lambda p: st.tuples(st.just(p[0]), byte_mutations(p[1])))
)
def test_fuzzed_pages_import_or_are_refused(fuzzed):
    page, mutated = fuzzed
    data = zip_bytes({"Export-x-Part-1.zip": zip_bytes({f"Page {page}.html": mutated})})
    parses_or_refuses(parse_notion_html, data, "fuzz.zip", "notion_html")
