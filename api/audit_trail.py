"""`GET /api/v1/data/audit`: the caller's own audit trail, newest first, a page at a time:
what was exported, requested, downloaded or erased, by which token, from which address."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import AuditCaller, ConfigDep
from api.errors import error_responses
from api.pages import MAX_PAGE, encode_cursor, newest_first_page
from resources import schema
from resources.schema import as_utc

router = APIRouter(prefix="/api/v1/data", tags=["audit"])
audit_table = schema.data_audit_log


class AuditEntry(BaseModel):
    id: str
    operation: str
    operationType: str | None  # noqa: N815 (the API's field names are camelCase)
    dataTypes: list[str]  # noqa: N815
    recordCount: int | None  # noqa: N815
    actor: str | None = Field(description='"api-token:<id>", "service", an operator ...')
    details: dict
    ipAddress: str | None  # noqa: N815
    userAgent: str | None  # noqa: N815
    createdAt: dt.datetime  # noqa: N815


class AuditPage(BaseModel):
    items: list[AuditEntry]
    nextCursor: str | None  # noqa: N815


def _entry(row) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        operation=row.operation,
        operationType=row.operationType,
        dataTypes=json.loads(row.dataTypes) if row.dataTypes else [],
        recordCount=row.recordCount,
        actor=row.actor,
        details=json.loads(row.details) if row.details else {},
        ipAddress=row.ipAddress,
        userAgent=row.userAgent,
        createdAt=as_utc(row.createdAt),
    )


@router.get(
    "/audit",
    response_model=AuditPage,
    responses=error_responses(400, 401, 403, 404, 422, 429),
    summary="The caller's own audit trail, newest first",
)
def get_audit(
    caller: AuditCaller,
    config: ConfigDep,
    cursor: str | None = Query(default=None, max_length=500),
    limit: int = Query(default=50, ge=1, le=MAX_PAGE),
) -> AuditPage:
    query = sa.select(audit_table).where(audit_table.c.userId == caller.user_id)
    with caller.audited(config.database.engine, "audit-read") as entry:
        rows = entry.conn.execute(newest_first_page(query, audit_table, cursor, limit)).all()
        page = rows[:limit]
        # Recorded after the read (the row is written as the block ends): a page never
        # shows its own reading.
        entry.record_count = len(page)
    last = page[-1] if page else None
    more = last is not None and len(rows) > limit
    return AuditPage(
        items=[_entry(r) for r in page],
        nextCursor=encode_cursor(as_utc(last.createdAt), last.id) if more and last else None,
    )
