"""Things 3's database: areas, projects, headings, to-dos, checklists, tags, deadlines,
repeating templates, both schemas, the WAL; hostile databases refused, fuzzed rows never
crash the parser."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import struct
import tempfile
import time
from pathlib import Path

import pytest
from file_exports import NEW_SCHEMA, things_database, things_zip
from fuzzing import FUZZ_SETTINGS, parses_or_refuses
from hypothesis import given
from hypothesis import strategies as st
from parser_checks import NOW, adjustments_of, by_id, parse_detected, rows, zip_bytes

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.things3 import packed_date, parse_things3
from assets.imports.parsers.untrusted_sqlite import SqliteLimits

UTC = dt.UTC


def task(uuid: str) -> str:
    return f"things3:task:{uuid}"


@pytest.fixture(scope="module")
def parsed():
    return parse_detected(things_zip(), "ThingsData.zip", "things3")


def test_areas_projects_headings_and_to_dos_nest(parsed):
    goals = by_id(parsed)
    assert goals["things3:area:A-home"]["title"] == "Home 🏠"
    assert goals[task("P-kitchen")]["parentGoalId"] == "things3:area:A-home"
    assert goals[task("H-buy")]["parentGoalId"] == task("P-kitchen")
    # area > project > heading > to-do: the fourth level sits beside its heading
    assert goals[task("T-tiles")]["parentGoalId"] == task("P-kitchen")
    assert parsed.extras[task("T-tiles")]["sourceParent"] == task("H-buy")
    assert goals[task("T-inbox")]["parentGoalId"] is None
    assert goals[task("T-inbox")]["title"] == "Untitled"
    assert len(goals[task("T-inbox")]["description"]) > 4_000
    # its project is not in the file: the normaliser attaches it to the import's root goal
    assert goals[task("T-lost")]["parentGoalId"] == "things3:goal:import-root"
    assert "things3:task:T-trash" not in goals
    skipped = {e.external_key: e.reason for e in parsed.skipped()}
    assert skipped[task("T-trash")] == "in the Things Trash"


def test_done_deadlines_tags_and_times(parsed):
    goals = by_id(parsed)
    tiles, paint = goals[task("T-tiles")], goals[task("T-paint")]
    assert tiles["isCompleted"] and tiles["completedAt"] == dt.datetime(
        2023, 11, 6, 18, 30, tzinfo=UTC
    )
    assert tiles["createdAt"] == dt.datetime(2023, 11, 3, 7, tzinfo=UTC)
    assert tiles["targetDate"] == dt.date(2023, 11, 5)
    assert goals[task("P-kitchen")]["targetDate"] == dt.date(2024, 2, 29)
    assert not paint["isCompleted"] and paint["completedAt"] is None
    assert parsed.extras[task("T-tiles")]["tags"] == ["DIY", "Urgent ⚡"]
    assert parsed.extras[task("T-tiles")]["startDate"] == "2023-11-03"
    assert "Tags: DIY, Urgent ⚡" in tiles["description"]
    assert "createdAt" in parsed.extras[task("T-nodates")]["inferred"]


def test_checklists_become_progress(parsed):
    items = {p["notes"]: p for p in rows(parsed, "Progress")}
    assert {n: int(p["value"]) for n, p in items.items()} == {
        "Measure the floor": 1,
        "Get samples": 0,
    }
    assert items["Measure the floor"]["recordedAt"] == dt.datetime(2023, 11, 3, 9, tzinfo=UTC)


def test_a_repeating_to_do_is_one_goal(parsed):
    goals = by_id(parsed)
    call = goals[task("T-call")]
    assert [g["title"] for g in goals.values()].count("Call Mom 📞") == 1
    assert "Repeats: every 2 weeks" in call["description"]
    assert parsed.extras[task("T-call")]["repetitionsDone"] == 2
    assert any(e.count == 2 and "repeating" in e.reason for e in parsed.skipped())


def test_the_old_schema_and_the_single_file():
    files = things_database(old_schema=True, wal=False)
    parsed = parse_detected(files["main.sqlite"], "main.sqlite", "things3")
    goals = by_id(parsed)
    tiles = goals[task("T-tiles")]
    assert tiles["createdAt"] == dt.datetime(2023, 11, 3, 7, tzinfo=UTC)  # 2001-epoch seconds
    assert tiles["targetDate"] == dt.date(2023, 11, 5)
    assert "Repeats: every 2 weeks" in goals[task("T-call")]["description"]
    assert task("T-call-1") not in goals


def test_rows_only_in_the_wal_are_read():
    files = things_database()
    assert "main.sqlite-wal" in files
    with_wal = parse_things3(zip_bytes(files), now=NOW)
    without = parse_things3(files["main.sqlite"], now=NOW)
    assert rows(with_wal, "Goal") and not rows(without, "Goal")


def test_inconsistent_rows_are_normalised_and_each_adjustment_reported():
    parsed = parse_things3(things_zip(inconsistent=True), now=NOW)
    goals = by_id(parsed)
    tiles, paint = goals[task("T-tiles")], goals[task("T-paint")]
    # completed before it was created: createdAt moved to the completion, the source kept
    assert tiles["createdAt"] == tiles["completedAt"] == dt.datetime(2023, 1, 5, 9, tzinfo=UTC)
    assert parsed.extras[task("T-tiles")]["sourceCreatedAt"] == "2023-11-03T07:00:00Z"
    [tiles_note] = adjustments_of(parsed, task("T-tiles"))
    assert tiles_note.startswith("completed (2023-01-05T09:00:00Z) before it was created")
    # modified before it was created: createdAt moved to the last change
    assert paint["createdAt"] == paint["updatedAt"] == dt.datetime(2023, 10, 1, tzinfo=UTC)
    [paint_note] = adjustments_of(parsed, task("T-paint"))
    assert paint_note.startswith("last modified (2023-10-01T00:00:00Z) before it was created")
    assert "createdAt moved to the earliest known time" in paint_note
    # the long note is shortened with the full text kept, the orphan hangs under the root
    assert len(goals[task("T-inbox")]["description"]) == 5000
    assert "longer than the app's 5000" in adjustments_of(parsed, task("T-inbox"))[0]
    root = goals[task("T-lost")]["parentGoalId"]
    assert root == "things3:goal:import-root"
    assert "is not in the file" in adjustments_of(parsed, task("T-lost"))[0]


def test_packed_dates():
    assert packed_date(132625024) == dt.date(2023, 11, 5)
    assert packed_date(0) is None and packed_date(2**40) is None and packed_date("x") is None


def test_detection_never_claims_other_sqlite_files():
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "other.sqlite")
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE notes (id INTEGER, body TEXT)")
        db.commit()
        db.close()
        other = Path(path).read_bytes()
    assert detect_source(other, "main.sqlite") == "unknown"
    assert detect_source(things_zip(), "x.zip") == "things3"


def _database(script: str) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "main.sqlite")
        db = sqlite3.connect(path, isolation_level=None)
        db.executescript(script)
        db.close()
        return Path(path).read_bytes()


def test_a_view_posing_as_a_table_that_never_ends_is_stopped():
    evil = _database(
        NEW_SCHEMA.replace("CREATE TABLE TMChecklistItem", "CREATE TABLE Unused")
        + """CREATE VIEW TMChecklistItem AS WITH RECURSIVE n(i) AS
          (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i AS uuid, 'x' AS title,
          'T' AS task FROM n;"""
    )
    started = time.monotonic()
    with pytest.raises(ImportFormatError, match="TMChecklistItem.*view"):
        parse_things3(evil, file_name="main.sqlite")
    assert time.monotonic() - started < 1


def test_a_slow_query_hits_the_deadline():
    slow = _database(
        NEW_SCHEMA.replace("CREATE TABLE TMTag ", "CREATE TABLE Unused ")
        + """CREATE VIEW TMTag AS WITH RECURSIVE n(i) AS
          (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i AS uuid, 'x' AS title FROM n;"""
    )
    limits = SqliteLimits(max_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(ImportFormatError):
        parse_things3(slow, file_name="main.sqlite", sqlite_limits=limits)
    assert time.monotonic() - started < 1


def test_triggers_never_run_and_the_copy_is_removed():
    script = (
        NEW_SCHEMA
        + """
        CREATE TABLE log (x TEXT);
        CREATE TRIGGER evil AFTER INSERT ON TMTask BEGIN INSERT INTO log VALUES ('ran'); END;
        INSERT INTO TMTask (uuid, type, status, trashed, title) VALUES ('T1', 0, 0, 0, 'Hi');
    """
    )
    data = _database(script)
    before = set(os.listdir(tempfile.gettempdir()))
    parsed = parse_things3(data, now=NOW)
    assert [g["title"] for g in rows(parsed, "Goal")] == ["Hi"]
    leftovers = {
        n for n in set(os.listdir(tempfile.gettempdir())) - before if "goalport-sqlite" in n
    }
    assert leftovers == set()


def test_a_huge_page_count_header_is_refused_before_opening():
    data = bytearray(_database(NEW_SCHEMA))
    data[28:32] = struct.pack(">I", 2**31 - 1)
    started = time.monotonic()
    with pytest.raises(ImportFormatError, match="page count"):
        parse_things3(bytes(data), file_name="main.sqlite")
    assert time.monotonic() - started < 1


def test_a_corrupt_or_foreign_database_is_refused():
    data = bytearray(_database(NEW_SCHEMA))
    data[4096:8192] = b"\xff" * 4096
    with pytest.raises(ImportFormatError):
        parse_things3(bytes(data), file_name="main.sqlite")
    with pytest.raises(ImportFormatError, match="no TMTask"):
        parse_things3(_database("CREATE TABLE x (a);"), file_name="main.sqlite")
    with pytest.raises(ImportFormatError, match="not an SQLite database"):
        parse_things3(b"SQLite format 2" + b"\x00" * 200, file_name="main.sqlite")


VALUES = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.binary(max_size=30),
)


@FUZZ_SETTINGS
@given(st.lists(st.tuples(*[VALUES] * 10), min_size=1, max_size=8))
def test_fuzzed_rows_import_or_are_refused(values):
    script = NEW_SCHEMA
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "main.sqlite")
        db = sqlite3.connect(path, isolation_level=None)
        db.executescript(script)
        db.executemany(
            "INSERT OR IGNORE INTO TMTask (uuid, type, status, trashed, title, creationDate, stopDate,"
            " deadline, project, rt1_recurrenceRule) VALUES (?,?,?,?,?,?,?,?,?,?)",
            values,
        )
        db.executemany(
            "INSERT OR IGNORE INTO TMChecklistItem (uuid, title, status, task) VALUES (?,?,?,?)",
            [v[:4] for v in values],
        )
        db.close()
        data = Path(path).read_bytes()
    parses_or_refuses(parse_things3, data, "main.sqlite", "things3")
