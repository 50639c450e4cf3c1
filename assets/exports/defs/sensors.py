"""Sensors that turn queued export requests into runs, and failed runs into failed rows.

`export_request_sensor` claims pending `DataExportJob` rows on each tick (a cap per tick),
and asks for one `export_job` run per batch: typed `ExportConfig` naming the rows, and the
batch id as the run key, so a batch can never be launched twice. The claim itself is what
stops two ticks (or a tick and `goalport exports process`) from taking the same row; the
cursor is a watermark of the newest request claimed, for operators to read in the UI.

`export_run_failure_sensor` marks the rows of a run that failed (crashed, killed, out of
memory: whatever the run itself could not record) as failed with the reason.
"""

import datetime as dt
import json

import dagster as dg
import sqlalchemy as sa

from assets.exports.claims import (
    ADOPTED_BATCH_PREFIX,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PER_CLAIM,
    ClaimedBatch,
    claim_pending_exports,
    requeue_stranded_claims,
)
from assets.exports.defs.assets import ExportConfig, export_job
from assets.exports.job_rows import as_utc
from assets.exports.queue import fail_exports
from resources import schema
from resources.database import AppDatabase

EXPORT_BATCH_SIZE = DEFAULT_BATCH_SIZE
MAX_REQUESTS_PER_TICK = DEFAULT_MAX_PER_CLAIM
# A claim with no run after this long was lost between claiming and launching.
STRANDED_CLAIM_AFTER = dt.timedelta(minutes=10)
BATCH_TAG = "goalport/batch_id"


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
        run_config=dg.RunConfig(ops={"extracted_batch": config}),
        tags={
            BATCH_TAG: batch.batch_id,
            "goalport/format": batch.format,
            "goalport/requests": str(len(batch.job_ids)),
        },
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
    mark = {"createdAt": as_utc(newest.createdAt).isoformat(), "id": newest.id}
    if previous and (previous["createdAt"], previous["id"]) > (mark["createdAt"], mark["id"]):
        mark = previous
    return json.dumps(mark, sort_keys=True)


@dg.sensor(
    job=export_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Claims pending export requests and launches one export_job run per batch.",
)
def export_request_sensor(context: dg.SensorEvaluationContext, database: AppDatabase):
    """Queued export requests become batched runs (batch id = run key)."""
    instance = context.instance

    def has_run(batch_id: str) -> bool:
        return bool(instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch_id}), limit=1))

    requeued = requeue_stranded_claims(
        database.engine, older_than=STRANDED_CLAIM_AFTER, has_run=has_run
    )
    if requeued:
        context.log.warning(f"re-queued claims that never became runs: {', '.join(requeued)}")
    batches = claim_pending_exports(
        database.engine,
        max_requests=MAX_REQUESTS_PER_TICK,
        batch_size=EXPORT_BATCH_SIZE,
        claimant="sensor",
    )
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
    config = run.run_config.get("ops", {}).get("extracted_batch", {}).get("config", {})
    job_ids = config.get("job_ids") or []
    batch_ids = [b for b in (config.get("batch_id"), run.tags.get(BATCH_TAG)) if b]
    # A run launched without request rows recorded its own under the run's id.
    batch_ids.append(ADOPTED_BATCH_PREFIX + run.run_id)
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
        batch_ids=batch_ids,
        run_id=run.run_id,
    )
    context.log.info(f"marked {len(failed)} export requests failed")


def _root_cause(error) -> str:
    """The innermost error of a step failure: the user's exception, not Dagster's wrapper."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()
