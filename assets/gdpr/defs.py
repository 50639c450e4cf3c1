"""GDPR in Dagster: bulk bundles for the whole user base, bucket by bucket, and erasures.

`gdpr_bundles` is partitioned by user-id hash bucket (`gdpr_bucket_partitions`): a backfill
of all partitions writes a bundle for every user, and a failed bucket is retried on its
own. A bucket is `assets.gdpr.bulk.user_bucket(user_id)` (first 32 bits of MD5, mod
BUCKET_COUNT), which PostgreSQL computes in the query that lists a bucket's users. The
count is fixed: partition keys must not change under a backfill, and 64 buckets of a
20,000-user base are about 300 users each, a few seconds of work to watch and retry. The
work itself is `assets.gdpr.bulk` (one query per table per chunk of users, rendering in
worker processes).

`due_erasures_sensor` launches `erasure_job` for the erasure requests whose grace period is
over (and for interrupted ones, which resume); the work is `assets.gdpr.erasure`, which
also forgets what Dagster itself remembers about the user (`DagsterRunHistory`, used by
`goalport gdpr erase` too). Dagster keeps its own record of every run, outside goalport's
tables: the run config and tags (an export launched by hand from the Launchpad or
`goalport export` names its users), and the event log (log lines, asset metadata, asset
check results). goalport's own runs name request, batch and bucket ids rather than users,
but an erasure must not rely on that: it deletes every run whose record or events mention
the user, and its verification searches them again. Deleting a run deletes its events and
captured logs, so a batch run that also exported other users goes from the run history as
a whole; their request rows keep what was done for them.
"""

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg

from assets.gdpr.bulk import (
    BUCKET_COUNT,
    DEFAULT_MAX_ROWS_PER_CHUNK,
    GdprBundleExporter,
    bucket_user_ids,
)
from assets.gdpr.erasure import due_erasure_requests, execute_due_erasures
from assets.gdpr.texts import load_gdpr_texts
from resources import run_policy
from resources.database import AppDatabase
from resources.storage import ObjectStorage

MAX_ERASURES_PER_RUN = 50
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
        "incomplete_users": dg.MetadataValue.json(result.incomplete_user_ids),
        "failed_users": dg.MetadataValue.json(result.failed),
    }
    context.log.info(
        f"bucket {bucket}: {len(bundles)} bundles for {len(user_ids)} users "
        f"in {result.seconds:.1f} s"
    )
    if result.failed:
        raise dg.Failure(
            description=f"{len(result.failed)} users of bucket {bucket} could not be exported: "
            + "; ".join(f"{u}: {why}" for u, why in list(result.failed.items())[:5]),
            metadata=metadata,
        )
    return dg.MaterializeResult(metadata=metadata)


gdpr_bulk_job = dg.define_asset_job(
    "gdpr_bulk_job",
    selection=[gdpr_bundles],
    tags=run_policy.job_tags(run_policy.GDPR_BULK),
    description="GDPR bundles for one user-id hash bucket; backfill every partition for all users.",
)


class DagsterRunHistory:
    """The runs of one Dagster instance; `keep_run_ids` (the erasure's own run) are never
    searched or deleted."""

    def __init__(self, instance: dg.DagsterInstance, keep_run_ids: Iterable[str] = ()):
        self.instance = instance
        self.keep_run_ids = frozenset(keep_run_ids)

    def runs_mentioning(self, needle: str) -> list[str]:
        """Ids of the runs whose config, tags or events contain `needle`."""
        return [run.run_id for run in self._runs() if self._mentions(run, needle)]

    def forget(self, needle: str) -> int:
        """Delete every run that mentions `needle`, with its events and its captured step
        output (which repeats the run's log lines); how many."""
        found = self.runs_mentioning(needle)
        for run_id in found:
            self.instance.compute_log_manager.delete_logs(prefix=[run_id])
            self.instance.delete_run(run_id)
        return len(found)

    def _runs(self) -> Iterator[dg.DagsterRun]:
        cursor = None
        while True:
            records = self.instance.get_run_records(limit=RUN_HISTORY_PAGE, cursor=cursor)
            for record in records:
                if record.dagster_run.run_id not in self.keep_run_ids:
                    yield record.dagster_run
            if len(records) < RUN_HISTORY_PAGE:
                return
            cursor = records[-1].dagster_run.run_id

    def _mentions(self, run: dg.DagsterRun, needle: str) -> bool:
        if needle in json.dumps([run.run_config, dict(run.tags)], default=str):
            return True
        return any(
            needle in dg.serialize_value(entry) for entry in self.instance.all_logs(run.run_id)
        )


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
    run_history = DagsterRunHistory(context.instance, keep_run_ids=[context.run_id])
    outcomes = execute_due_erasures(
        database.engine, storage, config.request_ids, run_history=run_history
    )
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
    """Due (and interrupted) erasure requests become one run; the run key names the
    requests and their states, so a request is launched once per state."""
    due = due_erasure_requests(database.engine, limit=MAX_ERASURES_PER_RUN)
    if not due:
        return dg.SkipReason("no erasure request is due")
    states = ",".join(f"{r.id}:{r.status}" for r in due)
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
    assets=[gdpr_bundles],
    jobs=[gdpr_bulk_job, erasure_job],
    sensors=[due_erasures_sensor],
)
