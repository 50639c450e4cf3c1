"""The export area in Dagster: the export job and its two assets, the request sensor that
batches queued `DataExportJob` rows into runs, the run-failure sensor, and the daily expiry.

The run config names the users (or, from the request sensor, the request rows that name
them), formats and filters (typed `ExportConfig`); the extracted batch carries them on to
rendering, so a run is configured in one place. It carries the data-quality report too:
the suites run once, in `extracted_batch`, and both the blocking checks
(`assets.quality.defs`) and `export_files` read that report.

`export_request_sensor` claims pending rows on each tick (a cap per tick; with an empty
queue it waits up to GOALPORT_REQUEST_WAIT_SECONDS for a request, so that a request is not
left waiting for the daemon's next sensor loop, 5 s apart) and asks for one
`export_job` run per batch: typed `ExportConfig` naming the rows, and the batch id as the
run key, so a batch can never be launched twice. The claim itself is what stops two ticks
(or a tick and `goalport exports process`) from taking the same row; the cursor is a
watermark of the newest request claimed, for operators to read in the UI.
`export_run_failure_sensor` marks the rows of a run that failed (crashed, killed, out of
memory: whatever the run itself could not record) as failed with the reason.

Exports stay downloadable for a limited time (7 days unless GOALPORT_EXPORT_EXPIRY_DAYS
says otherwise): once a day `expire_exports_job` deletes the files past their expiry and
marks their rows `expired`.

Notifications (the outbox) are delivered by `webhook_delivery_job`, which
`webhook_delivery_sensor` starts when some notification's next attempt is due (the first
at once, failures after their back-off: `assets.exports.notifications`); the run key is
the due notifications' ids and attempt counts, so a tick never starts a second run for the
same attempts. Notification ids name no user.
"""

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg
import sqlalchemy as sa

from assets.exports.batches import ExportRequestError, check_formats, make_filter, write_batch
from assets.exports.claims import (
    ADOPTED_BATCH_PREFIX,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PER_CLAIM,
    ClaimedBatch,
    claim_pending_exports,
    requeue_stale_claims,
    requeue_stranded_claims,
    wait_for_pending_exports,
)
from assets.exports.expiry import expire_exports
from assets.exports.notifications import deliver_notifications, due_notifications
from assets.exports.progress import (
    ClaimHeartbeat,
    ExportBatchProgress,
    restrict_batch,
    track_export_run,
)
from assets.exports.queue import fail_exports
from assets.quality.report import QualityReport
from assets.quality.suites import check_batch_quality
from resources import run_policy, schema, settings
from resources.database import AppDatabase, ExtractedBatch
from resources.run_memory import IN_RUN_MEMORY, IN_RUN_MEMORY_RESOURCES
from resources.schema import as_utc
from resources.storage import ObjectStorage

EXPORT_BATCH_SIZE = DEFAULT_BATCH_SIZE
MAX_REQUESTS_PER_TICK = DEFAULT_MAX_PER_CLAIM
# A claim with no run after this long was lost between claiming and launching.
STRANDED_CLAIM_AFTER = dt.timedelta(minutes=10)
BATCH_TAG = "goalport/batch_id"
# A claim whose run is still in Dagster's queue is alive although nobody beats it yet.
RUN_WAITING_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]
ConfigT = TypeVar("ConfigT", bound=dg.Config)


class ExportConfig(dg.Config):
    """What one export run takes out: users, formats, and optional module/date filters."""

    user_ids: list[str]
    formats: list[str] = ["json"]
    modules: list[str] | None = None
    since: str | None = None
    until: str | None = None
    # Set by the export request sensor: the DataExportJob rows this run answers. Launched by
    # hand without them, the run records its own rows.
    job_ids: list[str] = []
    batch_id: str | None = None


@dataclass
class ExportBatch:
    """The extracted tables, what the quality suites found in them, and the request they
    answer."""

    extracted: ExtractedBatch
    quality: QualityReport
    formats: tuple[str, ...]
    requested_at: dt.datetime
    job_ids: tuple[str, ...] = ()
    batch_id: str | None = None
    # Launched naming its users (by hand): its metadata may name them too (file URLs).
    names_users: bool = False


