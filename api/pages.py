"""Cursor pagination, newest first: a cursor is the (createdAt, id) of the last row a page
held, opaque to the client (base64url JSON), so a page never repeats or skips a row when
new rows arrive meanwhile."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

import sqlalchemy as sa

from api.errors import ApiError
from resources.schema import as_utc

MAX_PAGE = 100


def encode_cursor(created_at: dt.datetime, row_id: str) -> str:
    text = json.dumps([created_at.isoformat(), row_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return as_utc(dt.datetime.fromisoformat(created)), str(row_id)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ApiError(400, "bad_request", "this cursor is not valid", field="cursor") from exc


def newest_first_page(query: sa.Select, table: sa.Table, cursor: str | None, limit: int):
    """`query` limited to one page (one row more than `limit`, to tell if another follows)."""
    if cursor:
        created, last_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(
                table.c.createdAt < created,
                sa.and_(table.c.createdAt == created, table.c.id < last_id),
            )
        )
    return query.order_by(table.c.createdAt.desc(), table.c.id.desc()).limit(limit + 1)
