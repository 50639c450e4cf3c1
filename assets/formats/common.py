"""What every goalport export file agrees on, whatever its format (version 1).

The renderers (Arrow -> bytes) and their inverse readers (bytes -> Arrow) share these rules,
so a value means the same thing in JSON, CSV, XLSX and Parquet and comes back exactly:

- timestamps are ISO 8601 in UTC with milliseconds and `Z` (`2024-03-01T08:30:00.250Z`);
  a value with sub-millisecond digits keeps all six (`...00.250001Z`) rather than lose them;
- dates are `YYYY-MM-DD`; decimals are text with exactly their scale (`12.50`);
- rows of every table are sorted by `id` (byte order of the UTF-8 text), for stable output;
- one export holds one user's rows and nothing else: the renderers refuse other rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES, as_utc, empty_table, owner_column

FORMAT_NAME = "goalport.export"
FORMAT_VERSION = 1

# The app's table names as plain `str` (SQLAlchemy's are a str subclass JSON writers refuse).
TABLE_NAMES: tuple[str, ...] = tuple(str(name) for name in APP_TABLE_NAMES)

UTC_US = pa.timestamp("us", tz="UTC")


class Renderer(Protocol):
    """What every format's renderer is: an export's tables in, the file's bytes out."""

    def __call__(
        self,
        tables: Mapping[str, pa.Table],
        /,
        *,
        user_id: str,
        exported_at: dt.datetime,
        filters: dict | None = None,
    ) -> bytes: ...


@dataclass(frozen=True)
class ExportStamp:
    """Whose export a file is, when it was made and what it holds: what every format writes
    about itself beside the data."""

    user_id: str
    exported_at: dt.datetime
    filters: dict | None = None

    def header(self) -> dict[str, Any]:
        """The stamp as the files spell it, in this order: the CSV data package's `goalport`
        block, the Parquet files' metadata, the workbook's custom properties."""
        return {
            "format": FORMAT_NAME,
            "formatVersion": FORMAT_VERSION,
            "userId": self.user_id,
            "exportedAt": format_timestamp(self.exported_at),
            "filters": self.filters,
        }


def export_renderer(write: Callable[[dict[str, pa.Table], ExportStamp], bytes]) -> Renderer:
    """A format's renderer (`Renderer`) from the function that writes its file.

    Every renderer takes the same arguments and starts the same way: the tables go through
    `prepare_export_tables` (which refuses another user's rows) before a byte is written.
    That is done here once; `write(prepared, stamp)` does only what is its format's own.
    """

    def render(
        tables: Mapping[str, pa.Table],
        *,
        user_id: str,
        exported_at: dt.datetime,
        filters: dict | None = None,
    ) -> bytes:
        prepared = prepare_export_tables(tables, user_id=user_id)
        return write(prepared, ExportStamp(user_id, exported_at, filters))

    # write's name and docstring, not its signature (no __wrapped__: callers see render's)
    render.__module__, render.__doc__ = write.__module__, write.__doc__
    render.__name__, render.__qualname__ = write.__name__, write.__qualname__
    return render


def prepare_export_tables(tables: Mapping[str, pa.Table], *, user_id: str) -> dict[str, pa.Table]:
    """Every app table in schema order, exactly typed, sorted by id, all owned by `user_id`.

    A missing table is an empty one. A table with other columns or types, a null where the
    schema forbids it, or a row of another user is a bug upstream: it raises ValueError
    rather than ship a file that is wrong.
    """
    unknown = sorted(set(tables) - set(TABLE_NAMES))
    if unknown:
        raise ValueError(f"not app tables: {', '.join(unknown)}")
    prepared = {}
    for name in TABLE_NAMES:
        schema = APP_ARROW_SCHEMAS[name]
        table = tables.get(name)
        table = empty_table(schema) if table is None else conform_table(table, schema, name)
        check_required_values(table, name)
        owners = table[owner_column(name)]
        if table.num_rows and not pc.all(pc.equal(owners, user_id)).as_py():
            raise ValueError(f"{name} holds rows of a user other than {user_id!r}")
        if name == "User" and table.num_rows > 1:
            raise ValueError(f"User holds {table.num_rows} rows for {user_id!r}, expected one")
        prepared[name] = sort_by_id(table, name)
    return prepared


def conform_table(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """`table` with exactly `schema` (same columns, in order, same types)."""
    if table.schema.equals(schema):
        return table
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        raise ValueError(
            f"{where}: columns do not match the schema"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "")
        )
    table = table.select(schema.names)
    for field in schema:
        if not table.schema.field(field.name).type.equals(field.type):
            try:
                table.column(field.name).cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(
                    f"{where}, field {field.name!r}: cannot be read as {field.type}: {exc}"
                ) from exc
    return table.cast(schema)