RUN_HEARTBEAT = "run_claim_heartbeat"


@dg.resource(
    required_resource_keys={"database"},
    description="Beats the heartbeat of the run's claimed batch from the run's start to its end.",
)
def run_claim_heartbeat(context: dg.InitResourceContext) -> Iterator[str | None]:
    """The claim of a sensor-launched run beats from the moment its process starts: the
    in-process executor builds resources before any step, so a run whose extraction waits
    for an `app_database` pool slot longer than GOALPORT_STALE_AFTER is not taken for dead.
    The steps beat too (their own `ClaimHeartbeat`); this one covers the wait before them."""
    run = context.run
    batch_id = run.tags.get(BATCH_TAG) if run is not None else None
    if batch_id is None:  # launched by hand: its rows are recorded by the step
        yield None
        return
    heartbeat = ClaimHeartbeat(context.resources.database.engine, batch_id)
    try:
        heartbeat.__enter__()
    except sa.exc.SQLAlchemyError as exc:  # the steps beat, and retry, on their own
        if context.log is not None:
            context.log.warning(f"the run's heartbeat of {batch_id} could not start: {exc}")
        yield batch_id
        return
    try:
        yield batch_id
    finally:
        heartbeat.__exit__(None, None, None)


@dg.asset(
    group_name="export",
    kinds={"postgres", "arrow"},
    io_manager_key=IN_RUN_MEMORY,
    retry_policy=run_policy.io_retry_policy(),
    pool=run_policy.APP_DATABASE_POOL,
)
def extracted_batch(
    context: dg.AssetExecutionContext,
    config: ExportConfig,
    database: AppDatabase,
    run_claim_heartbeat: dg.ResourceParam[str | None],
) -> dg.Output[ExportBatch]:
    """Every app table's rows for the batch's users (one query per table, not per user),
    validated by the data-quality suites: one great-expectations run per batch, whose
    report the blocking checks and the render step share."""
    try:
        formats = check_formats(config.formats)
        filters = make_filter(config.modules, config.since, config.until)
    except ExportRequestError as exc:  # the run's own config: a retry would not help
        raise dg.Failure(str(exc), allow_retries=False) from exc
    progress = track_export_run(
        database.engine,
        job_ids=config.job_ids,
        batch_id=config.batch_id,
        user_ids=config.user_ids,
        formats=formats,
        filters=filters,
        run_id=context.run.run_id,
    )
    try:
        with ClaimHeartbeat(database.engine, progress.batch_id):
            extracted = database.extract(progress.user_ids, filters)
            progress.started(extracted)
            quality = check_batch_quality(extracted)
    except Exception as exc:
        if run_policy.is_last_attempt(context.retry_number):
            progress.abort(f"{type(exc).__name__}: {exc}")
        raise
    missing = sorted(set(config.user_ids) - extracted.found_user_ids)
    if missing:
        # counted, not named: an id that is gone may be an erased user's
        context.log.warning(f"{len(missing)} of the users asked for do not exist; skipped")
    counts = extracted.row_counts()
    return dg.Output(
        ExportBatch(
            extracted,
            quality,
            formats,
            dt.datetime.now(dt.UTC),
            job_ids=tuple(progress.job_ids),
            batch_id=progress.batch_id,
            names_users=bool(config.user_ids),
        ),
        metadata={
            "batch_id": progress.batch_id,
            "requests": len(progress.job_ids),
            "users": len(extracted.found_user_ids),
            "missing_users": dg.MetadataValue.json(missing),
            "rows": sum(counts.values()),
            "row_counts": dg.MetadataValue.json(counts),
            "filters": dg.MetadataValue.json(filters.as_dict()),
            "quality_seconds": round(quality.seconds, 3),
            "users_failing_quality": len(quality.affected_user_ids),
        },
    )


