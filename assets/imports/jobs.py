"""DataImportJob rows: an import's job from upload to applied, and the errors its steps raise.

A job is created `pending`; the preview step (`assets.imports.preview`) makes it `staged`
and `previewed` (the plan stored, the preview on the row), the app may mark it
`confirmed`, the apply (`assets.imports.apply`) makes it `applied` and the undo
(`assets.imports.undo`) `undone`; `stale` (the user's data changed after the preview) and
`failed` end it, with the reason in `errorMessage`. Those steps write the row through
`update_job` and `fail_job`.

A run that dies while it holds a job (killed, out of memory, the database gone) cannot say
so itself: `record_failed_run` does, from the import area's run-failure sensor. An apply is
one transaction, so a dead apply wrote nothing; the job says so and which run it was, and
`apply_is_due` lets a job confirmed again after that get a new apply run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa

from assets.imports.plan import check_request
from resources import schema
from resources.audit import UserErasedError, new_id, utc_now
from resources.database import transaction
from resources.erasure_fence import fence_users

# Jobs of files uploaded through the API (`api.imports`) have ids with this prefix; the
# `uploaded_imports_sensor` previews them.
UPLOADED_JOB_PREFIX = "imp_api_"


class ImportJobError(RuntimeError):
    """An import step refused; the message says why and what to do."""


class StalePreviewError(ImportJobError):
    """The user's data changed after the preview: a new preview is needed."""


def create_import_job(
    engine: sa.Engine | sa.Connection,
    *,
    user_id: str,
    file_name: str,
    file_url: str | None = None,
    mode: str = "merge",
    conflict_policy: str = "fail",
    modules: Sequence[str] | None = None,
    requested_by: str | None = None,
    job_id: str | None = None,
) -> str:
    """Insert a pending DataImportJob; returns its id (an existing `job_id` is kept as is,
    so a sensor that retries does not create a second job)."""
    chosen = check_request(mode, conflict_policy, modules)
    job_id = job_id or new_id("imp_")
    with transaction(engine) as conn:
        if fence_users(conn, [user_id]):  # e.g. a file dropped in the inbox after the erasure
            raise UserErasedError(f"import {job_id}: the user was erased; no import is created")
        exists = conn.execute(
            sa.select(schema.data_import_job.c.id).where(schema.data_import_job.c.id == job_id)
        ).first()
        if exists:
            return job_id
        conn.execute(
            schema.data_import_job.insert().values(
                id=job_id,
                userId=user_id,
                status="pending",
                fileName=file_name,
                fileUrl=file_url,
                mode=mode,
                conflictPolicy=conflict_policy,
                modules=json.dumps(list(chosen)) if chosen else None,
                requestedBy=requested_by,
                createdAt=utc_now(),
            )
        )
    return job_id


def get_import_job(engine: sa.Engine, job_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.data_import_job).where(schema.data_import_job.c.id == job_id)
        ).first()
    if row is None:
        raise ImportJobError(f"no import job {job_id}")
    return dict(row._mapping)


def list_import_jobs(engine: sa.Engine, user_id: str) -> list[dict]:
    """The user's import jobs, newest first (without the large preview)."""
    job = schema.data_import_job
    columns = [c for c in job.columns if c.name != "previewData"]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*columns).where(job.c.userId == user_id).order_by(job.c.createdAt.desc())
        )
        return [dict(r._mapping) for r in rows]


def update_job(engine_or_conn, job_id: str, **values) -> None:
    """Set columns of the job row, in the caller's transaction or in one of its own."""
    statement = (
        schema.data_import_job.update()
        .where(schema.data_import_job.c.id == job_id)
        .values(**values)
    )
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.begin() as conn:
            conn.execute(statement)
    else:
        engine_or_conn.execute(statement)


def fail_job(
    engine: sa.Engine, job_id: str, message: str, status: str = "failed", **values
) -> None:
    """End the job as `status` (failed, or stale) with the reason a user reads."""
    update_job(engine, job_id, status=status, errorMessage=message[:4000], **values)


def lock_job(conn: sa.Connection, job_id: str) -> dict:
    """The job row, locked until the caller's transaction ends on PostgreSQL: one apply or
    undo of a job at a time."""
    job = schema.data_import_job
    query = sa.select(job).where(job.c.id == job_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise ImportJobError(f"no import job {job_id}")
    return dict(row._mapping)


# Statuses a run holds a job in; a run that died leaves the job in one of them.
HELD_BY_RUN = ("pending", "staged", "confirmed", "applying")


def record_failed_run(engine: sa.Engine, job_id: str, run_id: str, reason: str) -> bool:
    """A run of the job failed: a job it left in a held status becomes `failed` with the
    reason and the run's id (an apply wrote nothing: confirm again to retry it); a job the
    run already failed gets the run's id added. Returns whether the row changed."""
    job = schema.data_import_job
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(job.c.status, job.c.errorMessage).where(job.c.id == job_id)
        ).first()
        if row is None:
            return False
        marker = f"(run {run_id})"
        if row.status in HELD_BY_RUN:
            message = (
                f"the run working on this import failed {marker}: {reason}. Nothing was "
                "written to the user's data; confirm the import again to retry it"
            )
            update_job(conn, job_id, status="failed", errorMessage=message[:4000])
            return True
        if row.status == "failed" and marker not in (row.errorMessage or ""):
            update_job(conn, job_id, errorMessage=f"{row.errorMessage or ''} {marker}"[:4000])
            return True
    return False


def apply_is_due(error_message: str | None, last_run_id: str | None) -> bool:
    """Whether a `confirmed` job should get an apply run: it never had one, or its last one
    failed and was recorded on the row before the job was confirmed again."""
    return last_run_id is None or f"(run {last_run_id})" in (error_message or "")


def record_applied_job(
    conn: sa.Connection,
    *,
    job_id: str,
    user_id: str,
    source_app: str,
    file_name: str,
    conflict_policy: str,
    records: int,
    requested_by: str | None,
) -> None:
    """An `applied` job for changes written without a file and preview (a sync push,
    `assets.sync.merge`), in the caller's transaction: its rows are journalled like an
    import's, so it is listed, inspected and undone like one."""
    now = utc_now()
    conn.execute(
        schema.data_import_job.insert().values(
            id=job_id,
            userId=user_id,
            status="applied",
            sourceApp=source_app,
            fileName=file_name,
            mode="merge",
            conflictPolicy=conflict_policy,
            recordsTotal=records,
            recordsImported=records,
            requestedBy=requested_by,
            createdAt=now,
            completedAt=now,
        )
    )
