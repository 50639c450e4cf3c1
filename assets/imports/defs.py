"""Imports in Dagster: files dropped into the storage inbox become previews, and confirmed
previews are applied.

- `import_inbox_sensor` watches `imports/inbox/<userId>/` in object storage. Each new or
  changed object (key + ETag, or size + mtime on a local folder) gets a `DataImportJob`
  row (its id a hash of those, so a retried tick never makes two) and one
  `import_staging_job` run keyed by that job id. The cursor is a modification-time
  watermark: Dagster keeps cursors, run keys and tick logs, and inbox keys name users.
- `import_staging_job`: `staged_import` reads the file and stages it (data-quality rules
  judged per row; invalid rows reported on the job), the blocking check
  `import_introduces_no_bad_data` stops the run when too many rows are bad or when
  great-expectations finds that the user's data would break a rule it did not break
  before, and `import_preview` diffs against the user's data and stores the preview on the
  job (status `previewed`).
- `uploaded_imports_sensor` starts one `import_staging_job` run per pending job of a file
  uploaded through the API (`POST /api/v1/data/import`; ids `imp_api_...`).
- The app (or an operator) confirms a preview by setting the job's status to `confirmed`;
  `confirmed_imports_sensor` starts one `import_apply_job` run per confirmed job, which
  applies the stored plan in one transaction (status `applied`).

The work itself is `assets.imports.preview` and `assets.imports.apply`, the same code the
`goalport import` CLI runs.
"""

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from assets.imports.apply import apply_import
from assets.imports.detect import DetectedImport
from assets.imports.jobs import (
    UPLOADED_JOB_PREFIX,
    ImportJobError,
    apply_is_due,
    create_import_job,
    fail_job,
    get_import_job,
    record_failed_run,
)
from assets.imports.parsers.base import ImportFormatError
from assets.imports.preview import TooManyBadRowsError, preview_staged, read_job_file, stage_job
from assets.imports.staging import DEFAULT_MAX_BAD_SHARE, TABLE_NAMES, StagedImport, app_columns
from assets.imports.user_state import load_user_state
from resources import run_policy, schema
from resources.audit import UserErasedError
from resources.database import AppDatabase
from resources.run_memory import IN_RUN_MEMORY, IN_RUN_MEMORY_RESOURCES
from resources.storage import ObjectStorage, StorageError
from resources.storage_layout import INBOX_PREFIX, parse_inbox_key

MAX_FILES_PER_TICK = 20
MAX_APPLIES_PER_TICK = 50
# The one tag of an import run: its DataImportJob (which names the user; the run does not).
IMPORT_JOB_TAG = "goalport/import_job"


class ImportJobConfig(dg.Config):
    """Which DataImportJob a run works on (its file, user, mode and policy are on the row)."""

    job_id: str
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE


def _failed_on_job_row(job_id: str) -> dg.Failure:
    """The run's failure, without the reason: that names the file, its rows and values (a
    user's text), so it is on the DataImportJob row, which an erasure deletes."""
    return dg.Failure(
        f"import {job_id} failed; the reason is on its DataImportJob row", allow_retries=False
    )


@dataclass
class StagedFile:
    """A staged import with what the preview needs from the staging step."""

    job_id: str
    staged: StagedImport
    detected: DetectedImport
    fingerprint: str


@dg.asset(
    group_name="imports",
    kinds={"postgres", "arrow"},
    io_manager_key=IN_RUN_MEMORY,
    retry_policy=run_policy.io_retry_policy(),
)
def staged_import(
    context: dg.AssetExecutionContext,
    config: ImportJobConfig,
    database: AppDatabase,
    storage: ObjectStorage,
) -> dg.Output[StagedFile]:
    """An import job's file, detected from its content and staged for the user: tables
    shaped like the app's, ids mapped, every row checked (invalid rows are reported on the
    job with file, row, field and reason)."""
    job = get_import_job(database.engine, config.job_id)
    try:
        data = read_job_file(storage, job["fileUrl"])
    except StorageError as exc:
        fail_job(database.engine, config.job_id, str(exc))
        raise _failed_on_job_row(config.job_id) from None
    try:
        staged, detected, state = stage_job(
            database, config.job_id, data, max_bad_share=config.max_bad_share
        )
    except (ImportFormatError, ImportJobError):
        raise _failed_on_job_row(config.job_id) from None
    context.log.info(
        f"import {config.job_id}: {detected.format} from {detected.source_app}, "
        f"{detected.total_rows} rows, {staged.bad_rows} invalid"
    )
    return dg.Output(
        StagedFile(config.job_id, staged, detected, state.fingerprint),
        metadata={
            "job_id": config.job_id,
            "format": detected.format,
            "source_app": detected.source_app,
            "encrypted": detected.encrypted,
            "rows": detected.total_rows,
            "invalid_rows": staged.bad_rows,
            "row_counts": dg.MetadataValue.json(staged.row_counts()),
        },
    )


