"""Scheduled backups in Dagster: the hourly schedule, the batched backup job, and the sensor
that fails the requests of a crashed run.

Every hour `backup_schedule` finds the users whose backups are due (`BackupConfig`: daily,
weekly or monthly at local 02:00, see `assets.backups.config`), records a `DataExportJob`
row per user (exportType "backup", in flight under a backup batch id, in the same queue
table as every export, so operators see them beside the other requests) and asks for one
`backup_job` run per batch of users, keyed by the batch id. The run writes each user's
encrypted backup, reads it back and verifies it (the restore drill), and only then moves
the user's `lastBackupAt`/`nextBackupAt` and completes the row.

`backup_request_sensor` runs the backups asked for between ticks ("back up now":
`POST /api/v1/backups/run` queues a pending row, `assets.backups.due.request_backup`): each
tick claims the pending backup rows into batches, one `backup_job` run each, keyed by the
batch id, like the schedule's.

Backup rows carry formats like "backup-json", which the generic export claimer does not
take: they are answered only by this job.
"""

import datetime as dt

import dagster as dg

from assets.backups.due import (
    DEFAULT_BATCH_SIZE,
    QueuedBackups,
    claim_requested_backups,
    queue_backup_now,
    queue_due_backups,
    queued_by,
)
from assets.backups.runner import (
    BackupKeyUnavailableError,
    check_encryption_keys,
    run_backup_batch,
)
from assets.exports.defs import launched_config
from assets.exports.queue import fail_exports
from resources import run_policy, settings
from resources.audit import subject_ref
from resources.database import AppDatabase
from resources.keys import KeyVault
from resources.schema import as_utc
from resources.storage import ObjectStorage

BATCH_TAG = "goalport/backup_batch_id"
CHECK_NAME = "every_backup_verified"


class BackupRunConfig(dg.Config):
    """The backups one run makes: the queued requests (set by the schedule), or, launched by
    hand, the users to back up now."""

    job_ids: list[str] = []
    batch_id: str | None = None
    user_ids: list[str] = []


@dg.asset(
    group_name="backup",
    kinds={"age", "s3"},
    pool=run_policy.APP_DATABASE_POOL,
    # A retry backs up the batch's users not done yet: done rows are no longer processing
    # in the batch, and `run_backup_batch` takes only those that are.
    retry_policy=run_policy.io_retry_policy(),
    check_specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset="verified_backups",
            description="Every backup of the run was read back, decrypted and matched its "
            "manifest and the database's row counts.",
        )
    ],
)
def verified_backups(
    context: dg.AssetExecutionContext,
    config: BackupRunConfig,
    database: AppDatabase,
    storage: ObjectStorage,
    keys: KeyVault,
) -> dg.MaterializeResult:
    """Each user's encrypted backup, written to their destination and verified by a restore
    drill; retention applied once the new backup is verified."""
    if config.job_ids:
        if not config.batch_id:
            raise dg.Failure(
                description="job_ids need the batch_id they were queued under", allow_retries=False
            )
        job_ids, batch_id = config.job_ids, config.batch_id
    elif config.user_ids:
        requested_by = f"dagster run {context.run.run_id}"
        queued = (queued_by(database.engine, requested_by) if context.retry_number else None) or (
            queue_backup_now(database.engine, config.user_ids, requested_by=requested_by)
        )
        job_ids, batch_id = list(queued.job_ids), queued.batch_id
    else:
        raise dg.Failure(
            description="nothing to back up: give user_ids (or queued job_ids)", allow_retries=False
        )
    try:
        outcome = run_backup_batch(
            database, storage, keys, job_ids, batch_id, run_id=context.run.run_id
        )
    except BackupKeyUnavailableError as exc:  # a missing key does not come back by waiting
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    if outcome.failed:
        # by pseudonym: the reasons (on the request rows) and user ids name the users
        failed_refs = sorted(subject_ref(u) for u in outcome.failed)
        context.log.error(f"{len(outcome.failed)} backups failed: {', '.join(failed_refs)}")
    # No file URLs here: they name users, and an erasure deletes every run naming its user.
    return dg.MaterializeResult(
        metadata={
            "batch_id": batch_id,
            "backups_verified": len(outcome.completed),
            "backups_failed": len(outcome.failed),
            "bytes": outcome.bytes_written,
            "records": sum(r.records for r in outcome.completed),
            "retention_deleted": sum(len(r.retention_deleted) for r in outcome.completed),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK_NAME,
                passed=not outcome.failed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "verified": len(outcome.completed),
                    "failed": dg.MetadataValue.json(sorted(subject_ref(u) for u in outcome.failed)),
                },
            )
        ],
    )


