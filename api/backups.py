"""`GET`/`PUT /api/v1/backups/config` (the caller's backup schedule), `GET
/api/v1/backups` (their backup files, newest first, and their recent backup requests),
`POST /api/v1/backups/run` ("back up now"), `POST /api/v1/backups/{id}/restore` (a
backup back through the import preview) and `POST /api/v1/backups/key` (the caller's own
age identity), over `assets.backups`.

A backup's destination is an operator's setting: through the API a user cannot point
goalport's storage credentials at another place, and no storage path is ever returned.

Nothing heavy runs inside a request: "back up now" queues a pending backup row that
`backup_request_sensor` runs; a restore becomes a pending API import job (`imp_api_...`)
that `uploaded_imports_sensor` previews like an upload, decrypting the backup with the
user's key (`assets.imports.detect`); then the usual `GET /api/v1/data/import/{jobId}`,
`/changes`, `/confirm` and `/undo` apply.

**The backup key** (`POST /api/v1/backups/key`) is handed out only to a caller who re-types
the account's e-mail address in `confirmEmail`: it opens every backup of the user with the
standard `age` tool (`age -d -i key.txt backup.json.age`), without goalport. It is sent with
`Cache-Control: no-store`, never logged and never written to the audit row (which records
that it was handed out, to whom and from where). Erasure destroys goalport's copy of the
key: from then on no backup encrypted to it can be opened by goalport, and the copy the user
keeps is the only one.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Body, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from api.auth import BackupsCaller, ConfigDep
from api.config import ApiConfig
from api.errors import ApiError, error_responses, not_found
from api.imports import ImportAccepted
from assets.backups.config import (
    BACKUP_EXPORT_TYPE,
    BACKUP_FORMATS,
    BackupConfig,
    BackupConfigError,
    BackupError,
    get_backup_config,
    save_backup_config,
)
from assets.backups.due import request_backup
from assets.backups.places import backup_places
from assets.backups.retention import list_backups
from assets.exports.job_status import ExportStatus, job_table
from assets.imports.jobs import UPLOADED_JOB_PREFIX, create_import_job
from assets.imports.plan import POLICIES, ImportPlanError
from assets.imports.staging import MODES
from resources import schema
from resources.audit import UserErasedError, new_id
from resources.keys import KeyCustodyError
from resources.storage import StorageError
from resources.storage_layout import upload_key

router = APIRouter(prefix="/api/v1/backups", tags=["backups"])


class RetentionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep_last: int | None = Field(default=None, ge=1, le=1000)
    daily: int | None = Field(default=None, ge=0, le=1000)
    weekly: int | None = Field(default=None, ge=0, le=1000)
    monthly: int | None = Field(default=None, ge=0, le=1000)


class BackupSettings(BaseModel):
    """The settings a user may change; every field optional (PUT changes what it names)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    frequency: Literal["daily", "weekly", "monthly"] | None = None
    timezone: str | None = Field(
        default=None, max_length=64, description="IANA, e.g. Europe/Berlin"
    )
    include: list[str] | None = Field(default=None, max_length=50, description="module kinds")
    format: str | None = Field(default=None, json_schema_extra={"enum": list(BACKUP_FORMATS)})
    encrypt: bool | None = None
    recipients: list[str] | None = Field(
        default=None, max_length=20, description="the user's own age public keys (age1...)"
    )
    retention: RetentionBody | None = None


class BackupConfigBody(BaseModel):
    configured: bool = Field(description="false: nothing saved yet, these are the defaults")
    enabled: bool
    frequency: str
    timezone: str
    include: list[str] | None
    format: str
    encrypt: bool
    recipients: list[str]
    retention: dict[str, int]
    lastBackupAt: dt.datetime | None  # noqa: N815 (the API's field names are camelCase)
    nextBackupAt: dt.datetime | None  # noqa: N815
    lastVerifiedAt: dt.datetime | None  # noqa: N815