@dg.asset(
    group_name="export",
    kinds={"json", "csv", "xlsx", "parquet", "s3"},
    retry_policy=run_policy.io_retry_policy(),
)
def export_files(
    context: dg.AssetExecutionContext,
    extracted_batch: ExportBatch,
    storage: ObjectStorage,
    database: AppDatabase,
) -> dg.MaterializeResult:
    """Each user's export files in every requested format, written atomically to storage;
    each request row completed (or failed, with the reason) as its user is written."""
    progress = ExportBatchProgress.load(
        database.engine,
        extracted_batch.job_ids,
        batch_id=extracted_batch.batch_id,
        run_id=context.run.run_id,
        reclaim_failed=True,
    )
    try:
        with ClaimHeartbeat(database.engine, progress.batch_id):
            result = write_batch(
                restrict_batch(extracted_batch.extracted, progress.user_ids),
                storage,
                extracted_batch.formats,
                exported_at=extracted_batch.requested_at,
                quality=extracted_batch.quality,
                on_user_done=progress.user_done,
                key_suffix=progress.key_suffix,
                skip_user=progress.is_erased,
                seal=progress.sealer,
            )
    except Exception as exc:
        # a retry (the step's RetryPolicy) finishes the rows this attempt did not write
        if run_policy.is_last_attempt(context.retry_number):
            progress.abort(f"{type(exc).__name__}: {exc}")
        raise
    outcome = progress.finished(result)
    uris = [f.stored.url for f in result.files]
    context.log.info(f"wrote {len(uris)} files for {len(result.by_user())} users")
    return dg.MaterializeResult(
        metadata={
            "files": len(uris),
            "bytes": sum(f.stored.size for f in result.files),
            # file URLs name their users: listed only for a run that was launched naming
            # them; a request's files are on its row (`goalport exports show`)
            **({"uris": dg.MetadataValue.json(uris[:100])} if extracted_batch.names_users else {}),
            "records": sum(f.records for f in result.files),
            "requests_completed": len(outcome.completed),
            # the reasons quote the users' rows: they are on the request rows
            "requests_failed": dg.MetadataValue.json(sorted(outcome.failed)),
        }
    )


# What the export job's steps need beside `database` and `storage` (a Definitions of one's
# own that holds `extracted_batch` takes these too).
EXPORT_RUN_RESOURCES = {**IN_RUN_MEMORY_RESOURCES, RUN_HEARTBEAT: run_claim_heartbeat}

export_job = dg.define_asset_job(
    "export_job",
    selection=[extracted_batch, export_files],
    executor_def=dg.in_process_executor,
    tags=run_policy.job_tags(run_policy.EXPORTS),
    description="Export a batch of users in the chosen formats (one query per table per batch).",
)


def export_run_config(config: ExportConfig) -> dg.RunConfig:
    """An export_job run's config: the typed `ExportConfig` of its extraction step."""
    return dg.RunConfig(ops={extracted_batch.op.name: config})


def launched_config(
    run: dg.DagsterRun, asset: dg.AssetsDefinition, config_type: type[ConfigT]
) -> ConfigT | None:
    """The typed config one asset of a run was launched with, validated again by the class
    that validated it at launch (a ValueError if it no longer does); None for a run that
    left the asset out. The backup area's failure sensor reads its runs through it too."""
    ops = run.run_config.get("ops")
    step = ops.get(asset.op.name) if isinstance(ops, Mapping) else None
    return None if step is None else config_type(**step.get("config", {}))


def export_run_request(batch: ClaimedBatch) -> dg.RunRequest:
    """One run for one claimed batch, keyed by the batch id. The run finds its users through
    the request rows: Dagster's run record names no user (an erasure would have to delete
    the whole batch's run otherwise)."""
    filters = batch.filters
    config = ExportConfig(
        user_ids=[],
        formats=[batch.format],
        modules=filters.get("modules"),
        since=filters.get("since"),
        until=filters.get("until"),
        job_ids=list(batch.job_ids),
        batch_id=batch.batch_id,
    )
    return dg.RunRequest(
        run_key=batch.batch_id,
        run_config=export_run_config(config),
        tags={
            BATCH_TAG: batch.batch_id,
            "goalport/format": batch.format,
            "goalport/requests": str(len(batch.job_ids)),
        },
    )


