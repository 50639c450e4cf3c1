"""The XLSX export: a workbook people open in Excel, LibreOffice or Numbers.

A "Summary" sheet comes first (who, when, row counts, completion by module, a native line
chart of progress over time), then one sheet per table with typed cells: numbers as
numbers in their scale's format, dates and timestamps as spreadsheet dates (UTC, to the
millisecond), booleans as booleans, and user text always as text, never as a formula.

XlsxWriter in constant_memory mode keeps memory flat for users with tens of thousands of
progress rows; it flushes a row as soon as the next one starts, so every sheet is written
strictly top to bottom.

The reader takes a goalport workbook back to the app's tables exactly (the Summary and
chart sheets are ignored), through the streaming cell reader of `assets.formats.xlsx_cells`:
a cell that does not hold its column's type is named by sheet, row and field.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from assets.formats.charts import distinct_goal_titles
from assets.formats.common import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TABLE_NAMES,
    ExportStamp,
    as_export_text,
    column_from_values,
    export_renderer,
    filters_json,
    raise_key_mismatch,
    reading_schema,
    sort_by_id,
    type_description,
    upgrade_legacy_user,
)
from resources.schema import as_utc

if TYPE_CHECKING:  # XlsxWriter has no type information: these read as Any, for the reader
    from xlsxwriter.chart import Chart
    from xlsxwriter.format import Format
    from xlsxwriter.workbook import Workbook
    from xlsxwriter.worksheet import Worksheet

SUMMARY_SHEET = "Summary"
CHART_DATA_SHEET = "Chart data"
CHART_GOALS = 5  # the goals with the most progress rows get a line each

# Excel's day count: 1970-01-01 is day 25569; its calendar runs from 1900-03-01 (day 61,
# after the fictitious 1900-02-29) to 9999-12-31. Values outside are written as ISO text.
EXCEL_UNIX_EPOCH_DAY = 25569
EXCEL_FIRST_DAY = 61
EXCEL_LAST_DAY = 2958465
US_PER_DAY = 86_400_000_000
EXCEL_MAX_TEXT = 32767  # UTF-16 code units in one cell

DATE_FORMAT = "yyyy-mm-dd"
TIMESTAMP_FORMAT = "yyyy-mm-dd hh:mm:ss.000"
MAX_COLUMN_WIDTH = 60


@export_renderer
def render_xlsx(prepared: dict[str, pa.Table], stamp: ExportStamp) -> bytes:
    """One user's data as an XLSX workbook (bytes)."""
    import xlsxwriter  # ~40 ms to import: only when a workbook is made

    exported_at = as_utc(stamp.exported_at)
    sink = io.BytesIO()
    workbook = xlsxwriter.Workbook(
        sink,
        {
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_numbers": False,
            "strings_to_urls": False,
            "tmpdir": _scratch_dir(),
        },
    )
    workbook.set_properties(
        {
            "title": f"goalport export of user {stamp.user_id}",
            "comments": f"{FORMAT_NAME} version {FORMAT_VERSION}; all times are UTC",
            # the export time, not the wall clock: the same input gives the same bytes
            "created": exported_at.astimezone(dt.UTC).replace(tzinfo=None),
        }
    )
    for field, value in stamp.header().items():
        if field != "filters":  # on the Summary sheet, for people
            workbook.set_custom_property(f"goalport.{field}", value)
    styles = _Styles(workbook)

    summary = workbook.add_worksheet(SUMMARY_SHEET)
    sheets = {name: workbook.add_worksheet(name) for name in prepared}
    chart_series = progress_chart_series(prepared)
    if chart_series:
        chart_sheet = workbook.add_worksheet(CHART_DATA_SHEET)
        chart = _write_chart_data(workbook, chart_sheet, chart_series, styles)
    else:
        chart = None
    _write_summary(summary, prepared, styles, stamp.user_id, exported_at, stamp.filters, chart)
    for name, table in prepared.items():
        write_table_sheet(sheets[name], name, table, styles)
    workbook.close()
    return sink.getvalue()


