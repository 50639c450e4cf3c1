"""One run-failure sensor for all of goalport's jobs: a failed run (crashed, killed, out of
time, or a step that ran out of retries) is POSTed to GOALPORT_ALERT_WEBHOOK_URL, signed
(`resources.alerts`), naming the job, the run, its kind and its batch, never a user.

The areas' own failure sensors fail their rows; this one only tells the operators. An alert
that could not be sent fails the sensor's tick, so the daemon's tick history says why.
"""

import dagster as dg

from resources.alerts import message_without_users, run_failed_alert, send_alert
from resources.database import AppDatabase
from resources.run_policy import KIND_TAG

BATCH_TAG = "goalport/batch_id"


@dg.run_failure_sensor(
    monitor_all_code_locations=False,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="POSTs a signed alert (job, run, kind, batch; no user) for every failed run.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, database: AppDatabase):
    run = context.dagster_run
    alert = run_failed_alert(
        job=run.job_name,
        run_id=run.run_id,
        kind=run.tags.get(KIND_TAG),
        batch_id=run.tags.get(BATCH_TAG),
        message=message_without_users(database.engine, context.failure_event.message),
    )
    error = send_alert(alert)
    if error:
        raise RuntimeError(f"alert for run {run.run_id} not sent: {error}")
    context.log.info(f"alerted on failed run {run.run_id} of {run.job_name}")


defs = dg.Definitions(sensors=[run_failure_alert_sensor])
