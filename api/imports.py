"""Imports over HTTP: upload a file (`POST /api/v1/data/import`, multipart), read the job's
preview (`GET .../{jobId}`) and its per-row changes a page at a time (`GET .../changes`),
confirm it, undo it.

The upload is stored in the user's uploads folder (`resources.storage_layout.upload_key`)
and gets a pending DataImportJob; the preview is made in the background by
`uploaded_imports_sensor`'s staging run (or `assets.imports.preview.preview_job_file`, the
same work in one call), never inside the request. A confirmed job is applied by
`confirmed_imports_sensor`; an undo is one transaction (`assets.imports.undo`) and is done
in the request.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import anyio
import pyarrow as pa
import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from api.auth import Caller, ConfigDep, ImportsCaller
from api.config import ApiConfig
from api.errors import ApiError, error_responses, not_found
from api.pages import MAX_PAGE
from api.uploads import receive_upload
from assets.formats.common import as_export_text
from assets.imports.jobs import (
    UPLOADED_JOB_PREFIX,
    ImportJobError,
    create_import_job,
    update_job,
)
from assets.imports.plan import POLICIES, ImportPlanError
from assets.imports.staging import MODES, app_columns
from assets.imports.stored_plans import plan_from_bytes
from assets.imports.undo import undo_import
from resources import schema
from resources.audit import UserErasedError, new_id
from resources.storage import StoredObject
from resources.storage_layout import plan_key, upload_key

router = APIRouter(prefix="/api/v1/data/import", tags=["imports"])
job_table = schema.data_import_job
PARTS = ("creates", "updates", "deletes")
ACTIONS = {"creates": "create", "updates": "update", "deletes": "delete"}


class ImportAccepted(BaseModel):
    jobId: str  # noqa: N815 (the API's field names are camelCase)
    status: str


class DetectedSource(BaseModel):
    app: str | None
    format: str | None
    encrypted: bool = False


class ImportStatusBody(BaseModel):
    jobId: str  # noqa: N815
    status: str
    fileName: str | None  # noqa: N815
    mode: str
    onConflict: str  # noqa: N815
    modules: list[str] | None
    detectedSource: DetectedSource | None = Field(  # noqa: N815
        description="what the file was recognised as, once previewed"
    )
    mapping: dict[str, Any] | None = Field(
        description="another app's file: rows per table, skipped, flattened, adjusted"
    )
    mappingReport: list[dict[str, Any]] = Field(  # noqa: N815
        description="per source item: what it became and every adjustment made to it"
    )
    counts: dict[str, dict[str, int]] = Field(description="per table: create, update, ...")
    totals: dict[str, int]
    unresolvedConflicts: int  # noqa: N815
    conflicts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="rows changed on both sides: table, id, fields [existing, incoming], resolution",
    )
    invalidRowCount: int  # noqa: N815
    invalidRows: list[dict[str, Any]]  # noqa: N815
    warnings: list[str]
    recordsImported: int  # noqa: N815
    errorMessage: str | None  # noqa: N815
    createdAt: dt.datetime  # noqa: N815
    completedAt: dt.datetime | None  # noqa: N815


class ImportChange(BaseModel):
    table: str
    action: str = Field(description="create, update or delete")
    id: str
    row: dict[str, Any] | None = Field(description="the row created or deleted")
    fields: dict[str, list[Any]] | None = Field(description="updated fields: [old, new]")


class ImportChanges(BaseModel):
    items: list[ImportChange]
    nextCursor: str | None  # noqa: N815


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ApiError(422, "invalid", f"{name}: choose from {', '.join(choices)}", field=name)
    return value


UPLOAD_FORM = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "description": "goalport's export, or another app's",
        },
        "mode": {"type": "string", "enum": list(MODES), "default": "merge"},
        "onConflict": {"type": "string", "enum": list(POLICIES), "default": "fail"},
        "modules": {
            "type": "string",
            "maxLength": 2000,
            "description": "comma-separated module kinds",
        },
    },
}


@router.post(
    "",
    status_code=202,
    response_model=ImportAccepted,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429),
    summary="Upload a file to import; its preview is made in the background",
    description="The file is streamed to storage as it arrives; one byte past the cap "
    "(the CLI's 256 MiB) and the upload is refused (413) at once, leaving nothing behind.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": UPLOAD_FORM}},
        }
    },
)
async def post_import(request: Request, caller: ImportsCaller, config: ConfigDep) -> ImportAccepted:
    return await accept_upload(request, caller, config)


async def accept_upload(
    request: Request,
    caller: Caller,
    config: ApiConfig,
    check_form: Callable[[Mapping[str, str]], None] = lambda form: None,
) -> ImportAccepted:
    """Store a multipart upload as it arrives and queue its import; `check_form` sees the form's
    other fields before the file is kept (the portal checks its CSRF token there)."""
    job_id = new_id(UPLOADED_JOB_PREFIX)
    upload = await receive_upload(
        request,
        config.storage,
        lambda name: upload_key(caller.user_id, job_id, name),
        config.max_upload_bytes,
    )
    try:
        form = upload.fields
        check_form(form)
        mode = _choice("mode", form.get("mode") or "merge", MODES)
        on_conflict = _choice("onConflict", form.get("onConflict") or "fail", POLICIES)
        modules = form.get("modules") or ""
        if len(modules) > 2000:
            raise ApiError(422, "invalid", "modules: at most 2000 characters", field="modules")
        chosen = [m for m in modules.split(",") if m.strip()] or None
        stored = await upload.commit()
    except BaseException:
        await upload.abort()
        raise
    try:
        await anyio.to_thread.run_sync(
            lambda: _create_upload_job(
                config, caller, job_id, upload.file_name, stored, mode, on_conflict, chosen
            )
        )
    except BaseException as exc:
        await anyio.to_thread.run_sync(config.storage.delete, stored.key)
        if isinstance(exc, ImportPlanError | UserErasedError):
            raise ApiError(422, "invalid", str(exc)) from exc
        raise
    return ImportAccepted(jobId=job_id, status="pending")


def _create_upload_job(
    config: ApiConfig,
    caller: Caller,
    job_id: str,
    file_name: str,
    stored: StoredObject,
    mode: str,
    on_conflict: str,
    modules: list[str] | None,
) -> None:
    """The pending job of a stored upload and its audit row, in one transaction."""
    details = {"jobId": job_id, "bytes": stored.size, "mode": mode}
    with caller.audited(
        config.database.engine, "import-upload", operation_type="import", details=details
    ) as entry:
        create_import_job(
            entry.conn,
            user_id=caller.user_id,
            file_name=file_name,
            file_url=stored.url,
            mode=mode,
            conflict_policy=on_conflict,
            modules=modules,
            requested_by=caller.actor,
            job_id=job_id,
        )


def _audited(config, caller: Caller, operation: str, job_id: str):
    return caller.audited(
        config.database.engine, operation, operation_type="import", details={"jobId": job_id}
    )


def _own_job(conn: sa.Connection, caller: Caller, job_id: str) -> dict:
    row = (
        conn.execute(
            sa.select(job_table).where(
                job_table.c.id == job_id, job_table.c.userId == caller.user_id
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise not_found("import job")
    return dict(row)


def _status_body(job: dict) -> ImportStatusBody:
    preview = json.loads(job["previewData"]) if job["previewData"] else {}
    file = preview.get("file") or {}
    detected = (
        DetectedSource(
            app=job["sourceApp"], format=job["format"], encrypted=bool(file.get("encrypted"))
        )
        if job["sourceApp"]
        else None
    )
    return ImportStatusBody(
        jobId=job["id"],
        status=job["status"],
        fileName=job["fileName"],
        mode=job["mode"],
        onConflict=job["conflictPolicy"],
        modules=json.loads(job["modules"]) if job["modules"] else None,
        detectedSource=detected,
        mapping=file.get("mapping"),
        mappingReport=file.get("report") or [],
        counts=preview.get("counts") or {},
        totals=preview.get("totals") or {},
        unresolvedConflicts=preview.get("unresolvedConflicts") or 0,
        conflicts=preview.get("conflicts") or [],
        invalidRowCount=preview.get("invalidRowCount") or 0,
        invalidRows=preview.get("invalidRows") or [],
        warnings=preview.get("warnings") or [],
        recordsImported=job["recordsImported"],
        errorMessage=job["errorMessage"],
        createdAt=job["createdAt"],
        completedAt=job["completedAt"],
    )


def recent_imports(caller: Caller, config: ApiConfig, limit: int = 20) -> list[ImportStatusBody]:
    """The caller's latest import jobs, newest first (the portal's import history)."""
    query = (
        sa.select(job_table)
        .where(job_table.c.userId == caller.user_id)
        .order_by(job_table.c.createdAt.desc(), job_table.c.id.desc())
        .limit(limit)
    )
    with config.database.engine.begin() as conn:
        jobs = [dict(row) for row in conn.execute(query).mappings()]
        caller.audit(conn, "import-history", operation_type="import", record_count=len(jobs))
    return [_status_body(job) for job in jobs]


JobId = Annotated[str, Path(max_length=200)]


@router.get(
    "/{jobId}",
    response_model=ImportStatusBody,
    responses=error_responses(401, 403, 404, 429),
    summary="An import job: status, detected source, mapping report, preview counts",
)
def get_import(jobId: JobId, caller: ImportsCaller, config: ConfigDep) -> ImportStatusBody:  # noqa: N803
    with _audited(config, caller, "import-status", jobId) as entry:
        job = _own_job(entry.conn, caller, jobId)
    return _status_body(job)


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        value = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, binascii.Error) as exc:
        raise ApiError(400, "bad_request", "this cursor is not valid", field="cursor") from exc
    if value < 0:
        raise ApiError(400, "bad_request", "this cursor is not valid", field="cursor")
    return value


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _rows(table: pa.Table) -> list[dict]:
    names = table.column_names
    columns = [as_export_text(table[n]).to_pylist() for n in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def changes_page(plan, offset: int, limit: int) -> tuple[list[ImportChange], int]:
    """Rows `offset` to `offset + limit` of the plan's changes, in table order and within a
    table creates, updates, deletes; and how many changes the plan holds."""
    items: list[ImportChange] = []
    start = 0
    for name, table_plan in plan.tables.items():
        for part in PARTS:
            table = getattr(table_plan, part)
            count = table.num_rows
            first, last = max(offset - start, 0), min(offset + limit - start, count)
            if first < last:
                if part == "deletes":
                    rows = _rows(table.slice(first, last - first))
                else:
                    rows = _rows(app_columns(table, name).slice(first, last - first))
                befores = (
                    _rows(table_plan.before.slice(first, last - first)) if part == "updates" else []
                )
                for i, row in enumerate(rows):
                    fields = None
                    if part == "updates":
                        old = befores[i]
                        fields = {k: [old.get(k), v] for k, v in row.items() if old.get(k) != v}
                    items.append(
                        ImportChange(
                            table=name,
                            action=ACTIONS[part],
                            id=str(row["id"]),
                            row=None if part == "updates" else row,
                            fields=fields,
                        )
                    )
            start += count
    return items, start


@router.get(
    "/{jobId}/changes",
    response_model=ImportChanges,
    responses=error_responses(400, 401, 403, 404, 409, 422, 429),
    summary="The previewed per-row changes of an import job, a page at a time",
)
def get_import_changes(
    jobId: JobId,  # noqa: N803
    caller: ImportsCaller,
    config: ConfigDep,
    cursor: str | None = Query(default=None, max_length=100),
    limit: int = Query(default=50, ge=1, le=MAX_PAGE),
) -> ImportChanges:
    offset = _offset(cursor)
    with _audited(config, caller, "import-changes", jobId) as entry:
        job = _own_job(entry.conn, caller, jobId)
    key = plan_key(caller.user_id, jobId)
    if job["status"] not in ("previewed", "confirmed") or not config.storage.exists(key):
        raise ApiError(
            409, "conflict", f"import job {jobId} is {job['status']}: it has no changes to show"
        )
    items, total = changes_page(plan_from_bytes(config.storage.read_bytes(key)), offset, limit)
    following = offset + len(items)
    return ImportChanges(items=items, nextCursor=_cursor(following) if following < total else None)


@router.post(
    "/{jobId}/confirm",
    response_model=ImportStatusBody,
    responses=error_responses(401, 403, 404, 409, 429),
    summary="Confirm a previewed import; it is applied in the background",
)
def confirm_import(jobId: JobId, caller: ImportsCaller, config: ConfigDep) -> ImportStatusBody:  # noqa: N803
    with _audited(config, caller, "import-confirm", jobId) as entry:
        conn = entry.conn
        job = _own_job(conn, caller, jobId)
        preview = json.loads(job["previewData"]) if job["previewData"] else {}
        if job["status"] != "previewed":
            raise ApiError(
                409,
                "conflict",
                f"import job {jobId} is {job['status']}; only a preview is confirmed",
            )
        if preview.get("unresolvedConflicts"):
            raise ApiError(
                409,
                "conflict",
                f"{preview['unresolvedConflicts']} rows are in conflict and onConflict is 'fail': "
                "upload again with keep-existing, take-incoming or newest-wins",
            )
        update_job(conn, jobId, status="confirmed", errorMessage=None)
        job["status"] = "confirmed"
    return _status_body(job)


@router.post(
    "/{jobId}/undo",
    response_model=ImportStatusBody,
    responses=error_responses(401, 403, 404, 409, 429),
    summary="Put back every row an applied import changed",
)
def undo_import_job(jobId: JobId, caller: ImportsCaller, config: ConfigDep) -> ImportStatusBody:  # noqa: N803
    with config.database.engine.begin() as conn:
        _own_job(conn, caller, jobId)
    details = {"jobId": jobId}
    try:
        undo_import(
            config.database,
            jobId,
            actor=caller.actor,
            within=lambda conn: caller.audit(
                conn, "import-undo-request", operation_type="import", details=details
            ),
        )
    except ImportJobError as exc:
        raise ApiError(409, "conflict", str(exc)) from exc
    with config.database.engine.connect() as conn:
        return _status_body(_own_job(conn, caller, jobId))
