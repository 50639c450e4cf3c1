"""The export request queue: asking for an export, reading requests back, retrying and
failing them.

Anything that wants an export (the app, the CLI, a schedule, the Dagster UI) inserts a
`pending` `DataExportJob` row here. From there: `assets.exports.claims` takes pending rows
into batches for the sensor, `assets.exports.progress` keeps a batch's rows in step with
its export, `assets.exports.expiry` deletes files past their expiry, and
`assets.exports.notifications` tells the app. Every status change goes through
`assets.exports.job_status`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from assets.exports.batches import ExportRequestError, check_formats, make_filter
from assets.exports.encryption import Encryption, store_encryption
from assets.exports.job_rows import (
    EXPORT_TYPES,
    ExportJob,
    default_export_type,
    filters_json,
    jobs_by_id,
)
from assets.exports.job_status import (
    RETRY,
    ExportStatus,
    fail_jobs,
    insert_jobs,
    job_table,
    retry_jobs,
)
from assets.exports.notifications import queue_failure_notification
from resources import schema
from resources.audit import new_id, utc_now
from resources.database import transaction

# Imported from here by assets/backups until its own split lands; the setting is read in
# resources.settings.


def request_export(
    engine: sa.Engine | sa.Connection,
    user_id: str,
    fmt: str,
    *,
    modules: Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    export_type: str | None = None,
    requested_by: str | None = None,
    encryption: Encryption | None = None,
) -> str:
    """Queue an export of one user's data in one format; returns the new job id. With
    `encryption` (`assets.exports.encryption.check_encryption`), the file is an age file.

    Raises ExportRequestError for an unknown user, format, export type or a bad date range;
    ExportEncryptionError for a passphrase that cannot be protected (no master key).
    """
    formats = check_formats([fmt])
    if len(formats) != 1:
        raise ExportRequestError("one format per export request")
    filters = make_filter(modules, since, until)
    export_type = export_type or default_export_type(filters)
    if export_type not in EXPORT_TYPES:
        raise ExportRequestError(
            f"unknown export type {export_type!r}: choose from {', '.join(EXPORT_TYPES)}"
        )
    job_id = new_id("exp_")
    with transaction(engine) as conn:
        found = conn.execute(sa.select(schema.user.c.id).where(schema.user.c.id == user_id)).first()
        if found is None:
            raise ExportRequestError(f"unknown user id: {user_id}")
        row = {
            "id": job_id,
            "userId": user_id,
            "exportType": export_type,
            "format": formats[0],
            "filters": filters_json(filters),
            "requestedBy": requested_by,
            "recordsProcessed": 0,
            "attempts": 0,
            "createdAt": utc_now(),
        }
        insert_jobs(conn, [row], ExportStatus.PENDING)
        if encryption is not None:
            store_encryption(conn, job_id, user_id, encryption)
    return job_id


def get_export(engine: sa.Engine, job_id: str) -> ExportJob:
    with engine.connect() as conn:
        row = conn.execute(sa.select(job_table).where(job_table.c.id == job_id)).mappings().first()
    if row is None:
        raise ExportRequestError(f"no export job with id {job_id!r}")
    return ExportJob.from_row(row)


def list_exports(engine: sa.Engine, user_id: str, limit: int = 100) -> list[ExportJob]:
    """A user's export requests, newest first."""
    query = (
        sa.select(job_table)
        .where(job_table.c.userId == user_id)
        .order_by(job_table.c.createdAt.desc(), job_table.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [ExportJob.from_row(r) for r in conn.execute(query).mappings()]


def retry_exports(engine: sa.Engine, job_ids: Sequence[str]) -> list[ExportJob]:
    """Re-queue failed (or expired) requests as pending; they keep their attempt count."""
    with engine.begin() as conn:
        jobs = {j.id: j for j in jobs_by_id(conn, job_ids)}
        unknown = [i for i in job_ids if i not in jobs]
        if unknown:
            raise ExportRequestError(f"no export job with id {', '.join(map(repr, unknown))}")
        stuck = [j for j in jobs.values() if j.status not in RETRY.sources]
        if stuck:
            raise ExportRequestError(
                "only failed or expired exports can be retried: "
                + ", ".join(f"{j.id} is {j.status}" for j in stuck)
            )
        retry_jobs(conn, list(jobs))
        return jobs_by_id(conn, job_ids)


def fail_exports(
    engine: sa.Engine,
    message: str,
    *,
    job_ids: Sequence[str] = (),
    batch_ids: Sequence[str] = (),
    run_id: str | None = None,
) -> list[str]:
    """Fail the rows of a batch (or the named rows) that are still processing, each with a
    notification: for a run that died (the run-failure sensors) and for users whose data
    failed the quality checks."""
    conditions = []
    if job_ids:
        conditions.append(job_table.c.id.in_(list(job_ids)))
    if batch_ids:
        conditions.append(job_table.c.batchId.in_(list(batch_ids)))
    if not conditions:
        return []
    failed = []
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(job_table).where(
                sa.or_(*conditions), job_table.c.status == ExportStatus.PROCESSING.value
            )
        ).mappings()
        for job in [ExportJob.from_row(r) for r in rows]:
            # Guarded by the batch it was read in: a row re-queued meanwhile is not failed.
            if fail_jobs(conn, [job.id], message, batch_id=job.batch_id or "", run_id=run_id):
                queue_failure_notification(conn, job, message)
                failed.append(job.id)
    return failed
