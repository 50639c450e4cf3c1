"""The Privacy page (deletion request with its grace period and cancel, the audit trail,
the backup key after re-confirmation with its warning) and the Backups page (settings,
last verified backup and next run, back up now, restore through the import preview), on
`api.gdpr`, `api.audit_trail` and `api.backups`' route functions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api import audit_trail, backups, gdpr
from api.errors import ApiError
from assets.backups.config import BACKUP_FORMATS
from portal import texts
from portal.web import PortalPageError, SignedIn, Visitor, api_call, check_csrf, render, see_other

router = APIRouter(prefix="/portal", include_in_schema=False)
AUDIT_PAGE = 20
FREQUENCIES = ("daily", "weekly", "monthly")


def _erasure(visitor: Visitor) -> gdpr.ErasureStatus | None:
    try:
        return gdpr.get_erasure(visitor.caller, visitor.config)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _privacy(request: Request, visitor: Visitor, cursor: str | None, *, error: str = ""):
    audit = api_call(
        audit_trail.get_audit, visitor.caller, visitor.config, cursor=cursor, limit=AUDIT_PAGE
    )
    return render(
        request,
        "privacy.html.j2",
        visitor,
        status=422 if error else 200,
        erasure=_erasure(visitor),
        audit=audit,
        error=error,
        key_warning=backups.KEY_WARNING,
    )


@router.get("/privacy")
def privacy_page(
    request: Request, visitor: SignedIn, cursor: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    return _privacy(request, visitor, cursor)


@router.post("/privacy/bundle")
def request_bundle(
    request: Request, visitor: SignedIn, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, visitor, csrf_token)
    api_call(gdpr.post_gdpr_export, visitor.caller, visitor.config)
    return see_other("/portal/export?done=gdpr-requested#history")


@router.post("/privacy/erasure")
def request_deletion(
    request: Request, visitor: SignedIn, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, visitor, csrf_token)
    api_call(gdpr.post_erasure, visitor.caller, visitor.config)
    return see_other("/portal/privacy?done=erasure-requested")


@router.post("/privacy/erasure/cancel")
def cancel_deletion(
    request: Request, visitor: SignedIn, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, visitor, csrf_token)
    api_call(gdpr.delete_erasure, visitor.caller, visitor.config)
    return see_other("/portal/privacy?done=erasure-cancelled")


@router.post("/privacy/backup-key")
def download_backup_key(
    request: Request,
    visitor: SignedIn,
    csrf_token: Annotated[str, Form()] = "",
    confirm_email: Annotated[str, Form(max_length=320)] = "",
    understood: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    check_csrf(request, visitor, csrf_token)
    if not understood:
        return _privacy(request, visitor, None, error=texts.T["privacy_key_confirm"])
    try:
        key = backups.post_backup_key(
            backups.KeyRequest(confirmEmail=confirm_email),
            visitor.caller,
            visitor.config,
            Response(),
        )
    except ApiError as exc:
        if exc.status == 422:
            return _privacy(request, visitor, None, error=texts.T["privacy_key_mismatch"])
        raise PortalPageError(exc.status, texts.T["refused_title"], exc.message) from exc
    return Response(
        key.identityFile,
        media_type="text/plain; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="goalport-backup-key.txt"',
            "Cache-Control": "no-store",
        },
    )


def _backups(request: Request, visitor: Visitor, *, error: str = "", status: int = 200):
    return render(
        request,
        "backups.html.j2",
        visitor,
        status=status,
        settings=api_call(backups.get_config, visitor.caller, visitor.config),
        files=api_call(backups.get_backups, visitor.caller, visitor.config),
        formats=BACKUP_FORMATS,
        frequencies=FREQUENCIES,
        error=error,
    )


@router.get("/backups")
def backups_page(request: Request, visitor: SignedIn) -> Response:
    return _backups(request, visitor)


@router.post("/backups")
def save_backup_settings(
    request: Request,
    visitor: SignedIn,
    csrf_token: Annotated[str, Form()] = "",
    enabled: Annotated[str, Form(max_length=10)] = "",
    frequency: Annotated[str, Form(max_length=20)] = "daily",
    timezone: Annotated[str, Form(max_length=64)] = "UTC",
    format: Annotated[str, Form(max_length=20)] = "json",  # noqa: A002 (the API's name)
    encrypt: Annotated[str, Form(max_length=10)] = "",
    recipients: Annotated[str, Form(max_length=4000)] = "",
    keep_last: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    check_csrf(request, visitor, csrf_token)
    fields: dict = {
        "enabled": bool(enabled),
        "frequency": frequency,
        "timezone": timezone.strip() or "UTC",
        "format": format,
        "encrypt": bool(encrypt),
        "recipients": [r.strip() for r in recipients.splitlines() if r.strip()],
    }
    if keep_last.strip():
        fields["retention"] = {"keep_last": keep_last.strip()}
    try:
        settings = backups.BackupSettings.model_validate(fields)
        backups.put_config(settings, visitor.caller, visitor.config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _backups(request, visitor, error=f"{where}: {first['msg']}", status=422)
    except ApiError as exc:
        return _backups(request, visitor, error=exc.message, status=exc.status)
    return see_other("/portal/backups?done=backups-saved")


@router.post("/backups/run")
def back_up_now(
    request: Request, visitor: SignedIn, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, visitor, csrf_token)
    api_call(backups.post_backup_run, visitor.caller, visitor.config)
    return see_other("/portal/backups?done=backup-run")


@router.post("/backups/{backup_id}/restore")
def restore_backup(
    request: Request, visitor: SignedIn, backup_id: str, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, visitor, csrf_token)
    accepted = api_call(
        backups.post_backup_restore, visitor.caller, visitor.config, backup_id, None
    )
    return see_other(f"/portal/import/jobs/{accepted.jobId}")
