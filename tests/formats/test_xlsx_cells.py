"""The streaming XLSX cell reader gives exactly what openpyxl's read-only mode gives.

Every comparison is cell by cell, value and type, against `openpyxl.load_workbook(
read_only=True)` + `iter_rows(values_only=True)`: for goalport's own exports, for
workbooks openpyxl's normal writer makes, and for hand-written sheets that use the parts
of SpreadsheetML no writer here produces (rows and cells without `r`, rich text, phonetic
runs, error and ISO-date cells, a dimension smaller than the data).
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import openpyxl
import pytest
from openpyxl.utils.datetime import CALENDAR_MAC_1904
from test_renderers import as_tables, render, rich_rows

from assets.formats.xlsx import read_xlsx_export
from assets.formats.xlsx_cells import XlsxCells
from resources.database import ExtractedBatch
from synthetic.population import generate_population

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def openpyxl_rows(data: bytes) -> dict[str, list[tuple]]:
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        return {
            name: [tuple(row) for row in workbook[name].iter_rows(values_only=True)]
            for name in workbook.sheetnames
        }
    finally:
        workbook.close()


def our_rows(data: bytes) -> dict[str, list[tuple]]:
    with XlsxCells(data) as workbook:
        return {name: [tuple(row) for row in workbook.rows(name)] for name in workbook.sheet_names}


def assert_same_cells(data: bytes) -> dict[str, list[tuple]]:
    expected = openpyxl_rows(data)
    actual = our_rows(data)
    assert list(actual) == list(expected)  # the same sheets, in the same order
    for name, rows in expected.items():
        assert actual[name] == rows, name
        # equal is not enough: 1 == 1.0 == True, and a date must not come back as a number
        assert [[type(v) for v in row] for row in actual[name]] == [
            [type(v) for v in row] for row in rows
        ], name
    return actual


def replace_member(data: bytes, name: str, content: bytes | None) -> bytes:
    """The same zip with one member replaced (or left out when `content` is None)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename != name:
                target.writestr(info, source.read(info))
        if content is not None:
            target.writestr(name, content)
    return out.getvalue()


# ---------------------------------------------------------------- goalport's own exports


def test_goalport_exports_of_generated_users_read_as_openpyxl_reads_them():
    tables = generate_population(4, seed=11, heavy_every=0)
    per_user = ExtractedBatch(
        user_ids=tuple(tables["User"]["id"].to_pylist()), tables=tables
    ).per_user()
    for user_id in sorted(per_user):
        rows = assert_same_cells(render("xlsx", per_user[user_id], user_id=user_id))
        assert len(rows["Progress"]) == per_user[user_id]["Progress"].num_rows + 1


def test_goalport_export_with_unicode_escapes_and_dates_reads_as_openpyxl_reads_it():
    rows = assert_same_cells(render("xlsx", as_tables(rich_rows())))
    cells = [value for sheet in rows.values() for row in sheet for value in row]
    assert any(isinstance(value, dt.datetime) for value in cells)
    assert any(isinstance(value, str) and "_x00" in value for value in cells)
    assert any(type(value) is bool for value in cells)


def test_a_user_without_data_reads_as_openpyxl_reads_it():
    rows = assert_same_cells(render("xlsx", as_tables({"User": rich_rows()["User"]})))
    assert rows["Goal"] == [rows["Goal"][0]]  # the header row only


# ---------------------------------------------------------------- openpyxl's writer


def openpyxl_workbook(*, epoch=None) -> bytes:
    workbook = openpyxl.Workbook()
    if epoch is not None:
        workbook.epoch = epoch
    sheet = workbook.active
    sheet.title = "Values"
    sheet.append(["text", "int", "float", "bool", "datetime", "date", "duration", "custom"])
    sheet.append(
        [
            "Zoë ✓ 漢字 🎯",
            7,
            2.5,
            True,
            dt.datetime(2024, 2, 29, 13, 45, 30, 123000),
            dt.date(1999, 12, 31),
            dt.timedelta(hours=30, minutes=5),
            1234.5678,
        ]
    )
    sheet.append(["shared", -12, 1e-7, False, dt.datetime(1900, 3, 1), None, None, 0.1])
    sheet.append(["shared", 10**15, 3.0, None, None, dt.date(2038, 1, 19), None, -5])
    sheet["H2"].number_format = "0.000"
    sheet["H3"].number_format = "dd/mm/yyyy hh:mm"  # a custom date format
    sheet["A7"] = "after a gap of two rows"
    sheet["F7"] = "after a gap of four columns"
    sheet["B8"] = "=SUM(B2:B4)"
    escapes = workbook.create_sheet("Escapes")
    escapes["A1"] = "a_x0041_b"  # kept as written: goalport unescapes it later
    escapes["A2"] = "keep_x005F_this"
    escapes["C3"] = "   spaces kept   "
    escapes["B5"] = ""
    workbook.create_sheet("Empty")
    data = io.BytesIO()
    workbook.save(data)
    return data.getvalue()