@functools.cache
def _scratch_dir() -> str | None:
    """Where XlsxWriter streams rows: RAM-backed /dev/shm when there is one.

    constant_memory writes each sheet to a temporary file; on a disk mounted with `discard`
    creating and deleting a dozen of them costs more than writing a small user's workbook.
    The files hold one sheet's XML (a few MB for the heaviest user), never the whole export.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


class _Styles:
    """The workbook's cell formats, created once (XlsxWriter keeps one per distinct style)."""

    def __init__(self, workbook: Workbook) -> None:
        self.workbook = workbook
        self.header = workbook.add_format({"bold": True, "bottom": 1, "bg_color": "#E8EEF4"})
        self.title = workbook.add_format({"bold": True, "font_size": 14})
        self.bold = workbook.add_format({"bold": True})
        self.date = workbook.add_format({"num_format": DATE_FORMAT})
        self.timestamp = workbook.add_format({"num_format": TIMESTAMP_FORMAT})
        self.integer = workbook.add_format({"num_format": "0"})
        self.percent = workbook.add_format({"num_format": "0%"})
        self._decimals: dict[int, Format] = {}

    def decimal(self, scale: int) -> Format:
        if scale not in self._decimals:
            pattern = "0." + "0" * scale if scale else "0"
            self._decimals[scale] = self.workbook.add_format({"num_format": pattern})
        return self._decimals[scale]


# ---------------------------------------------------------------- table sheets


@dataclass
class _ExcelColumn:
    values: list
    kind: str  # "text", "number", "boolean", "number-or-text"
    style: object
    width: float


def write_table_sheet(sheet: Worksheet, table_name: str, table: pa.Table, styles: _Styles) -> None:
    """Header row, then every row with typed cells; frozen header, autofilter, widths."""
    columns = [
        excel_column(table_name, table.schema.field(i), table.column(i), styles)
        for i in range(table.num_columns)
    ]
    for c, name in enumerate(table.column_names):
        sheet.set_column(c, c, columns[c].width)
        sheet.write_string(0, c, name, styles.header)
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, table.num_rows, table.num_columns - 1)

    writers = [
        (c, _cell_writer(sheet, column.kind), column.values, column.style)
        for c, column in enumerate(columns)
    ]
    for r in range(table.num_rows):
        row = r + 1
        for c, write, values, style in writers:
            value = values[r]
            if value is not None:
                write(row, c, value, style)


def _cell_writer(sheet: Worksheet, kind: str) -> Callable[..., object]:
    if kind == "text":
        return sheet.write_string  # text is text: never write(), which may make a formula
    if kind == "number":
        return sheet.write_number
    if kind == "boolean":
        return sheet.write_boolean

    def number_or_text(row: int, col: int, value: float | str, style: Format | None) -> None:
        if type(value) is str:
            sheet.write_string(row, col, value)
        else:
            sheet.write_number(row, col, value, style)

    return number_or_text


def excel_column(
    table_name: str, field: pa.Field, column: pa.ChunkedArray, styles: _Styles
) -> _ExcelColumn:
    """A column's cell values, cell kind, number format and width."""
    t = field.type
    header = len(field.name) + 3  # room for the autofilter button
    if pa.types.is_timestamp(t):
        us = column.cast(pa.int64())
        days = pc.add(
            pc.divide(us.cast(pa.float64(), safe=False), float(US_PER_DAY)), EXCEL_UNIX_EPOCH_DAY
        )
        exact = pc.equal(pc.multiply(pc.divide(us, 1000), 1000), us)
        return _dates_or_text(column, days, exact, styles.timestamp, max(header, 24))
    if pa.types.is_date(t):
        days = pc.add(column.cast(pa.int32()).cast(pa.float64()), EXCEL_UNIX_EPOCH_DAY)
        return _dates_or_text(column, days, None, styles.date, max(header, 12))
    if pa.types.is_decimal(t):
        # through the exact text: Arrow's direct decimal->float cast is not correctly rounded
        values = column.cast(pa.string()).cast(pa.float64()).to_pylist()
        return _ExcelColumn(values, "number", styles.decimal(t.scale), max(header, t.precision + 3))
    if pa.types.is_integer(t):
        return _ExcelColumn(column.to_pylist(), "number", styles.integer, max(header, 10))
    if pa.types.is_boolean(t):
        return _ExcelColumn(column.to_pylist(), "boolean", None, max(header, 8))
    values = column.to_pylist()
    longest = pc.max(pc.utf8_length(column)).as_py() or 0
    if longest > EXCEL_MAX_TEXT // 2:
        for r, value in enumerate(values):
            if value is not None and len(value.encode("utf-16-le")) // 2 > EXCEL_MAX_TEXT:
                raise ValueError(
                    f"{table_name}, row {r + 1}, field {field.name!r}: the text is longer than "
                    f"a spreadsheet cell holds ({EXCEL_MAX_TEXT} characters); export it as "
                    "JSON, CSV or Parquet instead"
                )
    width = min(max(header, longest + 2, 8), MAX_COLUMN_WIDTH)
    return _ExcelColumn(values, "text", None, width)


