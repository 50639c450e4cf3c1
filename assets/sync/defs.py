"""The sync area's Dagster side: the daily compaction of the change log
(`assets.sync.changelog.compact_change_log`, horizon GOALPORT_SYNC_RETENTION_DAYS). Its
run config, tags and metadata name no user: only counts and the horizon's seq."""

import dagster as dg

from assets.sync.changelog import compact_change_log
from resources import run_policy, settings
from resources.database import AppDatabase


@dg.op(description="Drop tombstones, row images and push receipts past the sync horizon.")
def compact_sync_log(database: AppDatabase) -> dg.Output[int]:
    done = compact_change_log(database.engine, settings.sync_retention())
    return dg.Output(
        done.tombstones_deleted,
        metadata={
            "purged_through": done.purged_through,
            "tombstones_deleted": done.tombstones_deleted,
            "images_deleted": done.images_deleted,
            "receipts_deleted": done.receipts_deleted,
        },
    )


@dg.job(
    description="Compact the sync change log to its retention horizon.",
    tags=run_policy.job_tags(run_policy.IMPORTS),
)
def compact_sync_log_job():
    compact_sync_log()


compact_sync_log_schedule = dg.ScheduleDefinition(
    job=compact_sync_log_job,
    cron_schedule="45 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:45 UTC.",
)

defs = dg.Definitions(jobs=[compact_sync_log_job], schedules=[compact_sync_log_schedule])