def _invalid_fields(staged: StagedImport) -> dict[str, int]:
    """How many problems each `table.field` has."""
    counts: dict[str, int] = {}
    for issue in staged.issues:
        name = f"{issue.table}.{issue.field}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def _data_after(staged: StagedImport, current: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The user's tables as they would be if every staged row were written."""
    after = {}
    for name in TABLE_NAMES:
        incoming = app_columns(staged.tables[name], name)
        existing = current[name]
        if incoming.num_rows and existing.num_rows:
            existing = existing.filter(
                pc.invert(pc.is_in(existing["id"], value_set=incoming["id"]))
            )
        after[name] = pa.concat_tables([incoming, existing.cast(incoming.schema)])
    return after


@dg.asset_check(asset=staged_import, blocking=True)
def import_introduces_no_bad_data(
    staged_import: StagedFile, database: AppDatabase
) -> dg.AssetCheckResult:
    """Blocks the preview when more of the file's rows are invalid than the import accepts,
    or when the data-quality suites (great-expectations) find that the user's data with
    the file's rows would break a rule more often than it does now."""
    from assets.quality.suites import run_quality_suites

    staged = staged_import.staged
    metadata: dict[str, Any] = {  # raw values: Dagster's own alias for them is private
        "rows": staged.total_rows,
        "invalid_rows": staged.bad_rows,
        "invalid_share": round(staged.bad_share, 4),
        "max_bad_share": staged.max_bad_share,
        # which fields, never the rows or values (a user's text); those are on the job row
        "invalid_fields": dg.MetadataValue.json(_invalid_fields(staged)),
    }
    if staged.too_many_bad_rows:
        return dg.AssetCheckResult(
            passed=False,
            metadata=metadata,
            description=f"{staged.bad_rows} of {staged.total_rows} rows are invalid, more "
            f"than the {staged.max_bad_share:.1%} an import accepts; nothing was imported",
        )
    current = load_user_state(database, staged.user_id).tables
    after = run_quality_suites(_data_after(staged, current))
    worse = []
    if not after.passed:
        # only failures the import adds count: the user's data may already break a rule
        baseline = {r.key: r.unexpected_count for r in run_quality_suites(current).results}
        worse = [r for r in after.results if r.unexpected_count > baseline.get(r.key, 0)]
    metadata["quality_engine"] = after.engine
    metadata["new_rule_failures"] = dg.MetadataValue.json(
        {r.key: r.unexpected_count for r in worse}
    )
    if worse:
        message = "the import would break data-quality rules: " + "; ".join(
            r.summary() for r in worse[:5]
        )
        fail_job(database.engine, staged_import.job_id, message)
        return dg.AssetCheckResult(
            passed=False,
            metadata=metadata,
            description=f"the import would break {len(worse)} data-quality rules "
            "(rows on its DataImportJob row)",
        )
    return dg.AssetCheckResult(passed=True, metadata=metadata)


@dg.asset(group_name="imports", kinds={"postgres", "json"})
def import_preview(
    context: dg.AssetExecutionContext,
    staged_import: StagedFile,
    database: AppDatabase,
    storage: ObjectStorage,
) -> dg.MaterializeResult:
    """The import's preview on its DataImportJob (previewData, counts, conflictsDetected):
    every row's fate against the user's data, with field-level changes. Nothing is written
    to the app's tables; the plan waits in storage for confirmation."""
    try:
        plan = preview_staged(
            database,
            storage,
            staged_import.job_id,
            staged_import.staged,
            staged_import.detected,
            staged_fingerprint=staged_import.fingerprint,
        )
    except (ImportJobError, TooManyBadRowsError):
        raise _failed_on_job_row(staged_import.job_id) from None
    totals = plan.totals()
    context.log.info(f"import {staged_import.job_id} previewed: {totals}")
    return dg.MaterializeResult(
        metadata={
            "job_id": staged_import.job_id,
            "totals": dg.MetadataValue.json(totals),
            "conflicts": totals["conflict"],
            "unresolved_conflicts": plan.unresolved_conflicts,
            "rows_to_write": plan.row_writes,
        }
    )


