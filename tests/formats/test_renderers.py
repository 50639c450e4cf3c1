"""The export renderers write what they promise, and the readers give back exactly that.

Every file is checked value by value with an independent reader (json, csv, openpyxl,
pyarrow.parquet), never with goalport's own readers; then render -> read must give back
the input exactly, for a hand-built user full of awkward values and for random tables.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from decimal import Decimal

import jsonschema
import openpyxl
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.formats import json as render_json_module
from assets.formats.csv import read_csv_zip
from assets.formats.json import (
    EXPORT_JSON_SCHEMA_PATH,
    MAX_GOAL_DEPTH,
    export_json_schema_text,
    read_json_export,
)
from assets.formats.parquet import read_parquet_zip
from assets.formats.registry import FORMATS, READABLE_FORMATS, reader_of
from assets.formats.xlsx import read_xlsx_export
from assets.formats.zip_archive import write_zip
from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES

UID = "user-Zoë-1"
EXPORT_VALIDATOR = jsonschema.Draft202012Validator(
    json.loads(EXPORT_JSON_SCHEMA_PATH.read_text(encoding="utf-8"))
)
EXPORTED_AT = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
FORMULA_LIKE = ("=", "+", "-", "@", "\t", "\r", "\n")


def ts(y, mo, d, h=0, mi=0, s=0, ms=0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=dt.UTC)


def rich_rows() -> dict[str, list[dict]]:
    """A small user with every awkward value the app can hold, in no particular row order."""
    goal = dict(userId=UID, difficulty=None, targetDate=None, completedAt=None)
    progress_cases = [
        ("g1", "0.01", "100.00", "=SUM(A1:A2)"),
        ("g1", "9999999999.99", None, "+1 more"),
        ("g1", "12.50", "9999999999.99", "-2 km"),
        ("g2", "-0.50", None, "@mention"),
        ("g2", "0.00", "1.00", "\tindented"),
        ("g3", "1.10", None, "'already quoted"),
        ("g3", "3.33", None, ""),
        ("g1", "7.00", None, None),
        ("g4", "42.42", None, "مرحبا\nبالعالم"),
        ("g1", "8.00", None, "\rcarriage _x0041_ \x01 control"),
        ("g2", "-9999999999.99", None, 'quote " and , comma\r\nCRLF'),
    ]
    return {
        "User": [
            dict(
                id=UID,
                email="zoë@example.com",
                firstName="Zoë 😀",
                lastName=" 李小龍 محمد",
                timezone=None,
                createdAt=ts(2023, 1, 2, 3, 4, 5, 678),
                updatedAt=ts(2024, 2, 29, 23, 59, 59, 999),
            )
        ],
        "Module": [
            dict(
                id="m2",
                userId=UID,
                kind="bible",
                name="Bible 📖",
                isActive=True,
                createdAt=ts(2023, 1, 1, ms=1),
            ),
            dict(
                id="m1",
                userId=UID,
                kind="fitness",
                name="=Fitness",
                isActive=False,
                createdAt=ts(2023, 1, 1),
            ),
        ],
        "Goal": [
            {
                **goal,
                "id": "g3",
                "moduleId": "m1",
                "parentGoalId": "g2",
                "title": "Sub-sub 中文",
                "description": "line 1\nline 2\r\nline 3",
                "priority": 1,
                "isCompleted": False,
                "createdAt": ts(2023, 3, 1, ms=5),
                "updatedAt": ts(2023, 3, 1, ms=5),
            },
            {
                **goal,
                "id": "g1",
                "moduleId": "m1",
                "parentGoalId": None,
                "title": "Run a marathon 🏃",
                "description": "",
                "priority": 5,
                "difficulty": 3,
                "targetDate": dt.date(2024, 12, 31),
                "isCompleted": True,
                "completedAt": ts(2024, 1, 1, 12, ms=123),
                "createdAt": ts(2023, 1, 5),
                "updatedAt": ts(2024, 1, 1, 12, ms=123),
            },
            {
                **goal,
                "id": "g2",
                "moduleId": "m1",
                "parentGoalId": "g1",
                "title": "+10k",
                "description": None,
                "priority": 2,
                "difficulty": 1,
                "targetDate": dt.date(1999, 1, 1),
                "isCompleted": False,
                "createdAt": ts(2023, 2, 1, ms=999),
                "updatedAt": ts(2023, 2, 1, ms=999),
            },
            {
                **goal,
                "id": "g4",
                "moduleId": None,
                "parentGoalId": None,
                "title": "@home",
                "description": "-minus",
                "priority": 3,
                "isCompleted": False,
                "createdAt": ts(2023, 4, 1),
                "updatedAt": ts(2023, 4, 1),
            },
        ],
        "Progress": [
            dict(
                id=f"p{i:02d}",
                userId=UID,
                goalId=g,
                value=Decimal(v),
                maxValue=None if m is None else Decimal(m),
                notes=n,
                recordedAt=ts(2023, 5, 1 + i, 8, 30, ms=250 + i),
            )
            for i, (g, v, m, n) in reversed(list(enumerate(progress_cases)))
        ],
        "Achievement": [
            dict(
                id="a1",
                userId=UID,
                goalId=None,
                kind="streak",
                title="7 days 🔥",
                description=None,
                points=10,
                earnedAt=ts(2023, 6, 1, ms=1),
            ),
        ],
        "UserSetting": [
            dict(id="s2", userId=UID, key="empty", value=None, updatedAt=ts(2023, 6, 1, ms=3)),
            dict(
                id="s1",
                userId=UID,
                key="theme",
                value='{"dark": true}',
                updatedAt=ts(2023, 6, 1, ms=2),
            ),
        ],
        "BibleReadingPlan": [
            dict(
                id="bp1",
                userId=UID,
                name="Psalms",
                description="Ψαλμοί",
                startDate=dt.date(2024, 1, 1),
                endDate=None,
                createdAt=ts(2023, 12, 31, 23, 59, 59, 999),
            ),
        ],
        "BibleReading": [
            dict(
                id="br1",
                userId=UID,
                planId="bp1",
                book="Psalms",
                chapter=23,
                verseStart=1,
                verseEnd=None,
                scheduledDate=dt.date(2024, 1, 2),
                completedAt=None,
            ),
        ],
        "BibleStudyNote": [
            dict(
                id="bn1",
                userId=UID,
                readingId="br1",
                book="Psalms",
                chapter=23,
                verse=None,
                title=None,
                content="The Lord is my shepherd — الرَّبُّ رَاعِيَّ",
                tags="peace,trust",
                createdAt=ts(2024, 1, 2, 6, ms=7),
                updatedAt=ts(2024, 1, 2, 6, ms=7),
            ),
        ],
        "WorkProject": [
            dict(
                id="wp1",
                userId=UID,
                goalId="g4",
                name="Ship it",
                description=None,
                status="active",
                budget=Decimal("0.01"),
                startDate=dt.date(2024, 1, 1),
                dueDate=None,
                createdAt=ts(2024, 1, 1),
                updatedAt=ts(2024, 1, 1),
            ),
        ],
        "WorkTask": [
            dict(
                id="wt1",
                userId=UID,
                projectId="wp1",
                title="-Refactor",
                notes='=HYPERLINK("http://example.com")',
                status="todo",
                priority=2,
                estimateHours=Decimal("9999.99"),
                dueAt=None,
                completedAt=None,
                createdAt=ts(2024, 1, 3, ms=333),
            ),
        ],
    }


def as_tables(rows: dict[str, list[dict]]) -> dict[str, pa.Table]:
    return {
        name: pa.Table.from_pylist(rows.get(name, []), schema=APP_ARROW_SCHEMAS[name])
        for name in APP_TABLE_NAMES
    }


def sorted_rows(rows: dict[str, list[dict]]) -> dict[str, list[dict]]:
    return {name: sorted(rows.get(name, []), key=lambda r: r["id"]) for name in APP_TABLE_NAMES}


@pytest.fixture(scope="module")
def rich() -> dict[str, list[dict]]:
    return rich_rows()


@pytest.fixture(scope="module")
def rich_tables(rich) -> dict[str, pa.Table]:
    return as_tables(rich)


def render(fmt: str, tables, **options) -> bytes:
    options = {"user_id": UID, "exported_at": EXPORTED_AT, "filters": None, **options}
    return FORMATS[fmt].render(tables, **options)


# ---------------------------------------------------------------- independent expectations


def iso_ms(value: dt.datetime) -> str:
    value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def expected_text(value, field: pa.Field) -> str | None:
    """How a value is written as text (JSON strings, CSV fields), derived without goalport."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return iso_ms(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.{field.type.scale}f}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def expected_json_value(value, field: pa.Field):
    if isinstance(value, bool | int | str) or value is None:
        return value
    return expected_text(value, field)


