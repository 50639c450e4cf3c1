"""GDPR in Dagster: bulk bundles for the whole user base, bucket by bucket, and erasures.

`gdpr_bundles` is partitioned by user-id hash bucket (`gdpr_bucket_partitions`): a backfill
of all partitions writes a bundle for every user, and a failed bucket is retried on its
own. A bucket is `assets.gdpr.bulk.user_bucket(user_id)` (first 32 bits of MD5, mod
BUCKET_COUNT), which PostgreSQL computes in the query that lists a bucket's users. The
count is fixed: partition keys must not change under a backfill, and 64 buckets of a
20,000-user base are about 300 users each, a few seconds of work to watch and retry. The
work itself is `assets.gdpr.bulk` (one query per table per chunk of users, rendering in
worker processes).

`gdpr_request_sensor` answers the bundles users ask for (`POST /api/v1/gdpr/export`:
`DataExportJob` rows of exportType "gdpr", `assets.gdpr.requests`): each tick requeues dead
claims, claims the pending requests into batches and launches one `gdpr_request_job` run per
batch, keyed by the batch id; the run's config names the request rows, never the users.
`gdpr_request_run_failure_sensor` fails the rows of a run that died, with the reason.

`due_erasures_sensor` launches `erasure_job` for the erasure requests whose grace period is
over (and for interrupted ones, which resume); the work is `assets.gdpr.erasure`, which
also forgets what Dagster itself remembers about the user (`DagsterRunHistory`, used by
`goalport gdpr erase` too). Dagster keeps its own record of every run, outside goalport's
tables: run config and tags, run keys, sensor cursors and ticks, the event log (log lines,
asset metadata, asset check results) and captured step output. goalport writes no user id
into any of them (batch, job and bucket ids, pseudonyms), so the erasure looks only where
one may still be: the runs that read the user's data (an error's text, printed output).
It deletes their captured output, deletes those whose records name the user (an export
launched by hand naming users, say), and searches them again to verify; a batch run
deleted as a whole takes other users' run records along, their request rows keep what was
done for them.
"""

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import sqlalchemy as sa

from assets.backups.defs import BATCH_TAG as BACKUP_BATCH_TAG
from assets.exports.defs import BATCH_TAG as EXPORT_BATCH_TAG
from assets.exports.defs import RUN_WAITING_STATUSES, launched_config
from assets.exports.queue import fail_exports
from assets.gdpr.bulk import (
    BUCKET_COUNT,
    DEFAULT_MAX_ROWS_PER_CHUNK,
    GdprBundleExporter,
    bucket_user_ids,
    user_bucket,
)
from assets.gdpr.erasure import (
    due_erasure_requests,
    execute_due_erasures,
)
from assets.gdpr.requests import (
    ClaimedGdprBatch,
    claim_gdpr_requests,
    process_gdpr_batch,
    requeue_stale_gdpr_claims,
)
from assets.gdpr.texts import load_gdpr_texts
from assets.imports.defs import IMPORT_JOB_TAG
from resources import run_policy, schema, settings
from resources.audit import subject_ref
from resources.database import AppDatabase
from resources.storage import ObjectStorage

MAX_ERASURES_PER_RUN = 50
GDPR_BATCH_TAG = "goalport/gdpr_batch_id"
# Runs read per page while searching Dagster's run history.
RUN_HISTORY_PAGE = 200


def bucket_key(bucket: int) -> str:
    return f"{bucket:02d}"


gdpr_bucket_partitions = dg.StaticPartitionsDefinition([bucket_key(b) for b in range(BUCKET_COUNT)])


class GdprBulkConfig(dg.Config):
    """Where the bundles go and how the bucket is processed."""

    out_url: str | None = None  # a folder or s3:// URL; None: the storage resource
    workers: int | None = None  # rendering processes; None: one per core
    max_rows_per_chunk: int = DEFAULT_MAX_ROWS_PER_CHUNK


