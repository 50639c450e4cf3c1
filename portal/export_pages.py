"""The Export page: choose formats, modules and a date range; the history with each
export's live progress, expiry, download link and, for a report, "open the offline
report". Requests and reads go through `api.exports`' route functions."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from api import exports
from assets.exports.expiry import storage_key_of
from assets.exports.queue import get_export
from assets.formats.registry import REQUESTABLE_FORMATS
from portal import texts
from portal.web import PortalPageError, SignedIn, Visitor, api_call, check_csrf, render, see_other
from resources import schema

router = APIRouter(prefix="/portal/export", include_in_schema=False)
HISTORY_PAGE = 10
FINISHED = ("completed", "failed", "expired")
# The report opens in the browser, sandboxed: no script, nothing fetched, its own styles.
REPORT_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def module_kinds(visitor: Visitor) -> list[str]:
    """The kinds of the modules the signed-in user has, for the export's module choice."""
    module = schema.module
    with visitor.config.database.engine.connect() as conn:
        return sorted(
            conn.scalars(
                sa.select(module.c.kind).where(module.c.userId == visitor.caller.user_id).distinct()
            )
        )


def _page(request: Request, visitor: Visitor, cursor: str | None, *, error: str = "", status=200):
    history = api_call(
        exports.get_export,
        visitor.caller,
        visitor.config,
        jobId=None,
        cursor=cursor,
        limit=HISTORY_PAGE,
    )
    return render(
        request,
        "export.html.j2",
        visitor,
        status=status,
        history=history,
        formats=REQUESTABLE_FORMATS,
        modules=module_kinds(visitor),
        error=error,
        finished=FINISHED,
    )


@router.get("")
def export_page(
    request: Request, visitor: SignedIn, cursor: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    return _page(request, visitor, cursor)


@router.post("")
def request_exports(
    request: Request,
    visitor: SignedIn,
    csrf_token: Annotated[str, Form()] = "",
    formats: Annotated[list[str] | None, Form()] = None,
    modules: Annotated[list[str] | None, Form()] = None,
    start: Annotated[str, Form(max_length=20)] = "",
    end: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    check_csrf(request, visitor, csrf_token)
    if not formats:
        return _page(request, visitor, None, error=texts.T["export_choose_format"], status=422)
    filters: dict = {}
    if modules:
        filters["modules"] = modules
    if start or end:
        filters["dateRange"] = {"start": start or "0001-01-01", "end": end or "9999-12-31"}
    try:
        bodies = [
            exports.ExportRequestBody.model_validate(
                {
                    "exportType": "selective" if filters else "full",
                    "format": fmt,
                    "filters": filters,
                }
            )
            for fmt in dict.fromkeys(formats)
        ]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return _page(request, visitor, None, error=f"{field}: {first['msg']}", status=422)
    for body in bodies:
        api_call(exports.post_export, body, visitor.caller, visitor.config)
    return see_other("/portal/export?done=export")


def progress_state(status: exports.ExportStatusBody) -> dict:
    """What the page's progress bar shows: records done of the total, in words too."""
    total = status.recordsTotal or 0
    label = texts.STATUS_LABELS.get(status.status, status.status)
    text = (
        f"{label}: {status.recordsProcessed:,} / {total:,} {texts.T['records']}" if total else label
    )
    return {
        "done": status.status in FINISHED,
        "value": status.recordsProcessed,
        "max": total or None,
        "text": text,
    }


@router.get("/jobs/{job_id}/progress")
def export_progress(job_id: str, visitor: SignedIn) -> JSONResponse:
    status = api_call(
        exports.get_export, visitor.caller, visitor.config, jobId=job_id, cursor=None, limit=1
    )
    assert isinstance(status, exports.ExportStatusBody)
    return JSONResponse(progress_state(status))


@router.get("/jobs/{job_id}/report")
def open_report(job_id: str, visitor: SignedIn) -> Response:
    """A finished report export, shown in the browser (sandboxed) instead of downloaded."""
    status = api_call(
        exports.get_export, visitor.caller, visitor.config, jobId=job_id, cursor=None, limit=1
    )
    assert isinstance(status, exports.ExportStatusBody)
    if status.format != "report" or status.fileUrl is None:
        raise PortalPageError(404, texts.T["not_found_title"], "no report to open with that id")
    job = get_export(visitor.config.database.engine, job_id)
    key = storage_key_of(visitor.config.storage, job.file_url)
    if key is None:
        raise PortalPageError(404, texts.T["not_found_title"], "no report to open with that id")
    return Response(
        visitor.config.storage.read_bytes(key),
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": REPORT_CSP},
    )
