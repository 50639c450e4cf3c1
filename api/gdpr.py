"""`POST /api/v1/gdpr/export`: the caller's GDPR bundle (everything held about them, Art.
15/20), delivered as an export job: 202 with its id, then its status and download link
through `GET /api/v1/data/export?jobId=`, like any export. The bundle is made by
`gdpr_request_sensor`'s run (or `goalport exports process`), never inside the request
(`assets.gdpr.requests`).

`POST`/`DELETE`/`GET /api/v1/gdpr/erasure`: ask for the caller's account to be erased
after the grace period, cancel that while it is pending, and read its status (with the
receipt, which holds no personal data, once done). The erasure itself is
`assets.gdpr.erasure`'s, run by the erasure job, never inside a request."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import ConfigDep, GdprCaller
from api.errors import ApiError, error_responses, not_found
from api.exports import ExportAccepted
from assets.exports.job_status import job_table
from assets.gdpr.erasure import (
    COMPLETED,
    PENDING,
    ErasureError,
    ErasureRequest,
    cancel_erasure,
    erasure_requests,
    request_erasure,
)
from assets.gdpr.requests import GdprRequestError, request_gdpr_export

router = APIRouter(prefix="/api/v1/gdpr", tags=["gdpr"])


class ErasureStatus(BaseModel):
    requestId: str  # noqa: N815 (the API's field names are camelCase)
    status: str = Field(description="pending, erasing, completed, failed or cancelled")
    requestedAt: dt.datetime  # noqa: N815
    notBefore: dt.datetime = Field(description="when it runs; cancellable until then")  # noqa: N815
    completedAt: dt.datetime | None  # noqa: N815
    receipt: dict | None = Field(description="once completed: what was erased, as counts")


def _status(request: ErasureRequest) -> ErasureStatus:
    return ErasureStatus(
        requestId=request.id,
        status=request.status,
        requestedAt=request.requested_at,
        notBefore=request.not_before,
        completedAt=request.completed_at,
        # While erasing the receipt field holds working state (destinations): not shown.
        receipt=request.receipt if request.status == COMPLETED else None,
    )


@router.post(
    "/export",
    status_code=202,
    response_model=ExportAccepted,
    responses=error_responses(401, 403, 404, 429),
    summary="Ask for the GDPR bundle: an export job (status and link: GET /api/v1/data/export)",
)
def post_gdpr_export(caller: GdprCaller, config: ConfigDep) -> ExportAccepted:
    try:
        with caller.audited(
            config.database.engine, "gdpr-export-request", operation_type="gdpr"
        ) as entry:
            job_id, queued = request_gdpr_export(
                entry.conn, caller.user_id, requested_by=caller.actor
            )
            entry.details.update(jobId=job_id, queued=queued)
            status = entry.conn.execute(
                sa.select(job_table.c.status).where(job_table.c.id == job_id)
            ).scalar()
    except GdprRequestError as exc:
        raise not_found("user") from exc
    return ExportAccepted(jobId=job_id, status=status or "pending")


@router.post(
    "/erasure",
    status_code=202,
    response_model=ErasureStatus,
    responses=error_responses(401, 403, 404, 409, 429),
    summary="Ask for the account to be erased after the grace period",
)
def post_erasure(caller: GdprCaller, config: ConfigDep) -> ErasureStatus:
    engine = config.database.engine
    try:
        with caller.audited(engine, "gdpr-erasure-request", operation_type="gdpr") as entry:
            request = request_erasure(entry.conn, caller.user_id, requested_by=caller.actor)
            entry.details["requestId"] = request.id
    except ErasureError as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
    return _status(request)


@router.delete(
    "/erasure",
    response_model=ErasureStatus,
    responses=error_responses(401, 403, 404, 429),
    summary="Cancel the pending erasure request",
)
def delete_erasure(caller: GdprCaller, config: ConfigDep) -> ErasureStatus:
    engine = config.database.engine
    try:
        with caller.audited(engine, "gdpr-erasure-cancel", operation_type="gdpr") as entry:
            request = cancel_erasure(entry.conn, caller.user_id, cancelled_by=caller.actor)
            entry.details["requestId"] = request.id
    except ErasureError as exc:
        raise not_found("pending erasure request") from exc
    return _status(request)


@router.get(
    "/erasure",
    response_model=ErasureStatus,
    responses=error_responses(401, 403, 404, 429),
    summary="The latest erasure request's status",
)
def get_erasure(caller: GdprCaller, config: ConfigDep) -> ErasureStatus:
    engine = config.database.engine
    requests = erasure_requests(engine, caller.user_id)
    caller.record_read(engine, "gdpr-erasure-status", operation_type="gdpr")
    if not requests:
        raise not_found("erasure request")
    pending = [r for r in requests if r.status == PENDING]
    return _status(pending[-1] if pending else requests[-1])