@dg.asset(
    partitions_def=gdpr_bucket_partitions,
    group_name="gdpr",
    kinds={"postgres", "zip", "s3"},
    pool=run_policy.APP_DATABASE_POOL,
)
def gdpr_bundles(
    context: dg.AssetExecutionContext,
    config: GdprBulkConfig,
    database: AppDatabase,
    storage: ObjectStorage,
) -> dg.MaterializeResult:
    """A GDPR bundle (README.html, JSON, CSV, processing records, manifest) for every user
    in one hash bucket, at gdpr/<user>/<time>.zip; each bundle's completeness is checked
    against the live database."""
    bucket = int(context.partition_key)
    user_ids = bucket_user_ids(database.engine, bucket)
    target = ObjectStorage(url=config.out_url) if config.out_url else storage
    with GdprBundleExporter(
        database,
        target,
        texts=load_gdpr_texts(),
        workers=config.workers,
        max_rows_per_chunk=config.max_rows_per_chunk,
        actor=f"dagster:{context.run.run_id}",
    ) as exporter:
        result = exporter.export(user_ids)
    bundles = result.bundles
    # No file URLs here: they name users, and an erasure deletes every run naming its user.
    metadata: dict[str, Any] = {
        "bucket": bucket,
        "users": len(user_ids),
        "bundles": len(bundles),
        "bytes": sum(b.stored.size for b in bundles),
        "records": sum(b.records for b in bundles),
        "chunks": result.chunks,
        "seconds": round(result.seconds, 2),
        "users_per_second": round(len(bundles) / result.seconds, 1) if result.seconds else 0.0,
        # pseudonyms (the audit log's subjectRef), never user ids
        "incomplete_users": dg.MetadataValue.json(
            sorted(subject_ref(u) for u in result.incomplete_user_ids)
        ),
        "failed_users": dg.MetadataValue.json(sorted(subject_ref(u) for u in result.failed)),
    }
    context.log.info(
        f"bucket {bucket}: {len(bundles)} bundles for {len(user_ids)} users "
        f"in {result.seconds:.1f} s"
    )
    if result.failed:
        # the reasons name their users (keys, values): the pseudonyms are in the metadata
        raise dg.Failure(
            description=f"{len(result.failed)} users of bucket {bucket} could not be exported",
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)


gdpr_bulk_job = dg.define_asset_job(
    "gdpr_bulk_job",
    selection=[gdpr_bundles],
    tags=run_policy.job_tags(run_policy.GDPR_BULK),
    description="GDPR bundles for one user-id hash bucket; backfill every partition for all users.",
)


@dataclass(frozen=True)
class DagsterRecordsSweep:
    """What an erasure searched in Dagster's records and what it deleted: counts only, for
    the receipt. `scope` says which runs were searched: "the user's runs" (found through
    goalport's job rows, audit entries and the user's GDPR bucket) or "every run" (no
    database to find them through)."""

    scope: str
    record_kinds: tuple[str, ...]
    runs_searched: int
    runs_deleted: int
    compute_logs_deleted: int
    runs_still_naming_user: int

    def as_receipt(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "recordKinds": list(self.record_kinds),
            "runsSearched": self.runs_searched,
            "runsDeleted": self.runs_deleted,
            "computeLogsDeleted": self.compute_logs_deleted,
            "runsStillNamingUser": self.runs_still_naming_user,
        }


# Where a user id could still be after goalport stopped writing it into Dagster: a step's
# error text (it may quote a storage key) or its printed output, in runs that read the user.
SEARCHED_RECORD_KINDS = ("run config", "run tags", "event log", "compute logs")
USERS_RUNS, EVERY_RUN = "the user's runs", "every run"
TAG_VALUES_PER_QUERY = 500