def _dates_or_text(
    column: pa.ChunkedArray,
    days: pa.ChunkedArray,
    exact: pa.ChunkedArray | None,
    style: Format,
    width: int,
) -> _ExcelColumn:
    """Spreadsheet dates where the calendar allows it, ISO text elsewhere (never lost)."""
    fits = pc.and_(pc.greater_equal(days, EXCEL_FIRST_DAY), pc.less(days, EXCEL_LAST_DAY + 1))
    if exact is not None:
        fits = pc.and_(fits, exact)
    if pc.all(pc.or_kleene(fits, pc.is_null(days)), min_count=0).as_py():
        return _ExcelColumn(days.to_pylist(), "number", style, width)
    text = as_export_text(column).to_pylist()
    values = [
        d if f else s for d, f, s in zip(days.to_pylist(), fits.to_pylist(), text, strict=True)
    ]
    return _ExcelColumn(values, "number-or-text", style, max(width, 28))


def excel_day(value: dt.datetime | dt.date) -> float:
    """A date or UTC timestamp as an Excel serial day number."""
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
        delta = value - dt.datetime(1970, 1, 1)
        return delta / dt.timedelta(days=1) + EXCEL_UNIX_EPOCH_DAY
    return (value - dt.date(1970, 1, 1)).days + EXCEL_UNIX_EPOCH_DAY


# ---------------------------------------------------------------- summary and chart


def completion_by_module(tables: Mapping[str, pa.Table]) -> list[tuple[str, str, int, int]]:
    """(module name, kind, goals, completed goals) per module, goals without one last."""
    modules = tables["Module"]
    names = dict(zip(modules["id"].to_pylist(), modules["name"].to_pylist(), strict=True))
    kinds = dict(zip(modules["id"].to_pylist(), modules["kind"].to_pylist(), strict=True))
    goals = tables["Goal"]
    total: Counter = Counter()
    done: Counter = Counter()
    for module_id, completed in zip(
        goals["moduleId"].to_pylist(), goals["isCompleted"].to_pylist(), strict=True
    ):
        total[module_id] += 1
        done[module_id] += bool(completed)
    rows = []
    for module_id in [*names, *sorted(m for m in total if m is not None and m not in names)]:
        rows.append(
            (
                names.get(module_id, module_id),
                kinds.get(module_id, ""),
                total[module_id],
                done[module_id],
            )
        )
    if total[None]:
        rows.append(("(no module)", "", total[None], done[None]))
    return rows


def progress_chart_series(
    tables: Mapping[str, pa.Table], goals: int = CHART_GOALS
) -> list[tuple[str, dict[dt.date, float]]]:
    """(goal title, {day: last value recorded that day}) for the goals with most progress."""
    progress = tables["Progress"]
    if progress.num_rows == 0:
        return []
    counts = pc.value_counts(progress["goalId"]).to_pylist()
    counts.sort(key=lambda c: (-c["counts"], c["values"]))
    chosen = [c["values"] for c in counts[:goals]]
    rows = progress.filter(pc.is_in(progress["goalId"], pa.array(chosen)))
    rows = rows.sort_by([("recordedAt", "ascending"), ("id", "ascending")])
    titles = distinct_goal_titles(tables["Goal"])
    series: dict[str, dict[dt.date, float]] = {goal_id: {} for goal_id in chosen}
    for goal_id, recorded_at, value in zip(
        rows["goalId"].to_pylist(),
        rows["recordedAt"].to_pylist(),
        rows["value"].cast(pa.string()).cast(pa.float64()).to_pylist(),
        strict=True,
    ):
        day = recorded_at.date()
        if EXCEL_FIRST_DAY <= excel_day(day) <= EXCEL_LAST_DAY:
            series[goal_id][day] = value
    return [(titles.get(goal_id, goal_id), points) for goal_id, points in series.items()]