def test_openpyxl_written_workbook_reads_as_openpyxl_reads_it():
    rows = assert_same_cells(openpyxl_workbook())
    values = rows["Values"]
    assert values[1][4] == dt.datetime(2024, 2, 29, 13, 45, 30, 123000)
    assert values[1][6] == dt.timedelta(hours=30, minutes=5)
    assert type(values[1][1]) is int and type(values[1][2]) is float
    assert values[2][7] == dt.time(2, 24)  # 0.1 of a day in a custom date format
    assert values[4] == (None,) * 8 and values[6][5] == "after a gap of four columns"
    assert values[7][1] == "=SUM(B2:B4)"
    assert rows["Escapes"][1][0] == "keep_x005F_this"  # written inline: kept as is
    assert rows["Empty"] == []


def test_the_1904_date_system_is_respected():
    data = openpyxl_workbook(epoch=CALENDAR_MAC_1904)
    assert b'date1904="1"' in zipfile.ZipFile(io.BytesIO(data)).read("xl/workbook.xml")
    rows = assert_same_cells(data)
    assert rows["Values"][1][4] == dt.datetime(2024, 2, 29, 13, 45, 30, 123000)


# ---------------------------------------------------------------- hand-written sheets


def with_sheet(sheet_xml: str, shared_strings_xml: str | None = None) -> bytes:
    """An openpyxl-written workbook whose first sheet is replaced by `sheet_xml`, with a
    shared strings part as Excel writes one (openpyxl 3.1 writes text inline)."""
    data = openpyxl_workbook()
    data = replace_member(
        data,
        "xl/worksheets/sheet1.xml",
        f'<worksheet xmlns="{MAIN_NS}">{sheet_xml}</worksheet>'.encode(),
    )
    if shared_strings_xml is None:
        return data
    archive = zipfile.ZipFile(io.BytesIO(data))
    content_types = archive.read("[Content_Types].xml").replace(
        b"</Types>",
        b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>',
    )
    relationships = archive.read("xl/_rels/workbook.xml.rels").replace(
        b"</Relationships>",
        b'<Relationship Id="rIdStrings" Target="sharedStrings.xml" Type="http://schemas.'
        b'openxmlformats.org/officeDocument/2006/relationships/sharedStrings"/></Relationships>',
    )
    data = replace_member(data, "[Content_Types].xml", content_types)
    data = replace_member(data, "xl/_rels/workbook.xml.rels", relationships)
    shared_strings = f'<sst xmlns="{MAIN_NS}">{shared_strings_xml}</sst>'.encode()
    return replace_member(data, "xl/sharedStrings.xml", shared_strings)


SHARED_STRINGS = (
    "<si><t>plain</t></si>"
    "<si><r><rPr><b/></rPr><t>rich </t></r><r><t>runs</t></r><rPh sb='0' eb='1'><t>ふ</t></rPh></si>"
    "<si><t>lead </t><r><t>and run</t></r></si>"
    "<si><t/></si>"
    "<si><t>keep_x005F_this</t></si>"
)