class DagsterRunHistory:
    """Dagster's records of the runs that handled one user, for an erasure.

    goalport writes no user id into Dagster (run config, tags, run keys, cursors, metadata
    and log lines name batches, jobs, buckets and pseudonyms), so the only records that may
    still hold one are those of the runs that read the user's data: an error's text, or
    what a step printed (compute logs). Those runs are found through goalport's tables
    (`engine`): the user's export and backup rows (run id, batch id), import jobs, audit
    entries (which keep job, batch and run ids after an erasure), and the GDPR bulk runs
    of the user's bucket; so an erasure's cost follows the user's runs, not the instance's.
    Without an engine every run is searched. `remember` collects a user's runs before the
    erasure deletes the rows that lead to them. `keep_run_ids` (the erasure's own run) are
    never searched or deleted.
    """

    def __init__(
        self,
        instance: dg.DagsterInstance,
        keep_run_ids: Iterable[str] = (),
        engine: sa.Engine | None = None,
    ):
        self.instance = instance
        self.keep_run_ids = frozenset(keep_run_ids)
        self.engine = engine
        self.remembered: dict[str, set[str]] = {}
        self.sweeps: dict[str, DagsterRecordsSweep] = {}

    def remember(self, user_id: str, run_ids: Iterable[str] = ()) -> list[str]:
        """Find the user's runs now, while their job rows exist, together with `run_ids`
        (found by an earlier attempt of the erasure); later calls include them all."""
        known = self.remembered.setdefault(user_id, set())
        known.update(run_ids)
        known.update(self.user_run_ids(user_id))
        return sorted(known - self.keep_run_ids)

    def user_run_ids(self, user_id: str) -> list[str]:
        """Ids of the runs that may hold records of the user (see the class docstring)."""
        if self.engine is None:
            return [r.dagster_run.run_id for r in self._all_run_records()]
        run_ids, tag_values = _user_run_refs(self.engine, user_id)
        run_ids |= self.remembered.get(user_id, set())
        for tag, values in tag_values.items():
            run_ids |= self._run_ids_tagged(tag, sorted(values))
        bucket_runs = self.instance.get_run_ids(
            filters=dg.RunsFilter(
                job_name=gdpr_bulk_job.name,
                tags={"dagster/partition": bucket_key(user_bucket(user_id))},
            )
        )
        run_ids.update(bucket_runs)
        return sorted(run_ids - self.keep_run_ids)

    def runs_mentioning(self, needle: str) -> list[str]:
        """Ids of the user's runs whose config, tags or events contain `needle` (the user's
        id: the erasure's verification)."""
        return [
            run.run_id
            for run in self._runs(self.user_run_ids(needle))
            if self._mentions(run, needle)
        ]

    def sweep(self, user_id: str) -> DagsterRecordsSweep:
        """Delete the compute logs of every run of the user (what a step printed may be
        theirs), and the runs whose records name them, with their events; then search the
        runs again. The result is also kept in `sweeps`."""
        runs = list(self._runs(self.user_run_ids(user_id)))
        deleted = logs_deleted = 0
        for run in runs:
            mentions = self._mentions(run, user_id)
            # searching every run, which of them read the user is unknown: only those naming
            # them lose their captured output
            if mentions or self.engine is not None:
                self.instance.compute_log_manager.delete_logs(prefix=[run.run_id])
                logs_deleted += 1
            if mentions:
                self.instance.delete_run(run.run_id)
                deleted += 1
        result = DagsterRecordsSweep(
            scope=EVERY_RUN if self.engine is None else USERS_RUNS,
            record_kinds=SEARCHED_RECORD_KINDS,
            runs_searched=len(runs),
            runs_deleted=deleted,
            compute_logs_deleted=logs_deleted,
            runs_still_naming_user=len(self.runs_mentioning(user_id)),
        )
        self.sweeps[user_id] = result
        return result

    def forget(self, needle: str) -> int:
        """`sweep` the user named by `needle`; how many runs were deleted."""
        return self.sweep(needle).runs_deleted

    def _run_ids_tagged(self, tag: str, values: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(values), TAG_VALUES_PER_QUERY):
            chunk = values[i : i + TAG_VALUES_PER_QUERY]
            found.update(self.instance.get_run_ids(filters=dg.RunsFilter(tags={tag: chunk})))
        return found

    def _runs(self, run_ids: list[str]) -> Iterator[dg.DagsterRun]:
        for i in range(0, len(run_ids), RUN_HISTORY_PAGE):
            chunk = run_ids[i : i + RUN_HISTORY_PAGE]
            for record in self.instance.get_run_records(filters=dg.RunsFilter(run_ids=chunk)):
                yield record.dagster_run

    def _all_run_records(self) -> Iterator[dg.RunRecord]:
        cursor = None
        while True:
            records = self.instance.get_run_records(limit=RUN_HISTORY_PAGE, cursor=cursor)
            for record in records:
                if record.dagster_run.run_id not in self.keep_run_ids:
                    yield record
            if len(records) < RUN_HISTORY_PAGE:
                return
            cursor = records[-1].dagster_run.run_id

    def _mentions(self, run: dg.DagsterRun, needle: str) -> bool:
        if needle in json.dumps([run.run_config, dict(run.tags)], default=str):
            return True
        return any(
            needle in dg.serialize_value(entry) for entry in self.instance.all_logs(run.run_id)
        )


