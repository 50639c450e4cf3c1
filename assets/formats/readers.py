"""Readers of goalport's own export files: the exact inverse of `assets.formats.registry`.

Each reader takes the bytes of one export (JSON, CSV zip in either flavour, XLSX, Parquet
zip) and gives back the user's tables, `dict[str, pa.Table]` with exactly
APP_ARROW_SCHEMAS, rows sorted by id: the same values that were rendered. Importing and
restoring build on them. Malformed input raises ValueError naming the file or sheet, the
row and the field, so a person can find and fix it.
"""

from __future__ import annotations

import bisect
import datetime as dt
import io
import itertools
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal, InvalidOperation

import orjson
import pyarrow as pa

from assets.formats.common import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TABLE_NAMES,
    check_required_values,
    column_from_values,
    conform_table,
    sort_by_id,
    type_description,
)
from assets.formats.json import FLAT_TABLES
from assets.formats.tabular import (
    CSV_FLAVOURS,
    DATAPACKAGE_NAME,
    UTF8_BOM,
    excel_unescape,
)
from resources.schema import APP_ARROW_SCHEMAS, empty_table

# A declared entry size above this is refused before anything is decompressed.
MAX_ZIP_ENTRY_BYTES = 2 * 1024**3


# ---------------------------------------------------------------- JSON


def read_json_export(data: bytes) -> dict[str, pa.Table]:
    """The tables of a goalport JSON export document."""
    return read_json_exports([data])[0]


def read_json_exports(documents: Sequence[bytes]) -> list[dict[str, pa.Table]]:
    """The tables of several JSON export documents, as `read_json_export` gives them.

    Every document is checked on its own, but each column is built once for all of them
    and each table sorted once: per document, building ~90 small columns costs more than
    the values in them (the completeness check reads a worker's whole share of a batch)."""
    located = [_json_export_rows(data) for data in documents]
    results: list[dict[str, pa.Table]] = [{} for _ in documents]
    for name in TABLE_NAMES:
        schema = APP_ARROW_SCHEMAS[name]
        per_document = [rows[name] for rows, _ in located]
        counts = [len(rows) for rows in per_document]
        if not any(counts):
            for result in results:
                result[name] = empty_table(schema)
            continue
        rows = [row for document_rows in per_document for row in document_rows]
        starts = list(itertools.accumulate(counts, initial=0))

        def locate(i: int, name=name, starts=starts) -> str:
            document = bisect.bisect_right(starts, i) - 1
            path, index = located[document][1][name][i - starts[document]]
            return f"export.json: {path}" if index < 0 else f"export.json: {path}[{index}]"

        columns = [_json_column(rows, f, locate) for f in schema]
        table = pa.Table.from_arrays(columns, schema=schema)
        if len(documents) == 1:
            results[0][name] = sort_by_id(table, name)
            continue
        for result, start, count in zip(results, starts, counts, strict=False):
            result[name] = sort_by_id(table.slice(start, count), name)
    return results


def _json_column(rows: list[dict], field: pa.Field, locate: Callable[[int], str]) -> pa.Array:
    name = field.name  # read once: `Field.name` makes a new string at every read
    return column_from_values([row[name] for row in rows], field, locate)