@pytest.mark.parametrize(
    "sheet_xml",
    [
        pytest.param(
            "<dimension ref='A1:F4'/><sheetData>"
            "<row r='1'><c r='A1' t='s'><v>0</v></c><c r='C1' t='s'><v>1</v></c></row>"
            "<row r='3'><c r='B3' t='s'><v>2</v></c><c r='D3' t='s'><v>3</v></c>"
            "<c r='E3' t='s'><v>4</v></c></row>"
            "</sheetData>",
            id="shared-rich-text-and-gaps",
        ),
        pytest.param(
            "<sheetData>"
            "<row><c><v>1</v></c><c><v>2.5</v></c><c t='b'><v>0</v></c></row>"
            "<row><c r='C2'><v>1E3</v></c><c><v>-4</v></c></row>"
            "<row r='5'/><row><c r='AB6' t='str'><v>text result</v></c></row>"
            "</sheetData>",
            id="rows-and-cells-without-r-and-no-dimension",
        ),
        pytest.param(
            "<dimension ref='A1:C2'/><sheetData>"
            "<row r='1'><c r='A1' t='e'><v>#N/A</v></c><c r='B1' t='d'>"
            "<v>2024-05-06T07:08:09</v></c><c r='C1' t='inlineStr'><is><r><t>in</t></r>"
            "<r><t>line</t></r><rPh sb='0' eb='1'><t>x</t></rPh></is></c></row>"
            "<row r='2'><c r='A2' t='inlineStr'/><c r='B2'><v></v></c></row>"
            "<row r='3'><c r='A3'><v>9</v></c></row>"
            "</sheetData>",
            id="errors-iso-dates-inline-rich-text-and-rows-past-the-dimension",
        ),
        pytest.param(
            "<dimension ref='A1:D9'/><sheetData>"
            "<row r='2'><c r='B2'><v>1</v></c></row>"
            "<row r='2'><c r='C2'><v>2</v></c></row>"
            "</sheetData>",
            id="a-dimension-larger-than-the-data-and-a-repeated-row",
        ),
        pytest.param("<sheetData/>", id="no-cells"),
    ],
)
def test_hand_written_sheets_read_as_openpyxl_reads_them(sheet_xml):
    assert_same_cells(with_sheet(sheet_xml, SHARED_STRINGS))


def test_rich_text_is_joined_and_phonetic_runs_are_left_out():
    data = with_sheet(
        "<sheetData><row r='1'><c r='A1' t='s'><v>1</v></c><c r='B1' t='s'><v>2</v></c>"
        "<c r='C1' t='s'><v>4</v></c></row></sheetData>",
        SHARED_STRINGS,
    )
    # openpyxl drops the escaped underscore `x005F_` in shared strings (not inline ones)
    assert our_rows(data)["Values"] == [("rich runs", "lead and run", "keep_this")]


# ---------------------------------------------------------------- malformed input


@pytest.fixture(scope="module")
def export() -> bytes:
    return render("xlsx", as_tables(rich_rows()))


def test_not_a_zip_is_refused_as_before():
    with pytest.raises(
        ValueError, match="^XLSX export: not a readable workbook: File is not a zip"
    ):
        read_xlsx_export(b"id,name\r\n")


def test_a_missing_table_sheet_is_named(export):
    workbook = openpyxl.load_workbook(io.BytesIO(export))
    del workbook["Goal"]
    saved = io.BytesIO()
    workbook.save(saved)
    with pytest.raises(ValueError, match=r"^XLSX export: sheet 'Goal' is missing$"):
        read_xlsx_export(saved.getvalue())


def sheet_part(data: bytes, sheet_name: str) -> str:
    with XlsxCells(data) as workbook:
        return workbook.sheet_paths[sheet_name]


def test_broken_sheet_xml_names_the_sheet(export):
    part = sheet_part(export, "Goal")
    original = zipfile.ZipFile(io.BytesIO(export)).read(part)
    broken = replace_member(export, part, original[: len(original) // 2])
    with pytest.raises(ValueError, match=r"sheet 'Goal' \(.+\) is not well-formed XML"):
        read_xlsx_export(broken)


def test_a_missing_sheet_part_is_a_missing_sheet(export):
    with pytest.raises(ValueError, match=r"sheet 'Goal' is missing"):
        read_xlsx_export(replace_member(export, sheet_part(export, "Goal"), None))


@pytest.mark.parametrize("member", ["xl/workbook.xml", "xl/_rels/workbook.xml.rels"])
def test_broken_or_missing_workbook_parts_are_named(export, member):
    with pytest.raises(ValueError, match=f"not a readable workbook: {member} is not well-formed"):
        read_xlsx_export(replace_member(export, member, b"<workbook"))
    with pytest.raises(ValueError, match=f"not a readable workbook: {member} is missing"):
        read_xlsx_export(replace_member(export, member, None))


def test_a_bad_cell_names_the_sheet(export):
    part = sheet_part(export, "Goal")
    original = zipfile.ZipFile(io.BytesIO(export)).read(part)
    broken = replace_member(export, part, original.replace(b"<v>", b"<v>x", 1))
    with pytest.raises(ValueError, match=r"^XLSX export: sheet 'Goal' \(.+\): invalid literal"):
        read_xlsx_export(broken)