def ooxml_unescape(text: str) -> str:
    """ECMA-376 ST_Xstring: _xHHHH_ stands for the character HHHH."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


# ---------------------------------------------------------------- JSON


def flatten_goal_tree(goals: list[dict], parent_id=None, seen=None) -> tuple[list, list]:
    goal_rows, progress_rows = [], []
    for node in goals:
        assert node["parentGoalId"] == parent_id or parent_id is None
        row = {k: v for k, v in node.items() if k not in ("progress", "subGoals")}
        goal_rows.append(row)
        for p in node["progress"]:
            assert p["goalId"] == node["id"]
        progress_rows.extend(node["progress"])
        sub_goals, sub_progress = flatten_goal_tree(node["subGoals"], node["id"])
        goal_rows.extend(sub_goals)
        progress_rows.extend(sub_progress)
    return goal_rows, progress_rows


def test_json_document_holds_every_value_exactly(rich):
    document = json.loads(render("json", as_tables(rich)).decode("utf-8"))
    assert document["format"] == "goalport.export"
    assert document["formatVersion"] == 1
    assert document["exportedAt"] == "2024-05-06T07:08:09.123Z"
    assert document["userId"] == UID
    assert document["filters"] is None

    # the tree: g1 > g2 > g3, g4 on its own; progress under its goal
    goals = document["goals"]
    assert [g["id"] for g in goals] == ["g1", "g4"]
    assert [g["id"] for g in goals[0]["subGoals"]] == ["g2"]
    assert [g["id"] for g in goals[0]["subGoals"][0]["subGoals"]] == ["g3"]
    assert [p["id"] for p in goals[0]["progress"]] == ["p00", "p01", "p02", "p07", "p09"]
    assert document["unattachedProgress"] == []

    goal_rows, progress_rows = flatten_goal_tree(goals)
    found = {
        "User": [document["user"]],
        "Module": document["modules"],
        "Goal": goal_rows,
        "Progress": progress_rows,
        **{name: document[name] for name in APP_TABLE_NAMES[4:]},
    }
    for name, rows in sorted_rows(rich).items():
        schema = APP_ARROW_SCHEMAS[name]
        expected = [{f.name: expected_json_value(r[f.name], f) for f in schema} for r in rows]
        assert sorted(found[name], key=lambda r: r["id"]) == expected, name
        assert all(list(r) == schema.names for r in found[name]), name
    # decimals keep their scale; a JSON number would not
    assert progress_rows[0]["value"] == "0.01"
    assert goals[0]["progress"][1]["value"] == "9999999999.99"


def test_json_validates_against_the_published_schema(rich):
    assert EXPORT_JSON_SCHEMA_PATH.read_text(encoding="utf-8") == export_json_schema_text(), (
        "the published schema is stale: run assets.formats.json.write_published_schema()"
    )
    validator = EXPORT_VALIDATOR
    validator.check_schema(validator.schema)
    document = json.loads(render("json", as_tables(rich), filters={"modules": ["bible"]}))
    validator.validate(document)
    empty = json.loads(render("json", as_tables({"User": rich["User"]})))
    validator.validate(empty)

    # the schema is not vacuous: a decimal without its scale, a number for a decimal, a
    # timestamp without Z, an unknown field and a missing field are all refused
    bad_values = [
        ("value", "12.5"),
        ("value", 12.5),
        ("recordedAt", "2023-05-01T08:30:00.250"),
        ("surprise", 1),
    ]
    for key, value in bad_values:
        broken = json.loads(json.dumps(document))
        broken["goals"][0]["progress"][0][key] = value
        assert not validator.is_valid(broken), (key, value)
    broken = json.loads(json.dumps(document))
    del broken["goals"][0]["title"]
    assert not validator.is_valid(broken)


# ---------------------------------------------------------------- CSV


def csv_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_csv_zip_is_rfc4180_with_every_value_exact(rich):
    members = csv_members(render("csv-machine", as_tables(rich)))
    assert set(members) == {f"{n}.csv" for n in APP_TABLE_NAMES} | {"datapackage.json"}
    for name, rows in sorted_rows(rich).items():
        raw = members[f"{name}.csv"]
        assert not raw.startswith(b"\xef\xbb\xbf")
        assert raw.endswith(b"\r\n")
        records = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
        schema = APP_ARROW_SCHEMAS[name]
        assert records[0] == schema.names
        expected = [[expected_text(r[f.name], f) or "" for f in schema] for r in rows]
        assert records[1:] == expected, name

    # every record ends in CRLF; a bare LF only occurs inside a quoted value
    progress = members["Progress.csv"].decode("utf-8")
    assert progress.count("\r\n") == 12 + 1  # 12 records + the CRLF inside p10's notes
    # null is an empty unquoted field, the empty string is ""
    lines = {line.split(",")[0]: line for line in progress.split("\r\n")}
    assert ',"",' in lines['"p06"']
    assert ',,"2023-05-08T08:30:00.257Z"' in lines['"p07"']
    # nothing is escaped in the machine flavour
    assert ',"=SUM(A1:A2)",' in lines['"p00"']


def test_csv_excel_flavour_escapes_formulas_and_reads_back_exactly(rich, rich_tables):
    members = csv_members(render("csv", rich_tables))
    raw = members["Progress.csv"]
    assert raw.startswith(b"\xef\xbb\xbf")
    records = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    notes = {r[0]: r[5] for r in records[1:]}
    for row in rich["Progress"]:
        value = row["notes"]
        if value and value.startswith((*FORMULA_LIKE, "'")):
            assert notes[row["id"]] == "'" + value
        else:
            assert notes[row["id"]] == (value or "")
    assert notes["p00"] == "'=SUM(A1:A2)"
    assert notes["p05"] == "''already quoted"
    # numbers are data, not text: a negative decimal is not escaped
    assert {r[0]: r[3] for r in records[1:]}["p03"] == "-0.50"

    package = json.loads(members["datapackage.json"])
    escaping = package["goalport"]["excelEscaping"]
    assert escaping["prefix"] == "'"
    assert set(escaping["triggers"]) == {*FORMULA_LIKE, "'"}
    assert package["resources"][0]["encoding"] == "utf-8-sig"

    back = read_csv_zip(render("csv", rich_tables))
    assert back["Progress"].column("notes").to_pylist() == [
        r["notes"] for r in sorted_rows(rich)["Progress"]
    ]


def extract(data: bytes, folder) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)


@pytest.mark.parametrize("fmt", ["csv-machine", "csv"])
def test_datapackage_is_valid_frictionless(fmt, rich_tables, tmp_path):
    from frictionless import validate

    extract(render(fmt, rich_tables), tmp_path)
    report = validate(tmp_path / "datapackage.json")
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])

    package = json.loads((tmp_path / "datapackage.json").read_text(encoding="utf-8"))
    progress = next(r for r in package["resources"] if r["title"] == "Progress")
    assert progress["path"] == "Progress.csv"
    assert progress["schema"]["primaryKey"] == ["id"]
    assert {"fields": ["goalId"], "reference": {"resource": "goal", "fields": ["id"]}} in (
        progress["schema"]["foreignKeys"]
    )
    types = {f["name"]: f["type"] for f in progress["schema"]["fields"]}
    assert types == {
        "id": "string",
        "userId": "string",
        "goalId": "string",
        "value": "number",
        "maxValue": "number",
        "notes": "string",
        "recordedAt": "datetime",
    }


# ---------------------------------------------------------------- XLSX


def test_xlsx_cells_are_typed_and_text_is_never_a_formula(rich):
    data = render("xlsx", as_tables(rich))
    workbook = openpyxl.load_workbook(io.BytesIO(data))
    assert workbook.sheetnames[0] == "Summary"
    assert set(APP_TABLE_NAMES) <= set(workbook.sheetnames)

    for name, rows in sorted_rows(rich).items():
        sheet = workbook[name]
        schema = APP_ARROW_SCHEMAS[name]
        assert sheet.freeze_panes == "A2", name
        last_column = openpyxl.utils.get_column_letter(len(schema))
        assert sheet.auto_filter.ref == f"A1:{last_column}{len(rows) + 1}", name
        cells = list(sheet.iter_rows())
        assert [c.value for c in cells[0]] == schema.names
        assert len(cells) == len(rows) + 1
        for row, sheet_row in zip(rows, cells[1:], strict=True):
            for field, cell in zip(schema, sheet_row, strict=True):
                value, where = row[field.name], (name, row["id"], field.name)
                if value is None:
                    assert cell.value is None, where
                elif isinstance(value, str):
                    assert cell.data_type == "s", where
                    assert ooxml_unescape(cell.value) == value, where
                elif isinstance(value, bool):
                    assert cell.data_type == "b" and cell.value is value, where
                elif isinstance(value, int):
                    assert cell.data_type == "n" and cell.value == value, where
                elif isinstance(value, Decimal):
                    assert cell.data_type == "n" and cell.value == float(value), where
                    assert cell.number_format == "0." + "0" * field.type.scale, where
                elif isinstance(value, dt.datetime):
                    assert cell.is_date and cell.number_format == "yyyy-mm-dd hh:mm:ss.000"
                    assert cell.value == value.replace(tzinfo=None), where
                else:
                    assert cell.is_date and cell.value == dt.datetime(*value.timetuple()[:3])

    # no cell anywhere is a formula, whatever the text starts with
    for sheet in workbook.worksheets:
        for line in sheet.iter_rows():
            assert all(cell.data_type != "f" for cell in line), sheet.title
    assert workbook["Progress"]["F2"].value == "=SUM(A1:A2)"
    assert workbook["Progress"]["F2"].data_type == "s"

    summary = [tuple(r) for r in workbook["Summary"].iter_rows(values_only=True)]
    assert ("User id", UID) == summary[3][:2]
    assert ("Progress", 11) in [r[:2] for r in summary]
    assert ("=Fitness", "fitness", 3, 1) in [r[:4] for r in summary]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        chart = archive.read("xl/charts/chart1.xml").decode("utf-8")
    assert "<c:lineChart>" in chart and chart.count("<c:ser>") == 4


def test_xlsx_of_a_user_without_data_has_no_chart():
    data = render("xlsx", as_tables({"User": rich_rows()["User"]}))
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    assert "Chart data" not in workbook.sheetnames
    texts = [r[0] for r in workbook["Summary"].iter_rows(values_only=True)]
    assert "No progress recorded yet: no chart." in texts
    assert read_xlsx_export(data)["Goal"].num_rows == 0


def test_xlsx_refuses_text_longer_than_a_cell():
    rows = rich_rows()
    rows["Progress"][0]["notes"] = "x" * 32768
    with pytest.raises(ValueError, match=r"Progress, row \d+, field 'notes'.*JSON, CSV"):
        render("xlsx", as_tables(rows))


# ---------------------------------------------------------------- Parquet


def test_parquet_files_carry_the_exact_schema_and_values(rich):
    members = csv_members(render("parquet", as_tables(rich)))
    assert set(members) == {f"{n}.parquet" for n in APP_TABLE_NAMES}
    for name, rows in sorted_rows(rich).items():
        table = pq.read_table(pa.BufferReader(members[f"{name}.parquet"]))
        assert table.schema.equals(APP_ARROW_SCHEMAS[name]), name
        assert table.to_pylist() == rows, name
        assert table.schema.metadata[b"goalport.userId"] == UID.encode()


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", sorted(READABLE_FORMATS))
def test_render_then_read_gives_back_exactly_the_input(fmt, rich_tables):
    data = render(fmt, rich_tables)
    back = reader_of(fmt)(data)
    assert list(back) == list(APP_TABLE_NAMES)
    for name in APP_TABLE_NAMES:
        assert back[name].schema.equals(APP_ARROW_SCHEMAS[name]), name
        assert back[name].equals(rich_tables[name].sort_by("id")), name
    # and the same input gives the same bytes
    assert render(fmt, rich_tables) == data


def test_selective_export_keeps_progress_whose_goal_is_left_out(rich, tmp_path):
    rows = rich_rows()
    rows["Goal"] = [g for g in rows["Goal"] if g["id"] != "g4"]
    rows["WorkProject"][0]["goalId"] = None
    tables = as_tables(rows)
    document = json.loads(render("json", tables, filters={"since": "2023-05-01"}))
    assert [p["id"] for p in document["unattachedProgress"]] == ["p08"]
    assert document["filters"] == {"since": "2023-05-01"}
    for fmt in READABLE_FORMATS:
        back = reader_of(fmt)(render(fmt, tables))
        assert back["Progress"].equals(tables["Progress"].sort_by("id")), fmt

    from frictionless import validate

    data = render("csv-machine", tables)
    extract(data, tmp_path)
    package = json.loads((tmp_path / "datapackage.json").read_text(encoding="utf-8"))
    progress = next(r for r in package["resources"] if r["title"] == "Progress")
    assert progress["goalport:omittedForeignKeys"]["foreignKeys"][0]["fields"] == ["goalId"]
    assert validate(tmp_path / "datapackage.json").valid


def test_goals_in_a_parent_cycle_are_exported_once():
    rows = rich_rows()
    rows["Goal"][0]["parentGoalId"] = "g4"  # g3 -> g4
    rows["Goal"][3]["parentGoalId"] = "g3"  # g4 -> g3
    tables = as_tables(rows)
    document = json.loads(render("json", tables))
    goal_rows, _ = flatten_goal_tree(document["goals"])
    assert sorted(g["id"] for g in goal_rows) == ["g1", "g2", "g3", "g4"]
    assert read_json_export(render("json", tables))["Goal"].equals(tables["Goal"].sort_by("id"))


def test_a_very_deep_goal_chain_stays_within_json_nesting_limits():
    rows = rich_rows()
    template = rows["Goal"][1]
    rows["Goal"] = [
        {**template, "id": f"c{i:03d}", "parentGoalId": f"c{i - 1:03d}" if i else None}
        for i in range(300)
    ]
    rows["Progress"], rows["WorkProject"] = [], []
    tables = as_tables(rows)
    data = render("json", tables)
    document = json.loads(data)

    def depth(nodes) -> int:
        return max((1 + depth(n["subGoals"]) for n in nodes), default=0)

    assert depth(document["goals"]) == MAX_GOAL_DEPTH + 1
    assert document["goals"][0]["id"] == "c000"
    assert read_json_export(data)["Goal"].equals(tables["Goal"])


# ---------------------------------------------------------------- refusals and errors


def test_renderers_refuse_another_users_rows():
    rows = rich_rows()
    rows["Progress"][0]["userId"] = "someone-else"
    for fmt in FORMATS:
        with pytest.raises(ValueError, match="Progress holds rows of a user other than"):
            render(fmt, as_tables(rows))


def test_readers_say_where_the_input_is_wrong(rich_tables):
    document = json.loads(render("json", rich_tables))
    document["goals"][0]["progress"][1]["value"] = "12.345"
    with pytest.raises(ValueError, match=r"goals\[0\]\.progress\[1\], field 'value'"):
        read_json_export(json.dumps(document).encode())
    document = json.loads(render("json", rich_tables))
    document["goals"][0]["subGoals"][0]["priority"] = 2.5
    with pytest.raises(ValueError, match=r"goals\[0\]\.subGoals\[0\], field 'priority'"):
        read_json_export(json.dumps(document).encode())
    with pytest.raises(ValueError, match="formatVersion 2 is not supported"):
        read_json_export(json.dumps({**document, "formatVersion": 2}).encode())
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json_export(b"{")

    members = csv_members(render("csv-machine", rich_tables))
    members["Goal.csv"] = members["Goal.csv"].replace(b",,2,1,1999", b",,high,1,1999")
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=r"Goal\.csv, row 3, field 'priority': 'high'"):
        read_csv_zip(broken.getvalue())
    with pytest.raises(ValueError, match="not a zip archive"):
        read_csv_zip(b"id,name\r\n")

    workbook = openpyxl.load_workbook(io.BytesIO(render("xlsx", rich_tables)))
    workbook["Goal"]["G3"] = "high"
    saved = io.BytesIO()
    workbook.save(saved)
    with pytest.raises(ValueError, match=r"sheet 'Goal', row 3, field 'priority': 'high'"):
        read_xlsx_export(saved.getvalue())

    members = csv_members(render("parquet", rich_tables))
    without_goals = io.BytesIO()
    with zipfile.ZipFile(without_goals, "w") as archive:
        for name, data in members.items():
            if name != "Goal.parquet":
                archive.writestr(name, data)
    with pytest.raises(ValueError, match=r"Goal\.parquet is missing"):
        read_parquet_zip(without_goals.getvalue())


# ---------------------------------------------------------------- property: any table


_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["", "=1+1", "-", "'", "''=x", "_x0041_", "\r\n", " lead", "😀\u200f"]),
)
_IDS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=4)


def _timestamps():
    moments = st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.just(dt.UTC),
    )
    whole_ms = moments.map(lambda m: m.replace(microsecond=m.microsecond // 1000 * 1000))
    return st.one_of(whole_ms, whole_ms, moments)


def _values(field: pa.Field):
    t = field.type
    if pa.types.is_decimal(t):
        limit = Decimal(10) ** (t.precision - t.scale) - Decimal(1).scaleb(-t.scale)
        values = st.decimals(-limit, limit, places=t.scale, allow_nan=False, allow_infinity=False)
    elif pa.types.is_timestamp(t):
        values = _timestamps()
    elif pa.types.is_date(t):
        values = st.dates()
    elif pa.types.is_boolean(t):
        values = st.booleans()
    elif pa.types.is_integer(t):
        values = st.integers(-(2**31), 2**31 - 1)
    else:
        values = _TEXT
    return st.one_of(st.none(), values) if field.nullable else values


@st.composite
def random_user_tables(draw) -> dict[str, pa.Table]:
    goal_ids = draw(st.lists(_IDS, max_size=6, unique=True))
    rows: dict[str, list[dict]] = {}
    for name in APP_TABLE_NAMES:
        schema = APP_ARROW_SCHEMAS[name]
        if name == "User":
            ids = [UID]
        elif name == "Goal":
            ids = goal_ids
        else:
            ids = draw(st.lists(_IDS, max_size=4, unique=True))
        table_rows = []
        for row_id in ids:
            row = {"id": row_id}
            for field in schema:
                if field.name == "id":
                    continue
                if field.name == "userId":
                    row["userId"] = UID
                elif field.name in ("goalId", "parentGoalId") and goal_ids:
                    choices = st.sampled_from(goal_ids)
                    row[field.name] = draw(st.one_of(choices, _values(field)))
                else:
                    row[field.name] = draw(_values(field))
            table_rows.append(row)
        rows[name] = table_rows
    return as_tables(rows)


def render_json_through_arrow(tables) -> bytes:
    """The JSON renderer with every table, however small, on its Arrow text path."""
    threshold = render_json_module.ARROW_TEXT_MIN_ROWS
    render_json_module.ARROW_TEXT_MIN_ROWS = 0
    try:
        return render("json", tables)
    finally:
        render_json_module.ARROW_TEXT_MIN_ROWS = threshold


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@pytest.mark.slow
@given(tables=random_user_tables())
def test_every_format_round_trips_random_tables(tables):
    for fmt in READABLE_FORMATS:
        data = FORMATS[fmt].render(tables, user_id=UID, exported_at=EXPORTED_AT, filters=None)
        back = reader_of(fmt)(data)
        for name in APP_TABLE_NAMES:
            assert back[name].equals(tables[name].sort_by("id")), (fmt, name)
        if fmt == "json":
            EXPORT_VALIDATOR.validate(json.loads(data))
            assert orjson.dumps(orjson.loads(data)) + b"\n" == data
            assert render_json_through_arrow(tables) == data


@pytest.mark.parametrize("deflate", [True, False])
def test_zips_are_the_same_bytes_for_the_same_entries_and_time(deflate):
    entries = [
        ("README.html", b"<p>hello</p>" * 500),
        ("data/empty.csv", b""),
        ("data/Zoë.json", '{"name": "Zoë"}'.encode()),
        ("bin/random", bytes(range(256)) * 40),
    ]
    for exported_at in (
        dt.datetime(2025, 2, 3, 4, 5, 7, 123000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(1970, 1, 1),  # before zip's epoch: written as 1980-01-01
    ):
        data = write_zip(entries, exported_at, deflate=deflate)
        assert write_zip(list(entries), exported_at, deflate=deflate) == data
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None
            assert [(i.filename, archive.read(i)) for i in archive.infolist()] == entries
            utc = exported_at.astimezone(dt.UTC) if exported_at.tzinfo else exported_at
            expected_time = max(utc.timetuple()[:6], (1980, 1, 1, 0, 0, 0))
            two_second_steps = (*expected_time[:5], expected_time[5] // 2 * 2)  # zip's resolution
            assert {i.date_time for i in archive.infolist()} == {two_second_steps}
            assert {i.compress_type for i in archive.infolist()} == {
                zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            }
