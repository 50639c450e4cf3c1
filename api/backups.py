"""`GET`/`PUT /api/v1/backups/config` (the caller's backup schedule) and `GET
/api/v1/backups` (their backup files, newest first), over `assets.backups`.

A backup's destination is an operator's setting: through the API a user cannot point
goalport's storage credentials at another place, and no storage path is ever returned.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.auth import BackupsCaller, ConfigDep
from api.errors import ApiError, error_responses
from assets.backups.config import (
    BACKUP_FORMATS,
    BackupConfig,
    BackupConfigError,
    get_backup_config,
    save_backup_config,
)
from assets.backups.retention import list_backups

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
    fileName: str  # noqa: N815
    createdAt: dt.datetime  # noqa: N815
    sizeBytes: int  # noqa: N815
    encrypted: bool
    verified: bool = Field(description="passed its restore drill when written")


class BackupList(BaseModel):
    items: list[BackupFileBody]


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
    summary="The caller's backup files, newest first",
)
def get_backups(caller: BackupsCaller, config: ConfigDep) -> BackupList:
    engine = config.database.engine
    files = list_backups(engine, config.storage, caller.user_id)
    caller.record_read(engine, "backup-list", operation_type="backup", record_count=len(files))
    return BackupList(
        items=[
            BackupFileBody(
                fileName=posixpath.basename(f.key),
                createdAt=f.created_at,
                sizeBytes=f.size,
                encrypted=f.encrypted,
                verified=f.verified,
            )
            for f in files
        ]
    )