def _fail_dead_runs(instance: dg.DagsterInstance, batch_id: str) -> None:
    """A run still STARTED whose claim stopped beating died with its process (the default
    run launcher cannot tell): mark it failed, so that it frees its place in the run queue
    and run retries and the failure sensor see it. Its rows are requeued already."""
    started = dg.RunsFilter(tags={BATCH_TAG: batch_id}, statuses=[dg.DagsterRunStatus.STARTED])
    for run in instance.get_runs(filters=started):
        instance.report_run_failed(
            run, message=f"its claim's heartbeat stopped: the run's process is gone ({batch_id})"
        )


def _watermark(cursor: str | None, database: AppDatabase, batches: list[ClaimedBatch]) -> str:
    """The newest (createdAt, id) claimed so far, as JSON."""
    previous = json.loads(cursor) if cursor else None
    job_ids = [job_id for batch in batches for job_id in batch.job_ids]
    table = schema.data_export_job
    with database.engine.connect() as conn:
        newest = conn.execute(
            sa.select(table.c.createdAt, table.c.id)
            .where(table.c.id.in_(job_ids))
            .order_by(table.c.createdAt.desc(), table.c.id.desc())
            .limit(1)
        ).first()
    assert newest is not None, "the batches' rows were claimed just now"
    mark = {"createdAt": as_utc(newest.createdAt).isoformat(), "id": newest.id}
    if previous and (previous["createdAt"], previous["id"]) > (mark["createdAt"], mark["id"]):
        mark = previous
    return json.dumps(mark, sort_keys=True)


@dg.sensor(
    job=export_job,
    minimum_interval_seconds=settings.request_tick_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Claims pending export requests and launches one export_job run per batch.",
)
def export_request_sensor(
    context: dg.SensorEvaluationContext, database: AppDatabase, storage: ObjectStorage
):
    """Queued export requests become batched runs (batch id = run key)."""
    instance = context.instance

    def has_run(batch_id: str) -> bool:
        return bool(instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch_id}), limit=1))

    def run_not_started(batch_id: str) -> bool:
        waiting = dg.RunsFilter(tags={BATCH_TAG: batch_id}, statuses=RUN_WAITING_STATUSES)
        return bool(instance.get_runs(filters=waiting, limit=1))

    requeued = requeue_stranded_claims(
        database.engine, older_than=STRANDED_CLAIM_AFTER, has_run=has_run
    )
    if requeued:
        context.log.warning(f"re-queued claims that never became runs: {', '.join(requeued)}")
    stale = requeue_stale_claims(
        database.engine,
        older_than=settings.stale_claim_after(),
        storage=storage,
        is_waiting=run_not_started,
    )
    if stale.requeued or stale.failed or stale.kept:
        # counted: the reasons name storage keys, which name users
        context.log.warning(
            f"claims whose run stopped beating: {len(stale.requeued)} requests requeued, "
            f"{len(stale.failed)} failed for good, {len(stale.files_deleted)} files deleted, "
            f"{len(stale.kept)} left for the next tick (their files could not be deleted)"
        )
    for batch_id in sorted(stale.dead_batches):
        _fail_dead_runs(instance, batch_id)

    def claim() -> list[ClaimedBatch]:
        return claim_pending_exports(
            database.engine,
            max_requests=MAX_REQUESTS_PER_TICK,
            batch_size=EXPORT_BATCH_SIZE,
            claimant="sensor",
        )

    batches = claim()
    wait = settings.request_wait_seconds()
    if not batches and wait and wait_for_pending_exports(database.engine, timeout=wait):
        batches = claim()  # a request that came while this tick waited
    if not batches:
        return dg.SkipReason("no pending export requests")
    context.log.info(
        f"claimed {sum(len(b.job_ids) for b in batches)} requests in {len(batches)} batches"
    )
    return dg.SensorResult(
        run_requests=[export_run_request(b) for b in batches],
        cursor=_watermark(context.cursor, database, batches),
    )