def _json_export_rows(data: bytes) -> tuple[dict[str, list[dict]], dict[str, list[tuple]]]:
    """One document's rows per table, and where each came from (a JSON path and index),
    with every row's fields checked against the table's columns."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"export.json: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError("export.json: expected a JSON object at the top level")
    if document.get("format") != FORMAT_NAME:
        raise ValueError(
            f"export.json: 'format' is {document.get('format')!r}, expected {FORMAT_NAME!r}"
        )
    if document.get("formatVersion") != FORMAT_VERSION:
        raise ValueError(
            f"export.json: formatVersion {document.get('formatVersion')!r} is not supported "
            f"(this goalport reads version {FORMAT_VERSION})"
        )

    rows: dict[str, list[dict]] = {name: [] for name in TABLE_NAMES}
    paths: dict[str, list[tuple[str, int]]] = {name: [] for name in TABLE_NAMES}

    def add(table_name: str, row, path: str, index: int) -> None:
        if not isinstance(row, dict):
            raise ValueError(f"export.json: {path}[{index}] is not an object")
        rows[table_name].append(row)
        paths[table_name].append((path, index))

    user = _member(document, "user", (dict, type(None)))
    if user is not None:
        add("User", user, "user", -1)
    for i, row in enumerate(_member(document, "modules", list)):
        add("Module", row, "modules", i)
    for i, row in enumerate(_member(document, "unattachedProgress", list)):
        add("Progress", row, "unattachedProgress", i)
    for name in FLAT_TABLES:
        for i, row in enumerate(_member(document, name, list)):
            add(name, row, name, i)
    _flatten_goals(_member(document, "goals", list), add)

    for name in TABLE_NAMES:
        expected = set(APP_ARROW_SCHEMAS[name].names)
        for row, (path, index) in zip(rows[name], paths[name], strict=True):
            if row.keys() != expected:
                where = f"export.json: {path}" if index < 0 else f"export.json: {path}[{index}]"
                _raise_key_mismatch(where, row.keys(), expected)
    return rows, paths


def _member(document: dict, key: str, kind):
    if key not in document:
        raise ValueError(f"export.json: the document has no {key!r}")
    value = document[key]
    if not isinstance(value, kind):
        expected = "an array" if kind is list else "an object or null"
        raise ValueError(f"export.json: {key!r} must be {expected}")
    return value


def _flatten_goals(goals: list, add: Callable) -> None:
    """Goal and Progress rows out of the nested tree (without recursion: depth is free)."""
    stack = [("goals", goals)]
    while stack:
        path, nodes = stack.pop()
        for i, node in enumerate(nodes):
            if not isinstance(node, dict):
                raise ValueError(f"export.json: {path}[{i}] is not an object")
            here = f"{path}[{i}]"
            progress = node.get("progress")
            sub_goals = node.get("subGoals")
            if not isinstance(progress, list) or not isinstance(sub_goals, list):
                raise ValueError(f"export.json: {here} needs arrays 'progress' and 'subGoals'")
            add(
                "Goal",
                {k: v for k, v in node.items() if k not in ("progress", "subGoals")},
                path,
                i,
            )
            for j, row in enumerate(progress):
                add("Progress", row, f"{here}.progress", j)
            stack.append((f"{here}.subGoals", sub_goals))


def _raise_key_mismatch(where: str, keys, expected: set) -> None:
    missing = sorted(expected - set(keys))
    extra = sorted(set(keys) - expected)
    detail = "; ".join(
        part
        for part in (
            f"missing field(s) {', '.join(missing)}" if missing else "",
            f"unknown field(s) {', '.join(extra)}" if extra else "",
        )
        if part
    )
    raise ValueError(f"{where}: {detail}")


# ---------------------------------------------------------------- zips


def _open_zip(data: bytes, what: str) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{what}: not a zip archive ({exc})") from exc
    for info in archive.infolist():
        if info.file_size > MAX_ZIP_ENTRY_BYTES:
            raise ValueError(f"{what}: {info.filename} is too large ({info.file_size} bytes)")
    return archive


def _zip_member(archive: zipfile.ZipFile, name: str, what: str) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise ValueError(f"{what}: {name} is missing") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise ValueError(f"{what}: {name} cannot be read: {exc}") from exc


# ---------------------------------------------------------------- CSV


def read_csv_zip(data: bytes) -> dict[str, pa.Table]:
    """The tables of a goalport CSV zip, machine or Excel flavour."""
    archive = _open_zip(data, "CSV export")
    flavour = None
    if DATAPACKAGE_NAME in archive.namelist():
        try:
            package = orjson.loads(_zip_member(archive, DATAPACKAGE_NAME, "CSV export"))
            flavour = package["goalport"]["csvFlavour"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"CSV export: {DATAPACKAGE_NAME} is not goalport's: {exc}") from exc
        if flavour not in CSV_FLAVOURS:
            raise ValueError(f"CSV export: {DATAPACKAGE_NAME}: unknown csvFlavour {flavour!r}")
    tables = {}
    for name in TABLE_NAMES:
        file_name = f"{name}.csv"
        raw = _zip_member(archive, file_name, "CSV export")
        excel = flavour == "excel" if flavour else raw.startswith(UTF8_BOM)
        tables[name] = read_table_csv(raw, name, excel=excel, file_name=file_name)
    return tables


def read_table_csv(
    raw: bytes, table_name: str, *, excel: bool = False, file_name: str | None = None
) -> pa.Table:
    """One table's CSV as written by `csv_bytes` (Excel flavour: escaping reversed)."""
    import pyarrow.csv as pcsv

    file_name = file_name or f"{table_name}.csv"
    schema = APP_ARROW_SCHEMAS[table_name]
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(f"{file_name}: line {line} is not valid UTF-8") from exc
    header = _csv_header(raw, file_name)
    if sorted(header) != sorted(schema.names):
        _raise_key_mismatch(f"{file_name}, header row", header, set(schema.names))
    try:
        text_table = pcsv.read_csv(
            io.BytesIO(raw),
            read_options=pcsv.ReadOptions(column_names=header, skip_rows=1),
            parse_options=pcsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in header},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                null_values=[""],
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{file_name}: not a valid CSV table: {exc}") from exc

    def locate(i: int) -> str:
        return f"{file_name}, row {i + 2}"

    columns = []
    for field in schema:
        text = text_table.column(field.name).combine_chunks()
        if excel and pa.types.is_string(field.type):
            text = excel_unescape(text)
        columns.append(column_from_values(text, field, locate))
    return sort_by_id(pa.Table.from_arrays(columns, schema=schema), file_name)


