"""Expiry: a finished export is downloadable for a while (GOALPORT_EXPORT_EXPIRY_DAYS, 7 by
default); afterwards its file is deleted and its row marked `expired`, with an audit row.

The file goes first and the row after: a crash in between leaves a completed row whose file
is already gone, which the next clean-up finishes (`files_already_gone`), never an expired
row whose file still holds the user's data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.exports.job_rows import ExportJob
from assets.exports.job_status import ExportStatus, expire_jobs, job_table
from resources.audit import record_audit, utc_now
from resources.storage import ObjectStorage


@dataclass
class ExpiryOutcome:
    expired: list[str] = field(default_factory=list)
    files_deleted: int = 0
    files_already_gone: int = 0
    not_in_storage: dict[str, str] = field(default_factory=dict)  # job id -> file URL


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
    return outcome
