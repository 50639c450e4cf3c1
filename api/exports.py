"""`POST /api/v1/data/export` queues an export (optionally age-encrypted, to a recipient or
with a passphrase: `assets.exports.encryption`); `GET /api/v1/data/export` reads one
(`?jobId=`) or the caller's history, newest first, a page at a time.

The request goes into the queue the export sensor (and `goalport exports process`) works
through (`assets.exports.queue.request_export`): nothing is exported inside a request.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.auth import ConfigDep, ExportsCaller
from api.config import ApiConfig
from api.downloads import export_file_url
from api.errors import ApiError, error_responses, not_found
from api.pages import MAX_PAGE, encode_cursor, newest_first_page
from assets.exports.batches import ExportRequestError
from assets.exports.encryption import (
    MAX_PASSPHRASE,
    MIN_PASSPHRASE,
    ExportEncryptionError,
    check_encryption,
)
from assets.exports.job_rows import ExportJob
from assets.exports.job_status import job_table
from assets.exports.queue import request_export
from assets.formats.registry import REQUESTABLE_FORMATS

router = APIRouter(prefix="/api/v1/data", tags=["exports"])
API_EXPORT_TYPES = ("full", "selective", "template", "backup")


def _date_text(value: object) -> object:
    """Dates come as YYYY-MM-DD text; a number is not a date (lax parsing took 0 as 1970)."""
    if not isinstance(value, str | dt.date):
        raise ValueError("give a date as YYYY-MM-DD")
    return value


IsoDate = Annotated[dt.date, BeforeValidator(_date_text)]


class DateRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: IsoDate
    end: IsoDate

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class ExportFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modules: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=50, description="module kinds, e.g. fitness, bible"
    )
    dateRange: DateRange | None = None  # noqa: N815 (the API's field names are camelCase)


class ExportEncryption(BaseModel):
    """One of the two: the file is an age file either way (`.age` added to its name)."""

    model_config = ConfigDict(extra="forbid")
    passphrase: SecretStr | None = Field(
        default=None,
        description=f"{MIN_PASSPHRASE} to {MAX_PASSPHRASE} characters; open the file with "
        "`age -d` and this passphrase. Never stored in clear, deleted when the export ends",
    )
    recipient: str | None = Field(
        default=None, max_length=1024, description="your age public key (age1...)"
    )


class ExportRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exportType: Literal["full", "selective", "template", "backup"]  # noqa: N815
    format: str = Field(
        json_schema_extra={"enum": list(REQUESTABLE_FORMATS)},
        description="one of the formats goalport renders",
    )
    filters: ExportFilters | None = None
    encryption: ExportEncryption | None = Field(
        default=None, description="encrypt the file with age: a passphrase or a recipient"
    )

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in REQUESTABLE_FORMATS:
            raise ValueError(f"choose from {', '.join(REQUESTABLE_FORMATS)}")
        return value


class ExportAccepted(BaseModel):
    jobId: str  # noqa: N815
    status: str


class ExportStatusBody(BaseModel):
    jobId: str  # noqa: N815
    status: str
    exportType: str  # noqa: N815
    format: str
    recordsProcessed: int  # noqa: N815
    recordsTotal: int | None  # noqa: N815
    fileUrl: str | None = Field(description="the download link, while the file is available")  # noqa: N815
    fileSizeBytes: int | None  # noqa: N815
    expiresAt: dt.datetime | None  # noqa: N815
    errorMessage: str | None  # noqa: N815
    createdAt: dt.datetime  # noqa: N815
    completedAt: dt.datetime | None  # noqa: N815


class ExportHistory(BaseModel):
    items: list[ExportStatusBody]
    nextCursor: str | None = Field(description="pass as `cursor` for the next page")  # noqa: N815


def status_body(job: ExportJob, config: ApiConfig) -> ExportStatusBody:
    return ExportStatusBody(
        jobId=job.id,
        status=job.status.value,
        exportType=job.export_type,
        format=job.format,
        recordsProcessed=job.records_processed,
        recordsTotal=job.records_total,
        fileUrl=export_file_url(job, config),
        fileSizeBytes=job.file_size_bytes,
        expiresAt=job.expires_at,
        errorMessage=job.error_message,
        createdAt=job.created_at,
        completedAt=job.completed_at,
    )


@router.post(
    "/export",
    status_code=202,
    response_model=ExportAccepted,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429),
    summary="Ask for an export; it is made in the background",
)
def post_export(
    body: ExportRequestBody,
    caller: ExportsCaller,
    config: ConfigDep,
) -> ExportAccepted:
    encryption = None
    if body.encryption is not None:
        secret = body.encryption.passphrase
        try:
            encryption = check_encryption(
                secret.get_secret_value() if secret is not None else None,
                body.encryption.recipient,
            )
        except ExportEncryptionError as exc:
            raise ApiError(422, "invalid", str(exc), field=exc.field) from exc
    filters = body.filters or ExportFilters()
    dates = filters.dateRange
    details = {
        "format": body.format,
        "exportType": body.exportType,
        "encryption": encryption.kind if encryption else None,
    }
    try:
        with caller.audited(config.database.engine, "export-request", details=details) as entry:
            entry.details["jobId"] = job_id = request_export(
                entry.conn,
                caller.user_id,
                body.format,
                modules=filters.modules,
                since=dates.start.isoformat() if dates else None,
                until=dates.end.isoformat() if dates else None,
                export_type=body.exportType,
                requested_by=caller.actor,
                encryption=encryption,
            )
    except ExportRequestError as exc:
        raise ApiError(422, "invalid", str(exc)) from exc
    except ExportEncryptionError as exc:
        raise ApiError(422, "invalid", str(exc), field=exc.field) from exc
    return ExportAccepted(jobId=job_id, status="pending")


@router.get(
    "/export",
    response_model=ExportStatusBody | ExportHistory,
    responses=error_responses(400, 401, 403, 404, 422, 429),
    summary="One export's status (with jobId), or the caller's exports, newest first",
)
def get_export(
    caller: ExportsCaller,
    config: ConfigDep,
    jobId: str | None = Query(default=None, max_length=200),  # noqa: N803
    cursor: str | None = Query(default=None, max_length=500),
    limit: int = Query(default=20, ge=1, le=MAX_PAGE),
) -> ExportStatusBody | ExportHistory:
    mine = job_table.c.userId == caller.user_id
    engine = config.database.engine
    if jobId is not None:
        with caller.audited(engine, "export-status", details={"jobId": jobId}) as entry:
            row = (
                entry.conn.execute(sa.select(job_table).where(job_table.c.id == jobId, mine))
                .mappings()
                .first()
            )
            if row is None:
                raise not_found("export job")
        return status_body(ExportJob.from_row(row), config)
    with caller.audited(engine, "export-history") as entry:
        query = newest_first_page(sa.select(job_table).where(mine), job_table, cursor, limit)
        jobs = [ExportJob.from_row(r) for r in entry.conn.execute(query).mappings()]
        page = jobs[:limit]
        entry.record_count = len(page)
    return ExportHistory(
        items=[status_body(j, config) for j in page],
        nextCursor=encode_cursor(page[-1].created_at, page[-1].id) if len(jobs) > limit else None,
    )
