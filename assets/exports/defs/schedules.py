"""Schedules of the export request area: the daily expiry of old export files.

Exports stay downloadable for a limited time (7 days unless GOALPORT_EXPORT_EXPIRY_DAYS
says otherwise). Once a day the files past their expiry are deleted and their rows marked
`expired`; notifications whose webhook delivery failed are tried again at the same time.
"""

import dagster as dg

from assets.exports.expiry import expire_exports
from assets.exports.notifications import deliver_notifications
from resources.database import AppDatabase
from resources.storage import ObjectStorage


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
    delivery = deliver_notifications(database.engine)
    return dg.Output(
        len(outcome.expired),
        metadata={
            "expired": len(outcome.expired),
            "files_deleted": outcome.files_deleted,
            "files_already_gone": outcome.files_already_gone,
            "left_outside_storage": dg.MetadataValue.json(outcome.not_in_storage),
            "notifications_sent": len(delivery.sent),
            "notifications_failed": len(delivery.failed),
        },
    )


@dg.job(description="Delete export files past their expiry; retry failed webhook deliveries.")
def expire_exports_job():
    expire_old_exports()


expire_exports_schedule = dg.ScheduleDefinition(
    job=expire_exports_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:30 UTC.",
)