def _user_run_refs(engine: sa.Engine, user_id: str) -> tuple[set[str], dict[str, set[str]]]:
    """Run ids and goalport run-tag values (batch and import job ids) that lead to the
    user's runs, from the user's export/backup and import rows and audit entries."""
    exports, imports, audit = schema.data_export_job, schema.data_import_job, schema.data_audit_log
    run_ids: set[str | None] = set()
    batch_ids: set[str | None] = set()
    job_ids: set[str | None] = set()
    with engine.connect() as conn:
        for run_id, batch_id in conn.execute(
            sa.select(exports.c.runId, exports.c.batchId).where(exports.c.userId == user_id)
        ):
            run_ids.add(run_id)
            batch_ids.add(batch_id)
        job_ids.update(conn.scalars(sa.select(imports.c.id).where(imports.c.userId == user_id)))
        details = conn.scalars(
            sa.select(audit.c.details).where(
                sa.or_(audit.c.userId == user_id, audit.c.subjectRef == subject_ref(user_id))
            )
        )
        for text in details:
            entry = json.loads(text) if text else {}
            if isinstance(entry, dict):
                run_ids.add(entry.get("runId"))
                batch_ids.add(entry.get("batchId"))
                job_ids.add(entry.get("jobId"))
    batches = {str(b) for b in batch_ids if b}
    tags = {
        EXPORT_BATCH_TAG: batches,
        BACKUP_BATCH_TAG: batches,
        GDPR_BATCH_TAG: batches,
        IMPORT_JOB_TAG: {str(j) for j in job_ids if j},
    }
    return {str(r) for r in run_ids if r}, tags


class GdprRequestConfig(dg.Config):
    """The GDPR request rows one run answers (they name the users; the run does not)."""

    job_ids: list[str]
    batch_id: str


@dg.asset(
    group_name="gdpr",
    kinds={"postgres", "zip", "s3"},
    pool=run_policy.APP_DATABASE_POOL,
)
def requested_gdpr_bundles(
    context: dg.AssetExecutionContext,
    config: GdprRequestConfig,
    database: AppDatabase,
    storage: ObjectStorage,
) -> dg.MaterializeResult:
    """The GDPR bundles users asked for, one per request row, each row completed with its
    download as its bundle is written (or failed with the reason)."""
    outcome = process_gdpr_batch(
        database,
        storage,
        config.job_ids,
        config.batch_id,
        run_id=context.run.run_id,
        texts=load_gdpr_texts(),
    )
    if outcome.error:
        # the message may quote a user's storage key: it is on their rows, not here
        raise dg.Failure(description=f"GDPR request batch {config.batch_id} failed")
    return dg.MaterializeResult(
        metadata={
            "batch_id": config.batch_id,
            "requests_completed": len(outcome.completed),
            "requests_failed": dg.MetadataValue.json(sorted(outcome.failed)),
            "bytes": outcome.bytes_written,
        }
    )


gdpr_request_job = dg.define_asset_job(
    "gdpr_request_job",
    selection=[requested_gdpr_bundles],
    executor_def=dg.in_process_executor,
    tags=run_policy.job_tags(run_policy.EXPORTS),
    description="GDPR bundles asked for through the API, one batch of requests per run.",
)


def gdpr_request_run_request(batch: ClaimedGdprBatch) -> dg.RunRequest:
    config = GdprRequestConfig(job_ids=list(batch.job_ids), batch_id=batch.batch_id)
    return dg.RunRequest(
        run_key=batch.batch_id,
        run_config=dg.RunConfig(ops={requested_gdpr_bundles.op.name: config}),
        tags={GDPR_BATCH_TAG: batch.batch_id, "goalport/requests": str(len(batch.job_ids))},
    )