def _csv_header(raw: bytes, file_name: str) -> list[str]:
    import csv

    first_line = raw.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    try:
        header = next(csv.reader([first_line]), None)
    except csv.Error as exc:
        raise ValueError(f"{file_name}: the header row is not valid CSV: {exc}") from exc
    if not header:
        raise ValueError(f"{file_name}: the file is empty (a header row is required)")
    return header


# ---------------------------------------------------------------- XLSX

_OOXML_ESCAPE = re.compile("_x([0-9A-Fa-f]{4})_")


def unescape_ooxml_text(value: str) -> str:
    """Text as Excel means it: OOXML writes characters XML cannot hold as `_xHHHH_`."""
    if "_x" not in value:
        return value
    return _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def read_xlsx_export(data: bytes) -> dict[str, pa.Table]:
    """The tables of a goalport XLSX export (the Summary and chart sheets are ignored)."""
    from assets.formats.xlsx_reader import XlsxCells

    with XlsxCells(data, "XLSX export") as workbook:
        tables = {}
        for name in TABLE_NAMES:
            if name not in workbook.sheet_paths:
                raise ValueError(f"XLSX export: sheet {name!r} is missing")
            tables[name] = _read_sheet(workbook.rows(name), name)
        return tables


def _read_sheet(rows: Iterator[Sequence], table_name: str) -> pa.Table:
    schema = APP_ARROW_SCHEMAS[table_name]
    header = list(next(rows, None) or ())
    while header and header[-1] is None:
        header.pop()
    if sorted(map(str, header)) != sorted(schema.names):
        _raise_key_mismatch(f"sheet {table_name!r}, header row", header, set(schema.names))
    width = len(header)
    empty = (None,) * width
    kept: list[tuple] = []
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
    table = pa.Table.from_arrays(arrays, schema=schema)
    return sort_by_id(table, f"sheet {table_name!r}")


def _cells_to_values(values: list, field: pa.Field, locate: Callable[[int], str]) -> list:
    """Spreadsheet cell values as the Python values `column_from_values` expects."""
    t = field.type

    def bad(i: int, value) -> ValueError:
        return ValueError(
            f"{locate(i)}, field {field.name!r}: {value!r} is not {type_description(t)}"
        )

    out = []
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


# ---------------------------------------------------------------- Parquet


def read_parquet_zip(data: bytes) -> dict[str, pa.Table]:
    """The tables of a goalport Parquet zip."""
    import pyarrow.parquet as pq

    archive = _open_zip(data, "Parquet export")
    tables = {}
    for name in TABLE_NAMES:
        file_name = f"{name}.parquet"
        raw = _zip_member(archive, file_name, "Parquet export")
        try:
            table = pq.read_table(pa.BufferReader(raw))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{file_name}: not a readable Parquet file: {exc}") from exc
        table = conform_table(
            table.replace_schema_metadata(None), APP_ARROW_SCHEMAS[name], file_name
        )
        check_required_values(table, file_name)
        tables[name] = sort_by_id(table, file_name)
    return tables


# format name -> reader, the inverse of assets.formats.registry.RENDERERS
READERS = {
    "json": read_json_export,
    "csv": read_csv_zip,
    "csv-excel": read_csv_zip,
    "xlsx": read_xlsx_export,
    "parquet": read_parquet_zip,
}