class BackupFileBody(BaseModel):
    id: str | None = Field(
        description="the backup's id, for `POST /api/v1/backups/{id}/restore` (verified "
        "backups only)"
    )
    fileName: str  # noqa: N815
    createdAt: dt.datetime  # noqa: N815
    sizeBytes: int  # noqa: N815
    encrypted: bool
    verified: bool = Field(description="passed its restore drill when written")


class BackupRequestBody(BaseModel):
    jobId: str  # noqa: N815
    status: str = Field(description="pending, processing, completed, failed or expired")
    requestedBy: str | None  # noqa: N815
    createdAt: dt.datetime  # noqa: N815
    completedAt: dt.datetime | None  # noqa: N815
    errorMessage: str | None  # noqa: N815


class BackupList(BaseModel):
    items: list[BackupFileBody]
    requests: list[BackupRequestBody] = Field(
        description="the latest backup requests (scheduled and asked for), newest first"
    )


class BackupQueued(BaseModel):
    jobId: str  # noqa: N815
    status: str
    queued: bool = Field(description="false: a backup was already queued or running")


class RestoreOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str = Field(
        default="replace",
        json_schema_extra={"enum": list(MODES)},
        description="replace (default): the data as it was in the backup",
    )
    onConflict: str = Field(  # noqa: N815
        default="take-incoming", json_schema_extra={"enum": list(POLICIES)}
    )
    modules: list[str] | None = Field(default=None, max_length=50)


KEY_WARNING = (
    "This identity opens every backup of yours with the standard age tool "
    "(age -d -i key.txt FILE.age). Keep it private. If your account is erased, goalport "
    "destroys its copy of this key: every backup encrypted to it becomes unreadable except "
    "with the copy you keep."
)


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirmEmail: str = Field(  # noqa: N815
        max_length=320, description="the account's e-mail address, typed again to confirm"
    )


class BackupKeyBody(BaseModel):
    recipient: str = Field(description="the public key (age1...) backups are encrypted to")
    identity: str = Field(description="the private key (AGE-SECRET-KEY-1...)")
    identityFile: str = Field(  # noqa: N815
        description="the identity in age's key-file format: save it as key.txt"
    )
    warning: str


def _config_body(config: BackupConfig, configured: bool) -> BackupConfigBody:
    return BackupConfigBody(
        configured=configured,
        enabled=config.enabled,
        frequency=config.frequency,
        timezone=config.timezone,
        include=list(config.include) if config.include is not None else None,
        format=config.format,
        encrypt=config.encrypt,
        recipients=list(config.recipients),
        retention=config.retention.as_dict(),
        lastBackupAt=config.last_backup_at,
        nextBackupAt=config.next_backup_at,
        lastVerifiedAt=config.last_verified_at,
    )


@router.get(
    "/config",
    response_model=BackupConfigBody,
    responses=error_responses(401, 403, 404, 429),
    summary="The caller's backup settings (the defaults when none are saved)",
)
def get_config(caller: BackupsCaller, config: ConfigDep) -> BackupConfigBody:
    engine = config.database.engine
    saved = get_backup_config(engine, caller.user_id)
    caller.record_read(engine, "backup-config-read", operation_type="backup")
    return _config_body(saved or BackupConfig(user_id=caller.user_id), saved is not None)


@router.put(
    "/config",
    response_model=BackupConfigBody,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429),
    summary="Change the caller's backup settings (only the fields given)",
)
def put_config(
    settings: BackupSettings, caller: BackupsCaller, config: ConfigDep
) -> BackupConfigBody:
    changes = settings.model_dump(exclude_none=True)
    if "retention" in changes:
        changes["retention"] = {k: v for k, v in changes["retention"].items() if v is not None}
    try:
        with caller.audited(
            config.database.engine,
            "backup-config-change",
            operation_type="backup",
            details={"fields": sorted(changes)},
        ) as entry:
            saved = save_backup_config(entry.conn, caller.user_id, actor=caller.actor, **changes)
    except BackupConfigError as exc:
        raise ApiError(422, "invalid", str(exc)) from exc
    return _config_body(saved, True)