backup_job = dg.define_asset_job(
    "backup_job",
    selection=[verified_backups],
    executor_def=dg.in_process_executor,
    tags=run_policy.job_tags(run_policy.BACKUPS),
    description="Back up, verify and record a batch of users (queued by backup_schedule).",
)


def backup_run_config(config: BackupRunConfig) -> dg.RunConfig:
    """A backup_job run's config: the typed `BackupRunConfig` of its one step."""
    return dg.RunConfig(ops={verified_backups.op.name: config})


def backup_run_request(batch: QueuedBackups) -> dg.RunRequest:
    """One run for one batch of queued backups, keyed by the batch id."""
    return dg.RunRequest(
        run_key=batch.batch_id,
        run_config=backup_run_config(
            BackupRunConfig(job_ids=list(batch.job_ids), batch_id=batch.batch_id)
        ),
        tags={BATCH_TAG: batch.batch_id, "goalport/backups": str(len(batch.job_ids))},
    )


@dg.schedule(
    cron_schedule="0 * * * *",
    job=backup_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour: queue the backups that are due, in batched backup_job runs.",
)
def backup_schedule(context: dg.ScheduleEvaluationContext, database: AppDatabase, keys: KeyVault):
    """Users whose `nextBackupAt` has passed get one backup each, however many ticks were
    missed; users with a backup in flight are left to it."""
    scheduled = as_utc(context.scheduled_execution_time) or dt.datetime.now(dt.UTC)
    now = scheduled.astimezone(dt.UTC)
    key_problem = None
    try:
        check_encryption_keys(keys)
    except BackupKeyUnavailableError as exc:
        key_problem = str(exc)
    outcome = queue_due_backups(
        database.engine,
        now,
        encryption_available=key_problem is None,
        batch_size=DEFAULT_BATCH_SIZE,
    )
    if outcome.stale_failed:
        context.log.warning(f"failed {len(outcome.stale_failed)} backups lost in flight")
    no_key = ""
    if outcome.skipped_no_key:
        no_key = (
            f"{len(outcome.skipped_no_key)} users are due for encrypted backups, but {key_problem}"
        )
        context.log.error(no_key)
    if not outcome.batches:
        return dg.SkipReason(no_key or "no backups are due")
    context.log.info(f"queued {outcome.user_count} backups in {len(outcome.batches)} runs")
    return [backup_run_request(b) for b in outcome.batches]


@dg.sensor(
    job=backup_job,
    minimum_interval_seconds=settings.request_tick_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Runs the backups asked for now (pending backup rows), one run per batch.",
)
def backup_request_sensor(
    context: dg.SensorEvaluationContext, database: AppDatabase, keys: KeyVault
):
    key_problem = None
    try:
        check_encryption_keys(keys)
    except BackupKeyUnavailableError as exc:
        key_problem = str(exc)
    outcome = claim_requested_backups(
        database.engine,
        dt.datetime.now(dt.UTC),
        encryption_available=key_problem is None,
        batch_size=DEFAULT_BATCH_SIZE,
    )
    if outcome.skipped_no_key:
        context.log.error(
            f"{len(outcome.skipped_no_key)} requested backups encrypt, but {key_problem}"
        )
    if not outcome.batches:
        return dg.SkipReason("no backup was asked for")
    context.log.info(
        f"claimed {outcome.user_count} requested backups in {len(outcome.batches)} runs"
    )
    return [backup_run_request(b) for b in outcome.batches]


@dg.run_failure_sensor(
    monitored_jobs=[backup_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks the backup requests of a failed backup_job run as failed, with why.",
)
def backup_run_failure_sensor(context: dg.RunFailureSensorContext, database: AppDatabase):
    """A crashed backup run's requests fail with the reason; the users stay due, so the
    next hourly tick queues them again."""
    run = context.dagster_run
    try:
        config = launched_config(run, verified_backups, BackupRunConfig) or BackupRunConfig()
    except ValueError as exc:  # launched by an older version of BackupRunConfig
        context.log.warning(f"run {run.run_id}: its config no longer validates ({exc})")
        config = BackupRunConfig()
    batch_ids = [b for b in (config.batch_id, run.tags.get(BATCH_TAG)) if b]
    reason = context.failure_event.message or "the run failed"
    failed = fail_exports(
        database.engine,
        f"backup run {run.run_id} failed: {reason}",
        job_ids=config.job_ids,
        batch_ids=batch_ids,
        run_id=run.run_id,
    )
    context.log.info(f"marked {len(failed)} backup requests failed")


# master_key is left unset: the KeyVault reads GOALPORT_MASTER_KEY when a run needs it.
defs = dg.Definitions(
    assets=[verified_backups],
    jobs=[backup_job],
    schedules=[backup_schedule],
    sensors=[backup_request_sensor, backup_run_failure_sensor],
    resources={"keys": KeyVault()},
)