def _write_chart_data(
    workbook: Workbook,
    sheet: Worksheet,
    series: list[tuple[str, dict[dt.date, float]]],
    styles: _Styles,
) -> Chart:
    """The chart's helper sheet (day, one column per goal) and the line chart reading it."""
    days = sorted({day for _, points in series for day in points})
    sheet.set_column(0, 0, 12)
    sheet.set_column(1, len(series), 18)
    sheet.write_string(0, 0, "Day (UTC)", styles.header)
    for j, (title, _) in enumerate(series, start=1):
        sheet.write_string(0, j, title, styles.header)
    for r, day in enumerate(days, start=1):
        sheet.write_number(r, 0, excel_day(day), styles.date)
        for j, (_, points) in enumerate(series, start=1):
            if day in points:
                sheet.write_number(r, j, points[day])
    sheet.freeze_panes(1, 0)

    chart = workbook.add_chart({"type": "line"})
    last = len(days)
    for j in range(1, len(series) + 1):
        chart.add_series(
            {
                "name": [CHART_DATA_SHEET, 0, j],
                "categories": [CHART_DATA_SHEET, 1, 0, last, 0],
                "values": [CHART_DATA_SHEET, 1, j, last, j],
                "marker": {"type": "circle", "size": 4},
            }
        )
    chart.set_title({"name": "Progress over time"})
    chart.set_x_axis({"name": "Day (UTC)", "date_axis": True, "num_format": DATE_FORMAT})
    chart.set_y_axis({"name": "Progress value"})
    chart.set_legend({"position": "bottom"})
    chart.show_blanks_as("span")
    return chart


def _write_summary(
    sheet: Worksheet,
    tables: Mapping[str, pa.Table],
    styles: _Styles,
    user_id: str,
    exported_at: dt.datetime,
    filters: dict | None,
    chart: Chart | None,
) -> None:
    sheet.set_column(0, 0, 22)
    sheet.set_column(1, 1, 40)
    sheet.set_column(2, 4, 12)
    user = tables["User"].to_pylist()
    user_row = user[0] if user else {}
    row = 0
    sheet.write_string(row, 0, "goalport export", styles.title)
    row += 2
    facts = [
        ("User id", user_id),
        ("Email", user_row.get("email")),
        ("First name", user_row.get("firstName")),
        ("Last name", user_row.get("lastName")),
        ("Format", f"{FORMAT_NAME} version {FORMAT_VERSION}"),
        ("Filters", filters_json(filters).decode() if filters else "none: everything"),
        ("Times", "All times are UTC. Each table has its own sheet, column names in row 1."),
    ]
    sheet.write_string(row, 0, "Exported at (UTC)", styles.bold)
    sheet.write_number(row, 1, excel_day(exported_at), styles.timestamp)
    row += 1
    for label, value in facts:
        sheet.write_string(row, 0, label, styles.bold)
        if value is not None:
            sheet.write_string(row, 1, value)
        row += 1

    row += 1
    sheet.write_string(row, 0, "Table", styles.header)
    sheet.write_string(row, 1, "Rows", styles.header)
    row += 1
    for name, table in tables.items():
        sheet.write_string(row, 0, name)
        sheet.write_number(row, 1, table.num_rows, styles.integer)
        row += 1

    row += 1
    sheet.write_string(row, 0, "Completion by module", styles.title)
    row += 1
    for c, label in enumerate(("Module", "Kind", "Goals", "Completed", "Completion")):
        sheet.write_string(row, c, label, styles.header)
    row += 1
    for name, kind, goals, completed in completion_by_module(tables):
        sheet.write_string(row, 0, name)
        sheet.write_string(row, 1, kind)
        sheet.write_number(row, 2, goals, styles.integer)
        sheet.write_number(row, 3, completed, styles.integer)
        sheet.write_number(row, 4, completed / goals if goals else 0, styles.percent)
        row += 1

    if chart is not None:
        sheet.insert_chart(2, 6, chart, {"x_scale": 1.8, "y_scale": 1.5})
    else:
        sheet.write_string(row + 1, 0, "No progress recorded yet: no chart.")


# ---------------------------------------------------------------- reading

_OOXML_ESCAPE = re.compile("_x([0-9A-Fa-f]{4})_")


