"""The table-per-file exports: CSV (machine and Excel flavours) and Parquet, each zipped.

CSV is what every tool opens, so it follows RFC 4180 to the letter (UTF-8, CRLF, `"`
quoting) and keeps what CSV usually loses: a null is an empty unquoted field, an empty
string is `""`. A Frictionless `datapackage.json` beside the files gives each column its
type, the primary and foreign keys, and (Excel flavour) how the formula-injection escaping
is reversed. Parquet carries the exact Arrow schema for data tools.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Mapping

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from assets.export_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TABLE_NAMES,
    as_export_text,
    filters_json,
    format_timestamp,
    json_default,
    prepare_export_tables,
)
from resources.schema import APP_ARROW_SCHEMAS, metadata

DATAPACKAGE_NAME = "datapackage.json"
CSV_DIALECT = {
    "delimiter": ",",
    "lineTerminator": "\r\n",
    "quoteChar": '"',
    "doubleQuote": True,
    "header": True,
}
UTF8_BOM = b"\xef\xbb\xbf"

# Excel flavour: a text cell starting with one of these is written with a leading
# apostrophe, so a spreadsheet never runs it as a formula. Values that start with an
# apostrophe are escaped too, which makes "drop one leading apostrophe" the exact reverse.
EXCEL_ESCAPE_PREFIX = "'"
EXCEL_ESCAPE_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "'")
_EXCEL_ESCAPE_REGEX = "^([=+\\-@\t\r\n'])"

CSV_FLAVOURS = ("machine", "excel")
ZIP_DEFLATE_LEVEL = 1  # a third of level 6's time for a fifth more bytes


def render_csv_zip(
    tables: Mapping[str, pa.Table],
    *,
    user_id: str,
    exported_at: dt.datetime,
    filters: dict | None = None,
) -> bytes:
    """A zip of one RFC 4180 CSV per table (`<Table>.csv`) and a `datapackage.json`."""
    return _render_csv_zip(tables, "machine", user_id, exported_at, filters)


def render_csv_excel_zip(
    tables: Mapping[str, pa.Table],
    *,
    user_id: str,
    exported_at: dt.datetime,
    filters: dict | None = None,
) -> bytes:
    """Like `render_csv_zip`, for spreadsheets: UTF-8 BOM and formula-injection escaping."""
    return _render_csv_zip(tables, "excel", user_id, exported_at, filters)


def _render_csv_zip(tables, flavour, user_id, exported_at, filters) -> bytes:
    prepared = prepare_export_tables(tables, user_id=user_id)
    entries = [(f"{name}.csv", csv_bytes(t, flavour)) for name, t in prepared.items()]
    package = build_datapackage(
        prepared, flavour=flavour, user_id=user_id, exported_at=exported_at, filters=filters
    )
    entries.append(
        (DATAPACKAGE_NAME, orjson.dumps(package, default=json_default, option=orjson.OPT_INDENT_2))
    )
    return write_zip(entries, exported_at, deflate=True)


def csv_bytes(table: pa.Table, flavour: str = "machine") -> bytes:
    """One table as CSV: header row, CRLF, every text value quoted, nulls empty and unquoted."""
    columns = []
    for field in table.schema:
        column = table.column(field.name)
        # Arrow writes dates as ISO and decimals with their exact scale; timestamps need
        # the export's own text (milliseconds and Z)
        if pa.types.is_timestamp(field.type):
            column = as_export_text(column)
        if flavour == "excel" and pa.types.is_string(field.type):
            column = excel_escape(column)
        columns.append(column)
    text_table = pa.table(columns, names=table.column_names)
    sink = io.BytesIO()
    if flavour == "excel":
        sink.write(UTF8_BOM)
    # Arrow quotes every string value ("needed" style) and leaves nulls as empty fields:
    # exactly the null / empty-string distinction the format promises.
    pcsv.write_csv(
        text_table, sink, pcsv.WriteOptions(quoting_style="needed", eol="\r\n", batch_size=8192)
    )
    return sink.getvalue()


def excel_escape(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if not pc.any(pc.match_substring_regex(column, _EXCEL_ESCAPE_REGEX)).as_py():
        return column  # ids and most text: nothing to escape, no copy
    return pc.replace_substring_regex(
        column, pattern=_EXCEL_ESCAPE_REGEX, replacement=EXCEL_ESCAPE_PREFIX + "\\1"
    )


def excel_unescape(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return pc.replace_substring_regex(
        column, pattern="^" + re.escape(EXCEL_ESCAPE_PREFIX), replacement="", max_replacements=1
    )


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


def _foreign_keys(table_name: str, tables: Mapping[str, pa.Table]) -> tuple[list[dict], list[dict]]:
    """(foreign keys the data satisfies, those a selective export leaves dangling)."""
    declared, dangling = [], []
    for column in metadata.tables[table_name].columns:
        for fk in column.foreign_keys:
            target_table, target_field = str(fk.column.table.name), str(fk.column.name)
            spec = {
                "fields": [str(column.name)],
                "reference": {
                    "resource": "" if target_table == table_name else resource_name(target_table),
                    "fields": [target_field],
                },
            }
            values = tables[table_name][column.name]
            targets = tables[target_table][target_field]
            found = pc.is_in(values, value_set=targets.combine_chunks())
            if pc.all(pc.or_kleene(found, pc.is_null(values)), min_count=0).as_py():
                declared.append(spec)
            else:
                dangling.append(spec)
    return declared, dangling


def build_datapackage(
    tables: Mapping[str, pa.Table],
    *,
    flavour: str,
    user_id: str,
    exported_at: dt.datetime,
    filters: dict | None,
) -> dict:
    """The Frictionless data package describing the CSV files of one export."""
    resources = []
    for name in TABLE_NAMES:
        schema = APP_ARROW_SCHEMAS[name]
        foreign_keys, dangling = _foreign_keys(name, tables)
        table_schema: dict = {
            "fields": [_frictionless_field(f) for f in schema],
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
            "encoding": "utf-8-sig" if flavour == "excel" else "utf-8",
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
        "format": FORMAT_NAME,
        "formatVersion": FORMAT_VERSION,
        "userId": user_id,
        "exportedAt": format_timestamp(exported_at),
        "filters": filters,
        "csvFlavour": flavour,
        "nulls": 'an empty unquoted field is null; "" is an empty string',
    }
    if flavour == "excel":
        goalport["excelEscaping"] = {
            "appliesTo": "every non-null value of every string field",
            "prefix": EXCEL_ESCAPE_PREFIX,
            "triggers": list(EXCEL_ESCAPE_TRIGGERS),
            "rule": "a value starting with one of the triggers is written with the prefix before it",
            "reverse": "remove the first character of every string value that starts with the prefix",
        }
    return {
        "name": f"goalport-export-{resource_name(re.sub(r'[^A-Za-z0-9]+', '-', user_id))}",
        "title": f"goalport export of user {user_id}",
        "created": format_timestamp(exported_at),
        "profile": "tabular-data-package",
        "goalport": goalport,
        "resources": resources,
    }


# ---------------------------------------------------------------- Parquet


def render_parquet_zip(
    tables: Mapping[str, pa.Table],
    *,
    user_id: str,
    exported_at: dt.datetime,
    filters: dict | None = None,
) -> bytes:
    """A zip of one Parquet file per table (`<Table>.parquet`) with the exact Arrow schema."""
    import pyarrow.parquet as pq

    prepared = prepare_export_tables(tables, user_id=user_id)
    file_metadata = {
        b"goalport.format": FORMAT_NAME.encode(),
        b"goalport.formatVersion": str(FORMAT_VERSION).encode(),
        b"goalport.userId": user_id.encode(),
        b"goalport.exportedAt": format_timestamp(exported_at).encode(),
        b"goalport.filters": filters_json(filters),
    }
    entries = []
    for name, table in prepared.items():
        sink = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(file_metadata), sink)
        entries.append((f"{name}.parquet", sink.getvalue()))
    return write_zip(entries, exported_at, deflate=False)


# ---------------------------------------------------------------- zip


def write_zip(
    entries: list[tuple[str, bytes]], exported_at: dt.datetime, *, deflate: bool
) -> bytes:
    """A zip of the entries, byte-for-byte the same for the same input (times = export time)."""
    stamp = exported_at if exported_at.tzinfo is None else exported_at.astimezone(dt.UTC)
    date_time = max(stamp.timetuple()[:6], (1980, 1, 1, 0, 0, 0))
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            archive.writestr(info, data, compresslevel=ZIP_DEFLATE_LEVEL if deflate else None)
    return sink.getvalue()
