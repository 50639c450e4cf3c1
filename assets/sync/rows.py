"""An app row's values as the sync API sends and takes them, and as a row image stores them.

On the wire a row is a JSON object with the app's column names: times ISO 8601 with their
UTC offset, dates `YYYY-MM-DD`, decimals as text (exact), the rest as JSON has them. A
pushed value is checked against its column's type here (`parse_fields`), and a bad one is
refused naming the field. Row images (`SyncRowHistory.image`, written by the triggers: JSON
from PostgreSQL's `to_jsonb` or SQLite's `json_object`) read back through `image_values`
into the same Python values that SQLAlchemy reads, so that a three-way merge compares like
with like.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import sqlalchemy as sa

from resources import schema
from resources.schema import as_utc

# Tables a device may write (the User row only by updating their own fields).
SYNC_TABLES: tuple[str, ...] = tuple(str(t.name) for t in schema.APP_TABLES)
MAX_TEXT = 100_000  # characters: longer than any quality rule allows, refused early


class FieldError(ValueError):
    """A pushed value cannot be stored in its column; names the field."""

    def __init__(self, field: str, message: str, rule: str = "type"):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.rule = field, message, rule


def app_table(name: str) -> sa.Table:
    return schema.metadata.tables[name]


def encode_value(value: Any) -> Any:
    """A stored value as the API writes it."""
    if isinstance(value, dt.datetime):
        return as_utc(value).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def encode_row(row: dict[str, Any]) -> dict[str, Any]:
    return {name: encode_value(value) for name, value in row.items()}


def _numeric(column: sa.Column, value: Any, field: str) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldError(field, 'give a decimal number (as text, e.g. "12.50")')
    try:
        number = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        raise FieldError(field, f"{str(value)[:40]!r} is not a number") from None
    if not number.is_finite():
        raise FieldError(field, "give a finite number")
    kind: Any = column.type
    scale, precision = kind.scale or 0, kind.precision or 38
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > scale:
        raise FieldError(field, f"at most {scale} digits after the decimal point")
    if abs(number) >= decimal.Decimal(10) ** (precision - scale):
        raise FieldError(field, f"at most {precision - scale} digits before the decimal point")
    return number.quantize(decimal.Decimal(1).scaleb(-scale))


def parse_value(column: sa.Column, value: Any, field: str) -> Any:
    """A pushed JSON value as the column stores it; FieldError when it cannot be."""
    if value is None:
        if not column.nullable:
            raise FieldError(field, "required, but empty", "required")
        return None
    kind = column.type
    if isinstance(kind, sa.Boolean):
        if not isinstance(value, bool):
            raise FieldError(field, "give true or false")
        return value
    if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float):
        return _numeric(column, value, field)
    if isinstance(kind, sa.Integer):
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**31:
            raise FieldError(field, "give a whole number")
        return value
    if isinstance(kind, sa.DateTime):
        if not isinstance(value, str):
            raise FieldError(field, "give an ISO 8601 time with its UTC offset")
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise FieldError(field, f"{value[:40]!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise FieldError(field, "give the time's UTC offset (e.g. 2026-01-31T08:00:00Z)")
        return moment.astimezone(dt.UTC)
    if isinstance(kind, sa.Date):
        if not isinstance(value, str):
            raise FieldError(field, "give a date as YYYY-MM-DD")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise FieldError(field, f"{value[:40]!r} is not a date (YYYY-MM-DD)") from None
    if not isinstance(value, str):
        raise FieldError(field, "give text")
    if len(value) > MAX_TEXT or "\x00" in value:
        raise FieldError(field, "text too long, or with a NUL character", "text_within_limits")
    return value


def parse_fields(table: sa.Table, fields: dict[str, Any]) -> dict[str, Any]:
    """Pushed fields as stored values; unknown columns are refused by name."""
    values = {}
    for name, value in fields.items():
        if name not in table.c:
            raise FieldError(name, f"{table.name} has no field {name!r}", "unknown_field")
        values[name] = parse_value(table.c[name], value, name)
    return values


def image_values(table: sa.Table, image: str) -> dict[str, Any]:
    """A stored row image as Python values (as SQLAlchemy reads the row)."""
    raw = json.loads(image, parse_float=decimal.Decimal)
    values: dict[str, Any] = {}
    for column in table.columns:
        value = raw.get(column.name)
        kind = column.type
        if value is None:
            values[column.name] = None
        elif isinstance(kind, sa.Boolean):
            values[column.name] = bool(value)
        elif isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float):
            scale = kind.scale or 0
            values[column.name] = decimal.Decimal(str(value)).quantize(
                decimal.Decimal(1).scaleb(-scale)
            )
        elif isinstance(kind, sa.DateTime):
            values[column.name] = as_utc(dt.datetime.fromisoformat(str(value)))
        elif isinstance(kind, sa.Date):
            values[column.name] = dt.date.fromisoformat(str(value)[:10])
        else:
            values[column.name] = value
    return values


def stored_row(row: sa.RowMapping | dict[str, Any]) -> dict[str, Any]:
    """A row read through SQLAlchemy, its times aware (SQLite's are naive)."""
    return {k: as_utc(v) if isinstance(v, dt.datetime) else v for k, v in dict(row).items()}