def check_required_values(table: pa.Table, where: str) -> None:
    for field, column in zip(table.schema, table.columns, strict=True):
        if column.null_count and not field.nullable:
            row = first_true(pc.is_null(column))
            raise ValueError(f"{where}, row {row + 1}, field {field.name!r}: required, but null")


def sort_by_id(table: pa.Table, where: str = "") -> pa.Table:
    """Rows in id order; two rows with one id are an error (the id is the primary key)."""
    if table.num_rows < 2:
        return table
    ids = table["id"]
    if pc.all(pc.less(ids[:-1], ids[1:])).as_py():
        return table  # ascending without repeats: the usual case, in one comparison
    if not pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py():
        table = table.sort_by("id")
        ids = table["id"]
    repeated = pc.equal(ids[:-1], ids[1:])
    if pc.any(repeated).as_py():
        duplicate = ids[first_true(repeated)].as_py()
        raise ValueError(f"{where or 'table'}: more than one row has id {duplicate!r}")
    return table


def first_true(mask: pa.Array | pa.ChunkedArray) -> int:
    """Index of the first true value of a boolean array (-1 if none)."""
    return pc.index(mask, True).as_py()


# ---------------------------------------------------------------- values as text


def timestamp_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """UTC timestamps as ISO 8601 text: milliseconds, or microseconds when they are needed."""
    values = values.cast(UTC_US)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.null_count == len(values):  # empty, or nothing but nulls: nothing to format
        return pa.nulls(len(values), pa.string())
    # the microseconds straight from the values buffer: Arrow kernels cost ~15 us a call,
    # which is most of the time on the few rows of one user
    us = np.frombuffer(values.buffers()[1], np.int64, len(values), values.offset * 8)
    nulls = None
    if values.null_count:
        nulls = values.is_null().to_numpy(zero_copy_only=False)
        us = np.where(nulls, 0, us)  # a null's slot holds any number
    # numpy formats datetime64 in C, several times faster than Arrow's strftime
    text = np.datetime_as_string((us // 1000).astype("datetime64[ms]"), unit="ms", timezone="UTC")
    sub_ms = us % 1000 != 0
    if sub_ms.any():
        full = np.datetime_as_string(us.astype("datetime64[us]"), unit="us", timezone="UTC")
        text = np.where(sub_ms, full, text)
    return pa.array(text, type=pa.string(), mask=nulls)


def format_timestamp(value: dt.datetime) -> str:
    """One timestamp as export text (a naive datetime is taken to be UTC)."""
    value = as_utc(value).astimezone(dt.UTC)
    spec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def json_default(value: object) -> list[Any]:
    """JSON for what orjson does not write by itself: sets (in filters), as sorted lists."""
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} values cannot be written as JSON")


def filters_json(filters: dict | None) -> bytes:
    """The export's filters as JSON text (dates as ISO, sets as sorted lists)."""
    return orjson.dumps(filters, default=json_default)


def as_export_text(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Timestamps, dates and decimals as their export text; other types unchanged."""
    t = column.type
    if pa.types.is_timestamp(t):
        return timestamp_strings(column)
    if pa.types.is_date(t) or pa.types.is_decimal(t):
        return column.cast(pa.string())
    return column


def is_text_encoded(t: pa.DataType) -> bool:
    """Whether the export formats that lack the type carry it as text."""
    return pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_decimal(t)


def type_description(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "a UTC timestamp like 2024-03-01T08:30:00.250Z"
    if pa.types.is_date(t):
        return "a date like 2024-03-01"
    if pa.types.is_decimal(t):
        return f"a number with at most {t.scale} decimals and {t.precision} digits"
    if pa.types.is_boolean(t):
        return "true or false"
    if pa.types.is_integer(t):
        return f"a whole number ({t})"
    return "text"


def column_from_values(
    values: list | pa.Array,
    field: pa.Field,
    locate: Callable[[int], str],
) -> pa.Array:
    """Build one exactly typed column from values read out of a file.

    `values` is a Python list or a string array; timestamps, dates and decimals arrive as
    export text, the rest as their natural type. On a bad value the ValueError says where
    (`locate(row index)`), which field, and what was expected.
    """
    t = field.type
    source = pa.string() if is_text_encoded(t) else t
    if pa.types.is_integer(t) and isinstance(values, list):
        # pyarrow would truncate 1.5 to 1 and take True for 1: whole numbers only.
        for i, value in enumerate(values):
            if value is not None and not _is_whole_number(value):
                raise ValueError(
                    f"{locate(i)}, field {field.name!r}: {_shorten(value)} is not "
                    f"{type_description(t)}"
                )
    try:
        array = values if isinstance(values, pa.Array) else pa.array(values, type=source)
        if not array.type.equals(t):
            array = array.cast(t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError, ValueError) as exc:
        _raise_first_bad_value(values, field, source, locate)
        raise ValueError(f"field {field.name!r}: {exc}") from exc
    if not field.nullable and array.null_count:
        row = first_true(pc.is_null(array))
        raise ValueError(f"{locate(row)}, field {field.name!r}: required, but empty")
    return array


def raise_key_mismatch(where: str, keys: Iterable[Any], expected: set[str]) -> None:
    """Raise the ValueError for a row or header whose fields are not the table's columns,
    naming the missing and the unknown ones."""
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


def _raise_first_bad_value(
    values: list[Any] | pa.Array,
    field: pa.Field,
    source: pa.DataType,
    locate: Callable[[int], str],
) -> None:
    if isinstance(values, pa.Array):  # text read from a file (CSV): every value is a string
        items, source = values.to_pylist(), values.type
    else:
        items = values
    for i, value in enumerate(items):
        if value is None:
            continue
        if not _value_fits(value, field.type, source):
            raise ValueError(
                f"{locate(i)}, field {field.name!r}: {_shorten(value)} is not "
                f"{type_description(field.type)}"
            )


def _is_whole_number(value: object) -> bool:
    if type(value) is int:
        return True
    return type(value) is float and value.is_integer()


def _value_fits(value: object, t: pa.DataType, source: pa.DataType) -> bool:
    if pa.types.is_string(source) != isinstance(value, str):
        return False
    if pa.types.is_integer(source) and not _is_whole_number(value):
        return False
    try:
        pa.array([value], type=source).cast(t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError, ValueError):
        return False
    return True


def _shorten(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- the user's name

# Exports made before the app's first and last name (migration 0005) carry one `name` in
# the user block; the readers take them and split it as the migration did.
LEGACY_USER_NAME = "name"
USER_NAME_FIELDS = ("firstName", "lastName")


def split_full_name(name: str | None) -> tuple[str | None, str | None]:
    """(first name, last name) of a single name: the first word, and the rest if any."""
    words = (name or "").split(None, 1)
    if not words:
        return None, None
    return words[0], (words[1].strip() or None) if len(words) > 1 else None


def full_name(first: str | None, last: str | None) -> str | None:
    """The name a person reads: first and last name joined, None when both are missing."""
    return " ".join(part.strip() for part in (first, last) if part and part.strip()) or None


def _legacy_user_schema() -> pa.Schema:
    schema = APP_ARROW_SCHEMAS["User"]
    first = schema.get_field_index(USER_NAME_FIELDS[0])
    without = schema.remove(schema.get_field_index(USER_NAME_FIELDS[1])).remove(first)
    return without.insert(first, pa.field(LEGACY_USER_NAME, pa.string()))


LEGACY_USER_SCHEMA = _legacy_user_schema()


def is_legacy_user_header(table_name: str, names: Iterable[Any]) -> bool:
    """Whether a User header is the one of an export older than first and last name."""
    return table_name == "User" and sorted(map(str, names)) == sorted(LEGACY_USER_SCHEMA.names)


def reading_schema(table_name: str, names: Iterable[Any]) -> pa.Schema:
    """The schema to read a table with the columns `names` by: the legacy User one for an
    old export's user, the app's otherwise (`upgrade_legacy_user` brings it up to date)."""
    if is_legacy_user_header(table_name, names):
        return LEGACY_USER_SCHEMA
    return APP_ARROW_SCHEMAS[table_name]


def upgrade_legacy_user(table: pa.Table, table_name: str) -> pa.Table:
    """A User table of an old export (one `name`) with first and last name instead; any
    other table unchanged."""
    names = table.column_names
    if table_name != "User" or LEGACY_USER_NAME not in names or USER_NAME_FIELDS[0] in names:
        return table
    pairs = [split_full_name(name) for name in table[LEGACY_USER_NAME].to_pylist()]
    columns = {
        USER_NAME_FIELDS[0]: pa.array([p[0] for p in pairs], pa.string()),
        USER_NAME_FIELDS[1]: pa.array([p[1] for p in pairs], pa.string()),
    }
    schema = APP_ARROW_SCHEMAS["User"]
    return pa.Table.from_arrays(
        [columns[n] if n in columns else table[n] for n in schema.names], schema=schema
    )


def upgrade_legacy_user_row(row: dict[str, Any]) -> dict[str, Any]:
    """An old export's user object (one `name`) with first and last name instead."""
    if LEGACY_USER_NAME not in row or USER_NAME_FIELDS[0] in row:
        return row
    upgraded = {k: v for k, v in row.items() if k != LEGACY_USER_NAME}
    name = row[LEGACY_USER_NAME]
    if name is not None and not isinstance(name, str):
        return row  # not text: left for the reader to refuse with the field named
    upgraded[USER_NAME_FIELDS[0]], upgraded[USER_NAME_FIELDS[1]] = split_full_name(name)
    return upgraded