@dg.asset(
    group_name="imports",
    kinds={"postgres"},
    retry_policy=run_policy.io_retry_policy(),
    pool=run_policy.APP_DATABASE_POOL,
)
def applied_import(
    context: dg.AssetExecutionContext,
    config: ImportJobConfig,
    database: AppDatabase,
    storage: ObjectStorage,
) -> dg.MaterializeResult:
    """A confirmed import applied: the previewed plan written in one transaction, every
    touched row recorded in ImportChange (undoable), the job `applied`."""
    try:
        result = apply_import(database, storage, config.job_id, actor="dagster")
    except ImportJobError as exc:
        job = get_import_job(database.engine, config.job_id)
        if job["status"] == "confirmed":
            fail_job(database.engine, config.job_id, str(exc))
        raise _failed_on_job_row(config.job_id) from None
    # any other error (the database or storage away) rolled the transaction back: the
    # RetryPolicy tries again; after the last try, import_run_failure_sensor fails the job
    context.log.info(f"import {config.job_id} applied: {result.rows_written} rows written")
    return dg.MaterializeResult(
        metadata={
            "job_id": config.job_id,
            "rows_written": result.rows_written,
            "changes_recorded": result.changes_recorded,
            "statements": result.statements,
            "seconds": round(result.seconds, 3),
        }
    )


import_staging_job = dg.define_asset_job(
    "import_staging_job",
    selection=[staged_import, import_preview],
    executor_def=dg.in_process_executor,
    tags=run_policy.job_tags(run_policy.IMPORTS),
    description="Stage an import file, check it, and store its preview on the DataImportJob.",
)

import_apply_job = dg.define_asset_job(
    "import_apply_job",
    selection=[applied_import],
    executor_def=dg.in_process_executor,
    tags=run_policy.job_tags(run_policy.IMPORTS),
    description="Apply a confirmed import's previewed plan in one transaction.",
)


@dataclass(frozen=True)
class InboxObject:
    """One version of one inbox object: its key, its version (the ETag on S3, size and
    modification time on a local folder) and its modification time (POSIX seconds)."""

    key: str
    version: str
    modified: float


def _modified(info: dict) -> float:
    moment = info.get("LastModified") or info.get("mtime") or 0.0
    return moment.timestamp() if isinstance(moment, dt.datetime) else float(moment)


def inbox_objects(storage: ObjectStorage) -> list[InboxObject]:
    """Every object under the inbox, oldest first, from one listing."""
    base = storage.path(INBOX_PREFIX)
    try:
        found = storage.fs.find(base, detail=True)
    except FileNotFoundError:
        return []
    root = storage.root.split("://", 1)[-1].rstrip("/") + "/"
    objects = []
    for path, info in found.items():
        path = path.split("://", 1)[-1]
        key = path[len(root) :] if path.startswith(root) else path
        if key.rsplit("/", 1)[-1].startswith(".tmp-") or info.get("type") == "directory":
            continue
        etag = info.get("ETag") or info.get("etag")
        modified = _modified(info)
        version = etag.strip('"') if etag else f"{info.get('size')}-{modified}"
        objects.append(InboxObject(key, version, modified))
    return sorted(objects, key=lambda o: (o.modified, o.key))


def inbox_job_id(key: str, version: str) -> str:
    """The DataImportJob id for one version of one inbox object (a retried tick reuses it)."""
    return "imp_inbox_" + hashlib.sha256(f"{key}@{version}".encode()).hexdigest()[:24]


def _existing_job_ids(database: AppDatabase, job_ids: list[str]) -> set[str]:
    table = schema.data_import_job
    with database.engine.connect() as conn:
        return set(conn.scalars(sa.select(table.c.id).where(table.c.id.in_(job_ids))))


@dg.sensor(
    job=import_staging_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="New files under imports/inbox/<userId>/ become import jobs and previews.",
)
def import_inbox_sensor(
    context: dg.SensorEvaluationContext, database: AppDatabase, storage: ObjectStorage
):
    """Each new object version in a user's inbox folder gets a DataImportJob and one run.

    Inbox keys name their users, and Dagster keeps a sensor's cursor, run keys and tick
    logs, so none of them holds a key: the cursor is a modification-time watermark, the
    run key is the import job's id (a hash of key and version), and the log counts files.
    Objects modified at the watermark's instant are looked at again on the next tick; the
    import job that already exists for their version makes that a no-op. A file dropped
    for a user who was erased is deleted (the erasure fence refuses their import job).
    """
    previous = watermark = float(context.cursor) if context.cursor else 0.0
    candidates = [o for o in inbox_objects(storage) if o.modified >= previous]
    known = _existing_job_ids(database, [inbox_job_id(o.key, o.version) for o in candidates])
    requests: list[dg.RunRequest] = []
    ignored = erased = 0
    for obj in candidates:
        job_id = inbox_job_id(obj.key, obj.version)
        if job_id not in known and len(requests) >= MAX_FILES_PER_TICK:
            break
        watermark = max(watermark, obj.modified)
        if job_id in known:
            continue
        inbox_file = parse_inbox_key(obj.key)
        if inbox_file is None:
            ignored += obj.modified > previous  # counted once, not on every look again
            continue
        try:
            create_import_job(
                database.engine,
                user_id=inbox_file.user_id,
                file_name=inbox_file.file_name,
                file_url=storage.object_url(obj.key),
                requested_by="inbox",
                job_id=job_id,
            )
        except UserErasedError:  # dropped after their erasure: nothing of theirs is kept
            storage.delete(obj.key)
            erased += 1
            continue
        requests.append(
            dg.RunRequest(
                run_key=job_id,
                run_config=dg.RunConfig(ops={"staged_import": ImportJobConfig(job_id=job_id)}),
                tags={IMPORT_JOB_TAG: job_id},
            )
        )
    if ignored:
        context.log.warning(f"{ignored} inbox files are not in a user's folder; ignored")
    if erased:
        context.log.info(f"{erased} inbox files of erased users deleted")
    if requests:
        context.log.info(f"{len(requests)} inbox files became import jobs")
    return dg.SensorResult(run_requests=requests, cursor=repr(watermark))


