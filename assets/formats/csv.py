"""The CSV export: one RFC 4180 file per table, zipped, with a Frictionless data package.

CSV is what every tool opens, so it follows RFC 4180 to the letter (UTF-8, CRLF, `"`
quoting) and keeps what CSV usually loses: a null is an empty unquoted field, an empty
string is `""`. A Frictionless `datapackage.json` beside the files gives each column its
type, the primary and foreign keys, and which flavour the files are: "machine" (plain
UTF-8) or "excel" (the spreadsheet-safe flavour, `assets.formats.excel_csv`). One reader
reads both back exactly, table by table, with errors that name the file, row and field.
"""

from __future__ import annotations

import csv  # the standard library's: imports are absolute
import functools
import io
import re
from collections.abc import Collection, Mapping

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from assets.formats.common import (
    TABLE_NAMES,
    ExportStamp,
    as_export_text,
    column_from_values,
    export_renderer,
    format_timestamp,
    json_default,
    raise_key_mismatch,
    reading_schema,
    sort_by_id,
    upgrade_legacy_user,
)
from assets.formats.excel_csv import (
    EXCEL_ENCODING,
    EXCEL_FLAVOUR,
    UTF8_BOM,
    excel_escape,
    excel_escaping_description,
    excel_unescape,
)
from assets.formats.zip_archive import open_zip, write_zip, zip_member
from resources.schema import APP_ARROW_SCHEMAS, metadata

DATAPACKAGE_NAME = "datapackage.json"
CSV_DIALECT = {
    "delimiter": ",",
    "lineTerminator": "\r\n",
    "quoteChar": '"',
    "doubleQuote": True,
    "header": True,
}
MACHINE_FLAVOUR = "machine"
# What each flavour is for, as its data package says (`description`, `goalport.csvFlavourPurpose`).
CSV_FLAVOUR_PURPOSES = {
    MACHINE_FLAVOUR: (
        "Machine flavour (export format 'csv-machine'): plain RFC 4180 UTF-8 files for programs "
        "and databases; every value exactly as stored. Not for spreadsheets: a value such as "
        "=HYPERLINK(...) may run as a formula there; open the 'csv' export instead."
    ),
    EXCEL_FLAVOUR: (
        "Spreadsheet-safe flavour (export format 'csv'): UTF-8 with a byte-order mark, and an "
        "apostrophe before every text value a spreadsheet would run as a formula (see "
        "goalport.excelEscaping to undo it)."
    ),
}
CSV_FLAVOURS = (MACHINE_FLAVOUR, EXCEL_FLAVOUR)
_CSV_WRITE_OPTIONS = pcsv.WriteOptions(quoting_style="needed", eol="\r\n", batch_size=8192)


@export_renderer
def render_csv_zip(prepared: dict[str, pa.Table], stamp: ExportStamp) -> bytes:
    """A zip of one RFC 4180 CSV per table (`<Table>.csv`) and a `datapackage.json`."""
    return _csv_zip(prepared, stamp, MACHINE_FLAVOUR)


@export_renderer
def render_csv_excel_zip(prepared: dict[str, pa.Table], stamp: ExportStamp) -> bytes:
    """Like `render_csv_zip`, for spreadsheets: UTF-8 BOM and formula-injection escaping."""
    return _csv_zip(prepared, stamp, EXCEL_FLAVOUR)


def _csv_zip(prepared: dict[str, pa.Table], stamp: ExportStamp, flavour: str) -> bytes:
    entries = [(f"{name}.csv", csv_bytes(t, flavour)) for name, t in prepared.items()]
    package = build_datapackage(prepared, stamp, flavour=flavour)
    entries.append(
        (DATAPACKAGE_NAME, orjson.dumps(package, default=json_default, option=orjson.OPT_INDENT_2))
    )
    return write_zip(entries, stamp.exported_at, deflate=True)


def csv_bytes(table: pa.Table, flavour: str = MACHINE_FLAVOUR) -> bytes:
    """One table as CSV: header row, CRLF, every text value quoted, nulls empty and unquoted."""
    return csv_text_bytes(csv_text_table(table, flavour), flavour)