def unescape_ooxml_text(value: str) -> str:
    """Text as Excel means it: OOXML writes characters XML cannot hold as `_xHHHH_`."""
    if "_x" not in value:
        return value
    return _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def read_xlsx_export(data: bytes) -> dict[str, pa.Table]:
    """The tables of a goalport XLSX export (the Summary and chart sheets are ignored)."""
    # openpyxl, under the cell reader, takes ~80 ms to import: only when a workbook is read
    from assets.formats.xlsx_cells import XlsxCells

    with XlsxCells(data, "XLSX export") as workbook:
        tables = {}
        for name in TABLE_NAMES:
            if name not in workbook.sheet_paths:
                raise ValueError(f"XLSX export: sheet {name!r} is missing")
            tables[name] = _read_sheet(workbook.rows(name), name)
        return tables


def _read_sheet(rows: Iterator[Sequence], table_name: str) -> pa.Table:
    header = list(next(rows, ()))
    while header and header[-1] is None:
        header.pop()
    schema = reading_schema(table_name, header)
    if sorted(map(str, header)) != sorted(schema.names):
        raise_key_mismatch(f"sheet {table_name!r}, header row", header, set(schema.names))
    width = len(header)
    empty = (None,) * width
    kept: list[Sequence[Any]] = []
    sheet_rows: list[int] = []  # the row number a person sees, for error messages
    for number, values in enumerate(rows, start=2):
        if len(values) != width:
            values = tuple(values[:width]) + (None,) * (width - len(values))
        if values == empty:
            continue  # rows a spreadsheet app leaves formatted but empty
        sheet_rows.append(number)
        kept.append(values)
    by_position = list(zip(*kept, strict=True)) if kept else [()] * width
    columns = [list(by_position[header.index(f.name)]) for f in schema]

    def locate(i: int) -> str:
        return f"sheet {table_name!r}, row {sheet_rows[i]}"

    arrays = []
    for field, values in zip(schema, columns, strict=True):
        converted = _cells_to_values(values, field, locate)
        arrays.append(column_from_values(converted, field, locate))
    table = upgrade_legacy_user(pa.Table.from_arrays(arrays, schema=schema), table_name)
    return sort_by_id(table, f"sheet {table_name!r}")


def _cells_to_values(values: list, field: pa.Field, locate: Callable[[int], str]) -> list:
    """Spreadsheet cell values as the Python values `column_from_values` expects."""
    t = field.type

    def bad(i: int, value: object) -> ValueError:
        return ValueError(
            f"{locate(i)}, field {field.name!r}: {value!r} is not {type_description(t)}"
        )

    out: list = []
    if pa.types.is_string(t):
        for i, value in enumerate(values):
            if value is None:
                out.append(None)
            elif isinstance(value, str):
                out.append(unescape_ooxml_text(value))
            else:
                raise bad(i, value)
        return out
    if pa.types.is_timestamp(t):
        for i, value in enumerate(values):
            if value is None or isinstance(value, str):
                out.append(value)
            elif isinstance(value, dt.datetime):
                text = value.isoformat(timespec="microseconds")
                out.append(text + "Z" if value.tzinfo is None else text)
            else:
                raise bad(i, value)
        return out
    if pa.types.is_date(t):
        for i, value in enumerate(values):
            if value is None or isinstance(value, str):
                out.append(value)
            elif isinstance(value, dt.datetime) and value.time() == dt.time(0):
                out.append(value.date().isoformat())
            elif type(value) is dt.date:
                out.append(value.isoformat())
            else:
                raise bad(i, value)
        return out
    if pa.types.is_decimal(t):
        quantum = Decimal(1).scaleb(-t.scale)
        for i, value in enumerate(values):
            if value is None:
                out.append(None)
                continue
            if type(value) not in (int, float):
                raise bad(i, value)
            try:
                # repr is the shortest text that reads back as the same double: the decimal
                exact = Decimal(repr(value))
                rounded = exact.quantize(quantum)
            except InvalidOperation:
                raise bad(i, value) from None
            if rounded != exact:
                raise bad(i, value)
            out.append(str(rounded))
        return out
    if pa.types.is_boolean(t):
        for i, value in enumerate(values):
            if value is not None and type(value) is not bool:
                raise bad(i, value)
        return values
    return values  # integers: column_from_values checks them