@dg.sensor(
    job=import_apply_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Import jobs confirmed in the app are applied, one run each.",
)
def confirmed_imports_sensor(context: dg.SensorEvaluationContext, database: AppDatabase):
    """One apply run per confirmation: a job confirmed again after a failed apply run gets
    a new run (the run key counts the job's apply runs), never two at once."""
    job = schema.data_import_job
    with database.engine.connect() as conn:
        rows = conn.execute(
            sa.select(job.c.id, job.c.errorMessage)
            .where(job.c.status == "confirmed")
            .order_by(job.c.createdAt, job.c.id)
            .limit(MAX_APPLIES_PER_TICK)
        ).fetchall()
    for job_id, error_message in rows:
        runs = context.instance.get_runs(
            filters=dg.RunsFilter(job_name=import_apply_job.name, tags={IMPORT_JOB_TAG: job_id})
        )
        if any(not run.is_finished for run in runs):
            continue  # its apply is queued or running
        if not apply_is_due(error_message, runs[0].run_id if runs else None):
            continue  # its last run failed and the failure is not on the row yet
        yield dg.RunRequest(
            run_key=f"apply:{job_id}:{len(runs)}",
            run_config=dg.RunConfig(ops={"applied_import": ImportJobConfig(job_id=job_id)}),
            tags={IMPORT_JOB_TAG: job_id},
        )


@dg.sensor(
    job=import_staging_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Files uploaded through the API become previews, one run each.",
)
def uploaded_imports_sensor(context: dg.SensorEvaluationContext, database: AppDatabase):
    """Each pending API upload job gets one staging run (the run key is the job id, which
    names no user)."""
    job = schema.data_import_job
    with database.engine.connect() as conn:
        job_ids = conn.scalars(
            sa.select(job.c.id)
            .where(job.c.status == "pending", job.c.id.startswith(UPLOADED_JOB_PREFIX))
            .order_by(job.c.createdAt, job.c.id)
            .limit(MAX_FILES_PER_TICK)
        ).all()
    for job_id in job_ids:
        yield dg.RunRequest(
            run_key=job_id,
            run_config=dg.RunConfig(ops={"staged_import": ImportJobConfig(job_id=job_id)}),
            tags={IMPORT_JOB_TAG: job_id},
        )


@dg.run_failure_sensor(
    monitored_jobs=[import_staging_job, import_apply_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="An import run that failed (or died) fails its DataImportJob, with why.",
)
def import_run_failure_sensor(context: dg.RunFailureSensorContext, database: AppDatabase):
    """The run could not record its own end (killed, out of memory): its job says so, and
    an apply job may be confirmed again."""
    run = context.dagster_run
    job_id = run.tags.get(IMPORT_JOB_TAG)
    if not job_id:
        return
    reasons = [
        event.step_failure_data.error.message.strip().splitlines()[0]
        for event in context.get_step_failure_events()
        if event.step_failure_data and event.step_failure_data.error
    ]
    reason = "; ".join(reasons) or (context.failure_event.message or "the run failed")
    if record_failed_run(database.engine, job_id, run.run_id, reason):
        context.log.info(f"import job {job_id}: the failed run is recorded on it")


defs = dg.Definitions(
    assets=[staged_import, import_preview, applied_import],
    asset_checks=[import_introduces_no_bad_data],
    jobs=[import_staging_job, import_apply_job],
    sensors=[
        import_inbox_sensor,
        confirmed_imports_sensor,
        uploaded_imports_sensor,
        import_run_failure_sensor,
    ],
    resources=IN_RUN_MEMORY_RESOURCES,
)
