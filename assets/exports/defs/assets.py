"""Export assets: a batch of users extracted and checked once, then rendered and written.

The run config names the users (or, from the request sensor, the request rows that name
them), formats and filters (typed `ExportConfig`); the extracted batch carries them on to
rendering, so a run is configured in one place. It carries the data-quality report too:
the suites run once, in `extracted_batch`, and both the blocking checks
(`assets.quality.defs`) and `export_files` read that report.
"""

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from assets.exports.batches import check_formats, make_filter, write_batch
from assets.exports.notifications import deliver_notifications
from assets.exports.progress import ExportBatchProgress, restrict_batch, track_export_run
from assets.quality.report import QualityReport
from assets.quality.suites import check_batch_quality
from resources.database import AppDatabase, ExtractedBatch
from resources.run_memory import IN_RUN_MEMORY
from resources.storage import ObjectStorage


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


@dg.asset(group_name="export", kinds={"postgres", "arrow"}, io_manager_key=IN_RUN_MEMORY)
def extracted_batch(
    context: dg.AssetExecutionContext, config: ExportConfig, database: AppDatabase
) -> dg.Output[ExportBatch]:
    """Every app table's rows for the batch's users (one query per table, not per user),
    validated by the data-quality suites: one great-expectations run per batch, whose
    report the blocking checks and the render step share."""
    formats = check_formats(config.formats)
    filters = make_filter(config.modules, config.since, config.until)
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
        extracted = database.extract(progress.user_ids, filters)
        progress.started(extracted)
        quality = check_batch_quality(extracted)
    except Exception as exc:
        progress.abort(f"{type(exc).__name__}: {exc}")
        deliver_notifications(database.engine, ids=progress.notification_ids)
        raise
    missing = sorted(set(config.user_ids) - extracted.found_user_ids)
    if missing:
        context.log.warning(f"no such users, skipped: {', '.join(missing)}")
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


@dg.asset(group_name="export", kinds={"json", "csv", "xlsx", "parquet", "s3"})
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
        result = write_batch(
            restrict_batch(extracted_batch.extracted, progress.user_ids),
            storage,
            extracted_batch.formats,
            exported_at=extracted_batch.requested_at,
            quality=extracted_batch.quality,
            on_user_done=progress.user_done,
            key_suffix=progress.key_suffix,
        )
    except Exception as exc:
        progress.abort(f"{type(exc).__name__}: {exc}")
        deliver_notifications(database.engine, ids=progress.notification_ids)
        raise
    outcome = progress.finished(result)
    deliver_notifications(database.engine, ids=progress.notification_ids)
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
            "requests_failed": dg.MetadataValue.json(outcome.failed),
        }
    )


export_job = dg.define_asset_job(
    "export_job",
    selection=[extracted_batch, export_files],
    executor_def=dg.in_process_executor,
    description="Export a batch of users in the chosen formats (one query per table per batch).",
)
