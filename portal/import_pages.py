"""Import / move from another app: a guided page per app (that app's own export steps, its
`GUIDE` from `assets.imports.parsers`), the upload, the detection result and mapping
report, the preview (counts per table, then the per-row changes a page at a time with
conflicts marked), confirm, and undo from the history. Every step is one of
`api.imports`' route functions."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from markdown_it import MarkdownIt
from markupsafe import Markup

from api import imports
from api.errors import ApiError
from assets.imports.parsers.detect import export_guides
from assets.imports.plan import POLICIES
from assets.imports.staging import MODES
from portal import texts
from portal.web import PortalPageError, SignedIn, Visitor, api_call, check_csrf, render, see_other

router = APIRouter(prefix="/portal/import", include_in_schema=False)
CHANGES_PAGE = 20
WAITING = ("pending", "staged", "confirmed", "applying")
GOALPORT_APP = "goalport"
ANY_APP = "any"


@functools.cache
def guides() -> dict[str, tuple[str, Markup]]:
    """Each app's display name (its guide's heading) and its guide as HTML. The guides are
    our own text; rendered with raw HTML off all the same."""
    markdown = MarkdownIt("js-default")
    found = {}
    for app, guide in export_guides().items():
        heading, _, body = guide.partition("\n")
        name = heading.lstrip("#").strip() or app
        found[app] = (name, Markup(markdown.render(body)))
    return dict(sorted(found.items(), key=lambda item: item[1][0].lower()))


def _app_name(app: str) -> str:
    if app == GOALPORT_APP:
        return texts.T["import_goalport"]
    if app == ANY_APP:
        return texts.T["import_any"]
    return guides()[app][0]


@router.get("")
def import_page(request: Request, visitor: SignedIn) -> Response:
    history = imports.recent_imports(visitor.caller, visitor.config)
    return render(
        request,
        "import.html.j2",
        visitor,
        apps=[(app, name) for app, (name, _) in guides().items()],
        history=history,
    )


@router.get("/app/{app}")
def app_page(request: Request, visitor: SignedIn, app: str) -> Response:
    if app not in guides() and app not in (GOALPORT_APP, ANY_APP):
        raise PortalPageError(404, texts.T["not_found_title"], "no guide for that app")
    guide = guides()[app][1] if app in guides() else None
    return render(
        request,
        "import_app.html.j2",
        visitor,
        app=app,
        app_name=_app_name(app),
        guide=guide,
        modes=MODES,
        policies=POLICIES,
    )


@router.post("")
async def upload(request: Request, visitor: SignedIn) -> Response:
    """The upload form (file, mode, onConflict, csrf_token), streamed like the API's upload."""
    try:
        accepted = await imports.accept_upload(
            request,
            visitor.caller,
            visitor.config,
            check_form=lambda form: check_csrf(request, visitor, form.get("csrf_token")),
        )
    except ApiError as exc:
        title = texts.T["not_found_title"] if exc.status == 404 else texts.T["refused_title"]
        raise PortalPageError(exc.status, title, exc.message) from exc
    return see_other(f"/portal/import/jobs/{accepted.jobId}")


def _status(visitor: Visitor, job_id: str) -> imports.ImportStatusBody:
    return api_call(imports.get_import, job_id, visitor.caller, visitor.config)


@router.get("/jobs/{job_id}")
def job_page(
    request: Request,
    visitor: SignedIn,
    job_id: str,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
    per_page: Annotated[int, Query(ge=1, le=100)] = CHANGES_PAGE,
) -> Response:
    status = _status(visitor, job_id)
    changes = None
    if status.status in ("previewed", "confirmed"):
        changes = api_call(
            imports.get_import_changes,
            job_id,
            visitor.caller,
            visitor.config,
            cursor=cursor,
            limit=per_page,
        )
    conflicted = {(c.get("table"), str(c.get("id"))) for c in status.conflicts}
    return render(
        request,
        "import_job.html.j2",
        visitor,
        job=status,
        changes=changes,
        conflicted=conflicted,
        per_page=per_page,
        waiting=status.status in WAITING,
        app_name=_detected_name(status),
    )


def _detected_name(status: imports.ImportStatusBody) -> str:
    source = status.detectedSource
    if source is None or not source.app:
        return texts.T["import_unknown_source"]
    if source.app in guides():
        return guides()[source.app][0]
    return source.app


@router.get("/jobs/{job_id}/progress")
def job_progress(job_id: str, visitor: SignedIn) -> JSONResponse:
    status = _status(visitor, job_id)
    return JSONResponse(
        {
            "done": status.status not in WAITING,
            "text": texts.STATUS_LABELS.get(status.status, status.status),
        }
    )


@router.post("/jobs/{job_id}/confirm")
def confirm(
    request: Request, visitor: SignedIn, job_id: str, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, visitor, csrf_token)
    api_call(imports.confirm_import, job_id, visitor.caller, visitor.config)
    return see_other(f"/portal/import/jobs/{job_id}?done=import-confirmed")


@router.post("/jobs/{job_id}/undo")
def undo(
    request: Request, visitor: SignedIn, job_id: str, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, visitor, csrf_token)
    api_call(imports.undo_import_job, job_id, visitor.caller, visitor.config)
    return see_other(f"/portal/import/jobs/{job_id}?done=import-undone")
