"""Sync across devices over HTTP: `GET /api/v1/sync/changes` (the caller's change feed, a
page at a time) and `POST /api/v1/sync/push` (a device's changes, merged in one
transaction inside the request: the one place the service does work in a request besides
an undo), over `assets.sync`. Tokens need the scope `sync`; the service credential may act
for a user. A revoked device gets 403; a cursor older than the retained log, 410 (the
device then syncs again without one).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import ConfigDep, SyncCaller
from api.errors import ApiError, error_responses
from assets.sync import changelog
from assets.sync.devices import (
    MAX_DEVICE_ID,
    DeviceError,
    DeviceRevokedError,
    record_cursor,
    use_device,
)
from assets.sync.merge import MAX_CHANGES, PushedChange, push_changes
from resources.audit import UserErasedError

router = APIRouter(prefix="/api/v1/sync", tags=["sync"])
MAX_PUSH_BODY = 4 * 2**20  # 1,000 changes of full rows


class SyncChangeBody(BaseModel):
    table: str = Field(description="the app's table name: Goal, Progress, ...")
    id: str
    op: Literal["upsert", "delete"]
    row: dict[str, Any] | None = Field(description="the row, with the app's column names")
    version: int = Field(description="the row's version: send it back as baseVersion")


class ChangesPage(BaseModel):
    changes: list[SyncChangeBody]
    cursor: str = Field(description="pass as since= to get what changed after this page")
    hasMore: bool  # noqa: N815 (the API's field names are camelCase)


class PushedChangeBody(BaseModel):
    changeId: str = Field(min_length=1, max_length=200)  # noqa: N815
    table: str = Field(max_length=100)
    id: str = Field(min_length=1, max_length=200)
    op: Literal["upsert", "delete"]
    baseVersion: int | None = Field(  # noqa: N815
        default=None, ge=0, description="the version the device last saw; null for a new row"
    )
    fields: dict[str, Any] = Field(default_factory=dict)


class PushBody(BaseModel):
    deviceId: str = Field(min_length=1, max_length=MAX_DEVICE_ID)  # noqa: N815
    deviceName: str | None = Field(default=None, max_length=200)  # noqa: N815
    changes: list[PushedChangeBody] = Field(max_length=MAX_CHANGES)


class PushResultBody(BaseModel):
    results: list[dict[str, Any]] = Field(
        description="per change: changeId, status (applied, merged, conflict, rejected), "
        "version, row, losing (merged by the policy), fields and reason (conflict), error "
        "(rejected: rule, field, message)"
    )
    cursor: str
    journal: str | None = Field(description="the import job journalling the rows written")


@router.get(
    "/changes",
    response_model=ChangesPage,
    responses=error_responses(400, 401, 403, 404, 422, 429) | {410: {"description": "gone"}},
    summary="The caller's changes after a cursor (none: the whole account), parents first",
)
def get_changes(
    caller: SyncCaller,
    config: ConfigDep,
    since: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=changelog.DEFAULT_PAGE, ge=1, le=changelog.MAX_PAGE),
    deviceId: str | None = Query(default=None, max_length=MAX_DEVICE_ID),  # noqa: N803
    deviceName: str | None = Query(default=None, max_length=200),  # noqa: N803
) -> ChangesPage:
    try:
        cursor = changelog.Cursor.decode(since) if since else None
        # one transaction: the device, the page, its cursor and the audit row
        with config.database.engine.begin() as conn:
            device = use_device(conn, caller.user_id, deviceId, deviceName) if deviceId else None
            page = changelog.pull_page(conn, caller.user_id, cursor, limit)
            if device is not None:
                record_cursor(conn, device, page.cursor.position)
            caller.audit(
                conn,
                "sync-pull",
                operation_type="sync",
                record_count=len(page.changes),
                details={"device": device.id if device else None, "initial": since is None},
            )
    except DeviceRevokedError as exc:
        raise ApiError(403, "device_revoked", str(exc), field="deviceId") from exc
    except DeviceError as exc:
        raise ApiError(422, "invalid", str(exc), field="deviceId") from exc
    except changelog.CursorError as exc:
        raise ApiError(400, "bad_request", str(exc), field="since") from exc
    except changelog.CursorExpiredError as exc:
        raise ApiError(410, "cursor_expired", str(exc), field="since") from exc
    return ChangesPage(
        changes=[SyncChangeBody(**c.as_dict()) for c in page.changes],
        cursor=page.cursor.encode(),
        hasMore=page.has_more,
    )


@router.post(
    "/push",
    response_model=PushResultBody,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429),
    summary="A device's changes, merged in one transaction; a result per change",
)
def post_push(body: PushBody, caller: SyncCaller, config: ConfigDep) -> PushResultBody:
    changes = [
        PushedChange(c.changeId, c.table, c.id, c.op, c.baseVersion, c.fields) for c in body.changes
    ]
    try:
        pushed = push_changes(
            config.database.engine,
            caller.user_id,
            body.deviceId,
            changes,
            device_name=body.deviceName,
            actor=caller.actor,
        )
    except DeviceRevokedError as exc:
        raise ApiError(403, "device_revoked", str(exc), field="deviceId") from exc
    except DeviceError as exc:
        raise ApiError(422, "invalid", str(exc), field="deviceId") from exc
    except UserErasedError as exc:
        raise ApiError(403, "forbidden", str(exc)) from exc
    return PushResultBody(
        results=pushed.results, cursor=pushed.cursor.encode(), journal=pushed.job_id
    )