@dg.sensor(
    job=gdpr_request_job,
    minimum_interval_seconds=settings.request_tick_seconds(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Claims the GDPR bundles users asked for and launches one run per batch.",
)
def gdpr_request_sensor(context: dg.SensorEvaluationContext, database: AppDatabase):
    instance = context.instance

    def run_not_started(batch_id: str) -> bool:
        waiting = dg.RunsFilter(tags={GDPR_BATCH_TAG: batch_id}, statuses=RUN_WAITING_STATUSES)
        return bool(instance.get_runs(filters=waiting, limit=1))

    stale = requeue_stale_gdpr_claims(database.engine, is_waiting=run_not_started)
    if stale.requeued or stale.failed:
        context.log.warning(
            f"GDPR claims whose run stopped beating: {len(stale.requeued)} requeued, "
            f"{len(stale.failed)} failed for good"
        )
    batches = claim_gdpr_requests(database.engine)
    if not batches:
        return dg.SkipReason("no GDPR bundle was asked for")
    context.log.info(
        f"claimed {sum(len(b.job_ids) for b in batches)} GDPR requests in {len(batches)} runs"
    )
    return [gdpr_request_run_request(b) for b in batches]


@dg.run_failure_sensor(
    monitored_jobs=[gdpr_request_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks the GDPR requests of a failed gdpr_request_job run as failed, with why.",
)
def gdpr_request_run_failure_sensor(context: dg.RunFailureSensorContext, database: AppDatabase):
    run = context.dagster_run
    try:
        config = launched_config(run, requested_gdpr_bundles, GdprRequestConfig)
    except ValueError as exc:
        context.log.warning(f"run {run.run_id}: its config no longer validates ({exc})")
        config = None
    batch_ids = [b for b in (run.tags.get(GDPR_BATCH_TAG), config and config.batch_id) if b]
    failed = fail_exports(
        database.engine,
        f"GDPR bundle run {run.run_id} failed: {context.failure_event.message or 'the run failed'}",
        batch_ids=batch_ids,
        run_id=run.run_id,
    )
    context.log.info(f"marked {len(failed)} GDPR requests failed")


class ErasureRunConfig(dg.Config):
    """The erasure requests to carry out; empty: every due one."""

    request_ids: list[str] = []


@dg.op
def erase_users(
    context: dg.OpExecutionContext,
    config: ErasureRunConfig,
    database: AppDatabase,
    storage: ObjectStorage,
) -> dg.Output[int]:
    """Erase each requested user (one transaction each), delete their files and the runs
    that mention them, verify that nothing is left, and record a receipt without personal
    data."""
    run_history = DagsterRunHistory(
        context.instance, keep_run_ids=[context.run_id], engine=database.engine
    )
    request_ids = config.request_ids or [
        r.id for r in due_erasure_requests(database.engine, limit=MAX_ERASURES_PER_RUN)
    ]
    outcomes = execute_due_erasures(database.engine, storage, request_ids, run_history=run_history)
    failed = [o for o in outcomes if not o.verified]
    for outcome in outcomes:
        receipt = outcome.receipt
        context.log.info(
            f"erasure {outcome.request.id} ({outcome.request.subject_ref}): "
            f"{outcome.request.status}, {sum(receipt.get('rowsDeleted', {}).values())} rows, "
            f"{sum(receipt.get('storageObjectsDeleted', {}).values())} files"
        )
    if failed:
        raise dg.Failure(
            description="; ".join(f"{o.request.id}: {o.request.error_message}" for o in failed)
        )
    return dg.Output(
        len(outcomes),
        metadata={
            "erased": len(outcomes),
            "requests": dg.MetadataValue.json([o.request.id for o in outcomes]),
        },
    )


@dg.job(
    description="Carry out erasure requests whose grace period is over.",
    tags=run_policy.job_tags(run_policy.ERASURE),
)
def erasure_job():
    erase_users()


@dg.sensor(
    job=erasure_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches erasure_job for erasure requests past their grace period.",
)
def due_erasures_sensor(context: dg.SensorEvaluationContext, database: AppDatabase):
    """Due (interrupted, and failed past their back-off) erasure requests become one run;
    the run key names the requests, their states and failures so far, so a request is
    launched once per state and once per retry."""
    due = due_erasure_requests(database.engine, limit=MAX_ERASURES_PER_RUN)
    if not due:
        return dg.SkipReason("no erasure request is due")
    states = ",".join(f"{r.id}:{r.status}:{r.attempts}" for r in due)
    run_key = "erasure-" + hashlib.sha256(states.encode()).hexdigest()[:24]
    context.log.info(f"{len(due)} erasure requests due")
    return dg.RunRequest(
        run_key=run_key,
        run_config=dg.RunConfig(
            ops={"erase_users": ErasureRunConfig(request_ids=[r.id for r in due])}
        ),
        tags={"goalport/erasures": str(len(due))},
    )


defs = dg.Definitions(
    assets=[gdpr_bundles, requested_gdpr_bundles],
    jobs=[gdpr_bulk_job, gdpr_request_job, erasure_job],
    sensors=[due_erasures_sensor, gdpr_request_sensor, gdpr_request_run_failure_sensor],
)
