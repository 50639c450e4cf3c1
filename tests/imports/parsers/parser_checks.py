"""Shared checks for the foreign-export parser tests: the ParsedImport contract, fixtures.

Every parser test runs `assert_contract` on what it parsed, so each app is held to the same
promises: app-shaped Arrow tables, stable namespaced keys, resolvable references, at most
three goal levels, millisecond UTC timestamps and JSON-serialisable extras.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from pathlib import Path

import pyarrow as pa

from assets.imports.parsers.base import ParsedImport
from assets.imports.parsers.detect import detect_source, parse_foreign_export
from resources.schema import APP_ARROW_SCHEMAS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
NOW = dt.datetime(2024, 3, 1, 23, 30, tzinfo=dt.UTC)


def fixture_bytes(app: str, name: str) -> bytes:
    return (FIXTURES / app / name).read_bytes()


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content.encode() if isinstance(content, str) else content)
    return buffer.getvalue()


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    return zip_bytes(
        {
            prefix + p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
    )


def rows(parsed: ParsedImport, table: str) -> list[dict]:
    return parsed.tables[table].to_pylist()


def by_title(parsed: ParsedImport) -> dict[str, dict]:
    return {g["title"]: g for g in rows(parsed, "Goal")}


def by_id(parsed: ParsedImport, table: str = "Goal") -> dict[str, dict]:
    return {r["id"]: r for r in rows(parsed, table)}


def depth_of(goals: dict[str, dict], key: str) -> int:
    depth = 1
    while goals[key]["parentGoalId"] is not None:
        key = goals[key]["parentGoalId"]
        depth += 1
    return depth


def parse_detected(data: bytes, name: str, app: str) -> ParsedImport:
    """`data` uploaded as `name`: recognised as `app`'s export, parsed the way an upload is
    (`parse_foreign_export`, at NOW), and held to the contract."""
    assert detect_source(data, name) == app
    parsed = parse_foreign_export(data, file_name=name, now=NOW)
    assert_contract(parsed, app)
    return parsed


def assert_contract(parsed: ParsedImport, app: str) -> None:
    assert parsed.source_app == app
    ids: dict[str, set[str]] = {}
    for name, table in parsed.tables.items():
        schema = APP_ARROW_SCHEMAS[name]
        assert table.schema.equals(schema), f"{name} schema differs"
        for field in schema:
            column = table.column(field.name)
            if not field.nullable:
                assert column.null_count == 0, f"{name}.{field.name} has nulls"
            if pa.types.is_timestamp(field.type):
                for value in column.to_pylist():
                    assert value is None or value.microsecond % 1000 == 0
        table_ids = table.column("id").to_pylist()
        assert len(set(table_ids)) == len(table_ids), f"{name} ids repeat"
        assert all(i.startswith(f"{app}:") for i in table_ids)
        assert set(table.column("userId").to_pylist()) <= {""}
        ids[name] = set(table_ids)
    assert {"Module", "Goal"} <= set(parsed.tables)
    goals = by_id(parsed)
    for goal in goals.values():
        assert goal["parentGoalId"] is None or goal["parentGoalId"] in goals
        assert goal["moduleId"] in ids["Module"]
        assert 1 <= goal["priority"] <= 5
        assert goal["difficulty"] is None or 1 <= goal["difficulty"] <= 5
        assert goal["title"].strip()
        assert depth_of(goals, goal["id"]) <= 3
    for progress in rows(parsed, "Progress") if "Progress" in parsed.tables else []:
        assert progress["goalId"] in goals
    all_ids = set().union(*ids.values())
    assert set(parsed.extras) <= all_ids, set(parsed.extras) - all_ids
    json.dumps(parsed.extras)
    for entry in parsed.report:
        assert entry.action in ("imported", "adjusted", "flattened", "skipped", "decoded")
        assert entry.source_item
        if entry.action == "adjusted":
            assert entry.adjustments and all(entry.adjustments)
        if entry.action == "decoded":
            assert entry.reason and entry.target_table is None
            continue
        if entry.action == "skipped":
            assert entry.reason and entry.target_table is None
        else:
            assert entry.target_table in parsed.tables


def bad_rows(parsed: ParsedImport) -> list[tuple[str, str]]:
    """(source item, reason) of every row skipped because it could not be mapped."""
    return [(e.source_item, e.reason) for e in parsed.report if e.bad]


def foreign_exports() -> dict[str, bytes]:
    """One export per app, as a user would upload it."""
    notion = zip_folder(FIXTURES / "notion" / "export", prefix="Export-1234/")
    return {
        "todoist": fixture_bytes("todoist", "Home [2203306141].csv"),
        "notion": zip_bytes({"Export-1234-Part-1.zip": notion}),
        "trello": fixture_bytes("trello", "board.json"),
        "asana": fixture_bytes("asana", "Website_Relaunch.csv"),
        "ticktick": fixture_bytes("ticktick", "TickTick-backup-2024-03-10.csv"),
        "google_tasks": zip_bytes(
            {"Takeout/Tasks/Tasks.json": fixture_bytes("google_tasks", "Tasks.json")}
        ),
        "habitica": fixture_bytes("habitica", "habitica-user-data.json"),
        "loop_habits": zip_folder(FIXTURES / "loop_habits" / "export"),
        "microsoft_todo": zip_folder(FIXTURES / "microsoft_todo" / "export", prefix="todo/"),
        "remember_the_milk": fixture_bytes("remember_the_milk", "rememberthemilk_export.json"),
        "taskwarrior": fixture_bytes("taskwarrior", "taskwarrior.json"),
        "toodledo": fixture_bytes("toodledo", "toodledo_tasks.csv"),
        **file_exports(),
    }


def file_exports() -> dict[str, bytes]:
    """The archive and database exports (built by file_exports.py, not stored fixtures)."""
    import file_exports as built

    return {
        "notion_html": built.notion_html_export(),
        "things3": built.things_zip(),
        "google_keep": built.keep_takeout(),
        "joplin": built.joplin_export(),
    }


def adjustments_of(parsed: ParsedImport, key: str) -> list[str]:
    """The adjustments the mapping report holds for the row `key` (empty when none)."""
    return [note for e in parsed.report if e.external_key == key for note in e.adjustments]