@router.get(
    "",
    response_model=BackupList,
    responses=error_responses(401, 403, 404, 429),
    summary="The caller's backup files, newest first, and their latest backup requests",
)
def get_backups(caller: BackupsCaller, config: ConfigDep) -> BackupList:
    engine = config.database.engine
    files = list_backups(engine, config.storage, caller.user_id)
    mine = sa.and_(
        job_table.c.userId == caller.user_id, job_table.c.exportType == BACKUP_EXPORT_TYPE
    )
    with engine.begin() as conn:
        verified_ids = dict(
            conn.execute(
                sa.select(job_table.c.fileUrl, job_table.c.id).where(
                    mine,
                    job_table.c.status == ExportStatus.COMPLETED.value,
                    job_table.c.fileUrl.in_([f.url for f in files]),
                )
            ).all()
        )
        recent = conn.execute(
            sa.select(job_table)
            .where(mine)
            .order_by(job_table.c.createdAt.desc(), job_table.c.id.desc())
            .limit(20)
        ).mappings()
        requests = [
            BackupRequestBody(
                jobId=r["id"],
                status=r["status"],
                requestedBy=r["requestedBy"],
                createdAt=r["createdAt"],
                completedAt=r["completedAt"],
                errorMessage=r["errorMessage"],
            )
            for r in recent
        ]
        caller.audit(conn, "backup-list", operation_type="backup", record_count=len(files))
    return BackupList(
        items=[
            BackupFileBody(
                id=verified_ids.get(f.url),
                fileName=posixpath.basename(f.key),
                createdAt=f.created_at,
                sizeBytes=f.size,
                encrypted=f.encrypted,
                verified=f.verified,
            )
            for f in files
        ],
        requests=requests,
    )


@router.post(
    "/run",
    status_code=202,
    response_model=BackupQueued,
    responses=error_responses(401, 403, 404, 429),
    summary="Back up now: queued, made in the background, listed in GET /api/v1/backups",
)
def post_backup_run(caller: BackupsCaller, config: ConfigDep) -> BackupQueued:
    try:
        with caller.audited(
            config.database.engine, "backup-request", operation_type="backup"
        ) as entry:
            job_id, queued = request_backup(entry.conn, caller.user_id, requested_by=caller.actor)
            entry.details.update(jobId=job_id, queued=queued)
            status = entry.conn.execute(
                sa.select(job_table.c.status).where(job_table.c.id == job_id)
            ).scalar()
    except BackupError as exc:
        raise not_found("user") from exc
    return BackupQueued(jobId=job_id, status=status or "pending", queued=queued)


def _restore_source(config: ApiConfig, user_id: str, backup_id: str) -> tuple[str, str]:
    """(file URL in goalport's storage, file name) of the caller's verified backup
    `backup_id`. A backup at an operator-set destination elsewhere is copied into the
    user's uploads first, since an import run reads only goalport's own storage."""
    engine = config.database.engine
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(job_table.c.fileUrl).where(
                job_table.c.id == backup_id,
                job_table.c.userId == user_id,
                job_table.c.exportType == BACKUP_EXPORT_TYPE,
                job_table.c.status == ExportStatus.COMPLETED.value,
            )
        ).first()
    if row is None or not row.fileUrl:
        raise not_found("backup")
    url = row.fileUrl
    name = posixpath.basename(url)
    storage = config.storage
    if storage.key_of(url) is not None:
        return url, name
    saved = get_backup_config(engine, user_id) or BackupConfig(user_id=user_id)
    places = backup_places(engine, config.key_vault, storage, saved).all
    found = [(place, key) for place in places if (key := place.key_of(url)) is not None]
    if not found:
        raise not_found("backup")
    destination, key = found[0]
    try:
        size = int(destination.info(key).get("size") or 0)
        if size > config.max_upload_bytes:
            raise ApiError(
                413, "too_large", f"a restore takes at most {config.max_upload_bytes:,} bytes"
            )
        data = destination.read_bytes(key)
    except (FileNotFoundError, StorageError) as exc:
        raise not_found("backup") from exc
    copy = upload_key(user_id, new_id("rst_"), name)
    storage.write_bytes(copy, data)
    return storage.object_url(copy), name