def csv_text_table(table: pa.Table, flavour: str = MACHINE_FLAVOUR) -> pa.Table:
    """The table as the CSV writer takes it: timestamps as export text (Arrow writes dates
    as ISO and decimals with their exact scale by itself), Excel escaping applied."""
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            column = as_export_text(column)
        if flavour == EXCEL_FLAVOUR and pa.types.is_string(field.type):
            column = excel_escape(column)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def csv_text_bytes(text_table: pa.Table, flavour: str = MACHINE_FLAVOUR) -> bytes:
    """The CSV of a table made by `csv_text_table`."""
    sink = io.BytesIO()
    if flavour == EXCEL_FLAVOUR:
        sink.write(UTF8_BOM)
    # Arrow quotes every string value ("needed" style) and leaves nulls as empty fields:
    # exactly the null / empty-string distinction the format promises.
    pcsv.write_csv(text_table, sink, _CSV_WRITE_OPTIONS)
    return sink.getvalue()


# ---------------------------------------------------------------- datapackage.json


def resource_name(table_name: str) -> str:
    """Frictionless resource names are lower case: BibleReadingPlan -> bible-reading-plan."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", table_name).lower()


def _frictionless_field(field: pa.Field) -> dict:
    t = field.type
    spec: dict = {"name": field.name}
    if pa.types.is_timestamp(t):
        spec.update(type="datetime", description="UTC, ISO 8601 with milliseconds and Z")
    elif pa.types.is_date(t):
        spec.update(type="date")
    elif pa.types.is_decimal(t):
        spec.update(type="number", description=f"exact decimal({t.precision}, {t.scale})")
    elif pa.types.is_boolean(t):
        spec.update(type="boolean", trueValues=["true"], falseValues=["false"])
    elif pa.types.is_integer(t):
        spec.update(type="integer")
    else:
        spec.update(type="string")
        if field.nullable:
            spec["description"] = 'an empty unquoted field is null, "" is an empty string'
        else:
            # a required text value may be the empty string: nothing is missing here
            spec["missingValues"] = []
    spec["goalport:arrowType"] = str(t)
    if not field.nullable:
        spec["constraints"] = {"required": True}
    return spec


def _foreign_keys(
    table_name: str,
    tables: Mapping[str, pa.Table],
    known_dangling: Collection[tuple[str, str]] | None = None,
) -> tuple[list[dict], list[dict]]:
    """(foreign keys the data satisfies, those a selective export leaves dangling)."""
    declared, dangling = [], []
    for column, target_table, target_field, resource in declared_references(table_name):
        spec = {"fields": [column], "reference": {"resource": resource, "fields": [target_field]}}
        if known_dangling is not None:
            found = (table_name, column) not in known_dangling
        else:
            found = _references_found(
                tables[table_name][column], tables[target_table][target_field]
            )
        if found:
            declared.append(spec)
        else:
            dangling.append(spec)
    return declared, dangling


@functools.cache
def declared_references(table_name: str) -> tuple[tuple[str, str, str, str], ...]:
    """(column, target table, target field, its data package resource) of every foreign key
    the schema declares on the table."""
    references = []
    for column in metadata.tables[table_name].columns:
        for fk in column.foreign_keys:
            target_table, target_field = str(fk.column.table.name), str(fk.column.name)
            resource = "" if target_table == table_name else resource_name(target_table)
            references.append((str(column.name), target_table, target_field, resource))
    return tuple(references)


def _references_found(values: pa.ChunkedArray, targets: pa.ChunkedArray) -> bool:
    """Whether every non-null value is one of the targets (few kernel calls: on one user's
    few rows, each call's fixed cost is what counts)."""
    if values.null_count == len(values):
        return True
    if values.null_count:
        values = values.drop_null()
    return pc.all(pc.is_in(values, value_set=targets.combine_chunks())).as_py()


@functools.cache
def _frictionless_fields(table_name: str) -> tuple[dict, ...]:
    return tuple(_frictionless_field(f) for f in APP_ARROW_SCHEMAS[table_name])


def build_datapackage(
    tables: Mapping[str, pa.Table],
    stamp: ExportStamp,
    *,
    flavour: str,
    dangling_references: Collection[tuple[str, str]] | None = None,
) -> dict:
    """The Frictionless data package describing the CSV files of one export.

    `dangling_references`: the foreign keys, as (table, column), whose values are not all
    among the referenced rows, when already worked out elsewhere (for many users at once);
    None: checked here, in the tables."""
    resources = []
    for name in TABLE_NAMES:
        foreign_keys, dangling = _foreign_keys(name, tables, dangling_references)
        table_schema: dict = {
            "fields": [dict(f) for f in _frictionless_fields(name)],
            "primaryKey": ["id"],
            "missingValues": [""],
        }
        if foreign_keys:
            table_schema["foreignKeys"] = foreign_keys
        resource = {
            "name": resource_name(name),
            "title": name,
            "path": f"{name}.csv",
            "type": "table",
            "profile": "tabular-data-resource",
            "format": "csv",
            "mediatype": "text/csv",
            "encoding": EXCEL_ENCODING if flavour == EXCEL_FLAVOUR else "utf-8",
            "dialect": CSV_DIALECT,
            "schema": table_schema,
            "goalport:rowCount": tables[name].num_rows,
        }
        if dangling:
            resource["goalport:omittedForeignKeys"] = {
                "reason": "a selective export leaves out some referenced rows",
                "foreignKeys": dangling,
            }
        resources.append(resource)
    goalport: dict = {
        **stamp.header(),
        "csvFlavour": flavour,
        "csvFlavourPurpose": CSV_FLAVOUR_PURPOSES[flavour],
        "nulls": 'an empty unquoted field is null; "" is an empty string',
    }
    if flavour == EXCEL_FLAVOUR:
        goalport["excelEscaping"] = excel_escaping_description()
    return {
        "name": f"goalport-export-{resource_name(re.sub(r'[^A-Za-z0-9]+', '-', stamp.user_id))}",
        "title": f"goalport export of user {stamp.user_id}",
        "description": CSV_FLAVOUR_PURPOSES[flavour],
        "created": format_timestamp(stamp.exported_at),
        "profile": "tabular-data-package",
        "goalport": goalport,
        "resources": resources,
    }


# ---------------------------------------------------------------- reading


def read_csv_zip(data: bytes) -> dict[str, pa.Table]:
    """The tables of a goalport CSV zip, machine or Excel flavour."""
    archive = open_zip(data, "CSV export")
    flavour = None
    if DATAPACKAGE_NAME in archive.namelist():
        try:
            package = orjson.loads(zip_member(archive, DATAPACKAGE_NAME, "CSV export"))
            flavour = package["goalport"]["csvFlavour"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"CSV export: {DATAPACKAGE_NAME} is not goalport's: {exc}") from exc
        if flavour not in CSV_FLAVOURS:
            raise ValueError(f"CSV export: {DATAPACKAGE_NAME}: unknown csvFlavour {flavour!r}")
    tables = {}
    for name in TABLE_NAMES:
        file_name = f"{name}.csv"
        raw = zip_member(archive, file_name, "CSV export")
        excel = flavour == EXCEL_FLAVOUR if flavour else raw.startswith(UTF8_BOM)
        tables[name] = read_table_csv(raw, name, excel=excel, file_name=file_name)
    return tables


def read_table_csv(
    raw: bytes, table_name: str, *, excel: bool = False, file_name: str | None = None
) -> pa.Table:
    """One table's CSV as written by `csv_bytes` (Excel flavour: escaping reversed)."""
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
    schema = reading_schema(table_name, header)
    if sorted(header) != sorted(schema.names):
        raise_key_mismatch(f"{file_name}, header row", header, set(schema.names))
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
    table = upgrade_legacy_user(pa.Table.from_arrays(columns, schema=schema), table_name)
    return sort_by_id(table, file_name)


def _csv_header(raw: bytes, file_name: str) -> list[str]:
    first_line = raw.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    try:
        header = next(csv.reader([first_line]), None)
    except csv.Error as exc:
        raise ValueError(f"{file_name}: the header row is not valid CSV: {exc}") from exc
    if not header:
        raise ValueError(f"{file_name}: the file is empty (a header row is required)")
    return header