@dg.run_failure_sensor(
    monitored_jobs=[export_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks the export requests of a failed export_job run as failed, with why.",
)
def export_run_failure_sensor(context: dg.RunFailureSensorContext, database: AppDatabase):
    """A failed export run's requests are failed with the reason, ready for a retry."""
    run = context.dagster_run
    try:
        config = launched_config(run, extracted_batch, ExportConfig)
    except ValueError as exc:  # launched by an older version of ExportConfig
        context.log.warning(f"run {run.run_id}: its config no longer validates ({exc})")
        config = None
    # A run launched without request rows recorded its own under the run's id.
    batch_ids = [run.tags.get(BATCH_TAG), ADOPTED_BATCH_PREFIX + run.run_id]
    job_ids: list[str] = []
    if config is not None:
        # by batch when the run names one: a row requeued since (its claim went stale) and
        # claimed by another batch is no longer this run's to fail
        job_ids = [] if config.batch_id else config.job_ids
        batch_ids.append(config.batch_id)
    reasons = [
        _root_cause(event.step_failure_data.error)
        for event in context.get_step_failure_events()
        if event.step_failure_data and event.step_failure_data.error
    ]
    reason = "; ".join(reasons) or (context.failure_event.message or "the run failed")
    failed = fail_exports(
        database.engine,
        f"export run {run.run_id} failed: {reason}",
        job_ids=job_ids,
        batch_ids=[b for b in batch_ids if b],
        run_id=run.run_id,
    )
    context.log.info(f"marked {len(failed)} export requests failed")


def _root_cause(error) -> str:
    """The innermost error of a step failure: the user's exception, not Dagster's wrapper."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()


@dg.op(description="Delete expired export files and mark their requests expired.")
def expire_old_exports(
    context: dg.OpExecutionContext, database: AppDatabase, storage: ObjectStorage
) -> dg.Output[int]:
    outcome = expire_exports(database.engine, storage)
    if outcome.not_in_storage:
        context.log.warning(
            "expired exports stored outside "
            f"{storage.root} were left alone: {', '.join(outcome.not_in_storage)}"
        )
    return dg.Output(
        len(outcome.expired),
        metadata={
            "expired": len(outcome.expired),
            "files_deleted": outcome.files_deleted,
            "files_already_gone": outcome.files_already_gone,
            "left_outside_storage": dg.MetadataValue.json(outcome.not_in_storage),
        },
    )


@dg.job(
    description="Delete export files past their expiry.",
    tags=run_policy.job_tags(run_policy.EXPORTS),
)
def expire_exports_job():
    expire_old_exports()


expire_exports_schedule = dg.ScheduleDefinition(
    job=expire_exports_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:30 UTC.",
)


@dg.op(description="POST the due outbox notifications to the webhook, signed.")
def deliver_due_notifications(context: dg.OpExecutionContext, database: AppDatabase) -> int:
    delivery = deliver_notifications(database.engine)
    if delivery.failed:
        context.log.warning(f"{len(delivery.failed)} webhook deliveries failed; retried later")
    context.log.info(f"{len(delivery.sent)} notifications delivered")
    return len(delivery.sent)


@dg.job(
    description="Deliver the due webhook notifications (with back-off; dead letters kept).",
    tags=run_policy.job_tags(run_policy.EXPORTS),
)
def webhook_delivery_job():
    deliver_due_notifications()


@dg.sensor(
    job=webhook_delivery_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a webhook delivery run when a notification's next attempt is due.",
)
def webhook_delivery_sensor(context: dg.SensorEvaluationContext, database: AppDatabase):
    if not settings.webhook_url():
        return dg.SkipReason("GOALPORT_WEBHOOK_URL is not set: the outbox is for the app")
    due = due_notifications(database.engine)
    if not due:
        return dg.SkipReason("no notification is due")
    attempts = ",".join(f"{notification_id}:{n}" for notification_id, n in due)
    return dg.RunRequest(run_key="webhooks:" + hashlib.sha256(attempts.encode()).hexdigest()[:32])


defs = dg.Definitions(
    assets=[extracted_batch, export_files],
    jobs=[export_job, expire_exports_job, webhook_delivery_job],
    schedules=[expire_exports_schedule],
    sensors=[export_request_sensor, export_run_failure_sensor, webhook_delivery_sensor],
    resources=EXPORT_RUN_RESOURCES,
)