@router.post(
    "/{backup_id}/restore",
    status_code=202,
    response_model=ImportAccepted,
    responses=error_responses(400, 401, 403, 404, 413, 422, 429),
    summary="Restore a backup through the import preview (then confirm or leave it)",
)
def post_backup_restore(
    caller: BackupsCaller,
    config: ConfigDep,
    backup_id: Annotated[str, Path(max_length=200, description="an id from GET /api/v1/backups")],
    options: Annotated[RestoreOptions | None, Body()] = None,
) -> ImportAccepted:
    options = options or RestoreOptions()
    for name, value, choices in (
        ("mode", options.mode, MODES),
        ("onConflict", options.onConflict, POLICIES),
    ):
        if value not in choices:
            raise ApiError(422, "invalid", f"{name}: choose from {', '.join(choices)}", field=name)
    file_url, file_name = _restore_source(config, caller.user_id, backup_id)
    job_id = new_id(UPLOADED_JOB_PREFIX)
    details = {"jobId": job_id, "backupId": backup_id, "mode": options.mode}
    try:
        with caller.audited(
            config.database.engine,
            "backup-restore-request",
            operation_type="import",
            details=details,
        ) as entry:
            create_import_job(
                entry.conn,
                user_id=caller.user_id,
                file_name=file_name,
                file_url=file_url,
                mode=options.mode,
                conflict_policy=options.onConflict,
                modules=options.modules,
                requested_by=caller.actor,
                job_id=job_id,
            )
    except (ImportPlanError, UserErasedError) as exc:
        raise ApiError(422, "invalid", str(exc)) from exc
    return ImportAccepted(jobId=job_id, status="pending")


@router.post(
    "/key",
    response_model=BackupKeyBody,
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
    summary="The caller's own backup key (age identity), after re-typing the e-mail address",
)
def post_backup_key(
    body: KeyRequest, caller: BackupsCaller, config: ConfigDep, response: Response
) -> BackupKeyBody:
    engine = config.database.engine
    with engine.connect() as conn:
        email = conn.execute(
            sa.select(schema.user.c.email).where(schema.user.c.id == caller.user_id)
        ).scalar()
    if email is None:
        raise not_found("user")
    if body.confirmEmail.strip().casefold() != email.strip().casefold():
        with engine.begin() as conn:
            caller.audit(
                conn, "backup-key-refused", operation_type="backup", details={"reason": "email"}
            )
        raise ApiError(
            422,
            "confirmation_mismatch",
            "type the account's e-mail address in confirmEmail to confirm",
            field="confirmEmail",
        )
    vault = config.key_vault
    try:
        recipient = vault.ensure_user_key(caller.user_id)
        identity_file = vault.identity_file(caller.user_id)
    except (KeyCustodyError, UserErasedError) as exc:
        raise ApiError(409, "conflict", f"the backup key cannot be opened: {exc}") from exc
    identity = next(
        line.strip() for line in identity_file.splitlines() if line.startswith("AGE-SECRET-KEY-")
    )
    with engine.begin() as conn:
        caller.audit(
            conn,
            "backup-key-export",
            operation_type="backup",
            details={"recipient": recipient},
        )
    response.headers["Cache-Control"] = "no-store"
    return BackupKeyBody(
        recipient=recipient, identity=identity, identityFile=identity_file, warning=KEY_WARNING
    )
