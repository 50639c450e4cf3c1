"""Expiry: a finished export is downloadable for a while (GOALPORT_EXPORT_EXPIRY_DAYS, 7 by
default); afterwards its file is deleted and its row marked `expired`, with an audit row.

The file goes first and the row after: a crash in between leaves a completed row whose file
is already gone, which the next clean-up finishes (`files_already_gone`), never an expired
row whose file still holds the user's data.

The same clean-up deletes what no row keeps track of once it is past the expiry: files at
an expired `FileLocation` (GDPR bundles in the main storage), orphaned export files (their
row failed after the file was written, or is gone) and files left in the import inbox.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.exports.job_rows import ExportJob
from assets.exports.job_status import ExportStatus, expire_jobs, job_table
from resources.audit import record_audit, utc_now
from resources.erasure_fence import expired_file_locations, forget_file_locations
from resources.settings import export_expiry
from resources.storage import ObjectStorage
from resources.storage_layout import EXPORTS_PREFIX, INBOX_PREFIX, UPLOADS_PREFIX


@dataclass
class ExpiryOutcome:
    expired: list[str] = field(default_factory=list)
    files_deleted: int = 0
    files_already_gone: int = 0
    not_in_storage: dict[str, str] = field(default_factory=dict)  # job id -> file URL
    located_files_deleted: int = 0  # expired FileLocation files (GDPR bundles)
    orphans_deleted: int = 0  # export files no live row names, inbox files, past expiry


def storage_key_of(storage: ObjectStorage, url: str | None) -> str | None:
    """The key of an object URL below this storage's root, or None if it lies elsewhere."""
    if not url:
        return None
    root = ("file://" + storage.root if storage.is_local else storage.root).rstrip("/") + "/"
    return url[len(root) :] if url.startswith(root) else None


def expire_exports(
    engine: sa.Engine, storage: ObjectStorage, *, now: dt.datetime | None = None
) -> ExpiryOutcome:
    """Delete the files of completed exports past their expiry and mark the rows expired.

    A file outside this storage (the storage was moved) is left alone and its row stays
    completed, so the operator sees it in the outcome instead of losing track of it.
    """
    now = now or utc_now()
    outcome = ExpiryOutcome()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(job_table).where(
                job_table.c.status == ExportStatus.COMPLETED.value, job_table.c.expiresAt <= now
            )
        ).mappings()
        due = [ExportJob.from_row(r) for r in rows]
    for job in due:
        key = storage_key_of(storage, job.file_url)
        if key is None:
            outcome.not_in_storage[job.id] = job.file_url or ""
            continue
        if storage.delete(key):
            outcome.files_deleted += 1
        else:
            outcome.files_already_gone += 1
        with engine.begin() as conn:
            if expire_jobs(conn, job_ids=[job.id]):
                record_audit(
                    conn,
                    user_id=job.user_id,
                    operation="export_expired",
                    operation_type=job.export_type,
                    details={"jobId": job.id, "format": job.format, "fileUrl": job.file_url},
                )
                outcome.expired.append(job.id)
    outcome.located_files_deleted = _expire_located_files(engine, now)
    outcome.orphans_deleted = _sweep_orphans(engine, storage, now)
    return outcome


def _expire_located_files(engine: sa.Engine, now: dt.datetime) -> int:
    with engine.connect() as conn:
        due = expired_file_locations(conn, now)
    deleted = sum(location.storage().delete_prefix(location.key) for location in due)
    with engine.begin() as conn:
        forget_file_locations(conn, [location.id for location in due])
    return deleted


def _modified_at(info: dict) -> dt.datetime | None:
    value = info.get("mtime") or info.get("LastModified") or info.get("created")
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return value if isinstance(value, dt.datetime) else None


def _sweep_orphans(engine: sa.Engine, storage: ObjectStorage, now: dt.datetime) -> int:
    """Delete export files that no pending, processing or completed row names, and inbox
    files and API uploads (a user's whole foreign export each), once they are older than
    the export expiry."""
    cutoff = now - export_expiry()
    with engine.connect() as conn:
        live = set(
            conn.execute(
                sa.select(job_table.c.fileUrl).where(
                    job_table.c.fileUrl.is_not(None),
                    job_table.c.status.in_(
                        [
                            ExportStatus.PENDING.value,
                            ExportStatus.PROCESSING.value,
                            ExportStatus.COMPLETED.value,
                        ]
                    ),
                )
            ).scalars()
        )
    deleted = 0
    for prefix, kept in ((EXPORTS_PREFIX, live), (INBOX_PREFIX, set()), (UPLOADS_PREFIX, set())):
        for key in storage.list(prefix):
            if storage.object_url(key) in kept:
                continue
            modified = _modified_at(storage.info(key))
            if modified is not None and modified <= cutoff:
                deleted += storage.delete(key)
    return deleted
