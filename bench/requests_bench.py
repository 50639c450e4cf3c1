"""Export request benchmark: request-to-file latency for one user through the sensor path,
and throughput for 1,000 queued requests (sensor claims, one run per batch of 100).

`run(database_url)` takes the URL of a seeded goalport database (the one `bench/run.py`
prepares), queues its requests there with a marker, writes files to a temporary folder,
and removes every row and file it made before returning. Runs execute in this process
(`execute_in_process`), one after another: a deployment adds the sensor interval (15 s at
most) and the run launch (about 8 s for a subprocess run, PERFORMANCE.md) to the latency,
and runs batches on several workers at once. Nothing here asserts; it reports.
"""

from __future__ import annotations

import datetime as dt
import shutil
import statistics
import tempfile
import time
import uuid

import sqlalchemy as sa

THROUGHPUT_REQUESTS = 1000
LATENCY_SAMPLES = 3


def run(database_url: str) -> dict:
    import dagster as dg

    from assets.exports.defs import EXPORT_BATCH_SIZE, export_request_sensor
    from assets.exports.queue import request_export
    from pipelines.definitions import defs
    from resources import schema
    from resources.database import AppDatabase
    from resources.storage import ObjectStorage

    marker = f"bench:{uuid.uuid4().hex[:8]}"
    started_at = dt.datetime.now(dt.UTC)
    folder = tempfile.mkdtemp(prefix="goalport-requests-bench-")
    database = AppDatabase(url=database_url)
    storage = ObjectStorage(url=folder)
    engine = database.engine
    export_job = defs.resolve_job_def("export_job")
    jobs = schema.data_export_job
    _remove_leftovers(engine)
    with engine.connect() as conn:
        pending = conn.execute(
            sa.select(sa.func.count()).where(jobs.c.status == "pending")
        ).scalar_one()
    if pending:
        print(f"   note: {pending} requests were already pending; the sensor claims them too")

    def tick(instance) -> list:
        with dg.build_sensor_context(instance=instance, resources={"database": database}) as ctx:
            result = export_request_sensor(ctx)
        return list(getattr(result, "run_requests", None) or [])

    def execute(run_request, instance) -> None:
        result = export_job.execute_in_process(
            run_config=run_request.run_config,
            instance=instance,
            tags=run_request.tags,
            resources={"database": database, "storage": storage},
        )
        if not result.success:
            raise RuntimeError(f"export run for {run_request.run_key} failed")

    try:
        user_ids = _typical_users(engine, THROUGHPUT_REQUESTS + LATENCY_SAMPLES)
        latency = []
        with dg.DagsterInstance.ephemeral() as instance:
            for user_id in user_ids[:LATENCY_SAMPLES]:
                begun = time.perf_counter()
                job_id = request_export(engine, user_id, "json", requested_by=marker)
                run_requests = tick(instance)
                claimed = time.perf_counter()
                for run_request in run_requests:
                    execute(run_request, instance)
                done = time.perf_counter()
                _check_completed(engine, [job_id])
                latency.append(
                    {"tick_s": claimed - begun, "run_s": done - claimed, "total_s": done - begun}
                )

            queued_users = user_ids[LATENCY_SAMPLES:]
            begun = time.perf_counter()
            job_ids = [
                request_export(engine, user_id, "json", requested_by=marker)
                for user_id in queued_users
            ]
            queued = time.perf_counter()
            run_requests = tick(instance)
            claimed = time.perf_counter()
            for run_request in run_requests:
                execute(run_request, instance)
            done = time.perf_counter()
            _check_completed(engine, job_ids)
        bytes_written = sum(storage.info(key)["size"] for key in storage.list("exports"))
    finally:
        _clean_up(engine, marker, started_at)
        shutil.rmtree(folder, ignore_errors=True)
        engine.dispose()

    warm = latency[1:] or latency
    result = {
        "latency_one_user": {
            "cold_total_s": latency[0]["total_s"],
            "warm_median_total_s": statistics.median(r["total_s"] for r in warm),
            "warm_median_tick_s": statistics.median(r["tick_s"] for r in warm),
            "warm_median_run_s": statistics.median(r["run_s"] for r in warm),
            "samples": latency,
        },
        "throughput": {
            "requests": len(job_ids),
            "batch_size": EXPORT_BATCH_SIZE,
            "runs": len(run_requests),
            "queue_insert_s": queued - begun,
            "claim_tick_s": claimed - queued,
            "runs_s": done - claimed,
            "total_s": done - begun,
            "requests_per_s": len(job_ids) / (done - begun),
            "mib_written": bytes_written / 2**20,
        },
    }
    lat, thr = result["latency_one_user"], result["throughput"]
    print(
        "request -> file for one user through the sensor path (json): "
        f"{lat['warm_median_total_s']:.2f} s warm (tick {lat['warm_median_tick_s']:.2f} s, "
        f"run {lat['warm_median_run_s']:.2f} s), {lat['cold_total_s']:.2f} s cold\n"
        f"{thr['requests']} queued requests (json): queued in {thr['queue_insert_s']:.1f} s, "
        f"claimed in one tick ({thr['claim_tick_s']:.2f} s, {thr['runs']} runs of "
        f"<= {thr['batch_size']}), exported in {thr['runs_s']:.1f} s: "
        f"{thr['requests_per_s']:.1f} requests/s end to end, {thr['mib_written']:.0f} MiB"
    )
    return result


def _typical_users(engine: sa.Engine, count: int) -> list[str]:
    """Users with an ordinary amount of data (heavy users are a different benchmark)."""
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    'SELECT u.id FROM "User" u WHERE (SELECT count(*) FROM "Progress" p '
                    'WHERE p."userId" = u.id) < 2000 ORDER BY u.id LIMIT :n'
                ),
                {"n": count},
            ).scalars()
        )


def _check_completed(engine: sa.Engine, job_ids: list[str]) -> None:
    from resources import schema

    jobs = schema.data_export_job
    with engine.connect() as conn:
        statuses = conn.execute(
            sa.select(jobs.c.status, sa.func.count())
            .where(jobs.c.id.in_(job_ids))
            .group_by(jobs.c.status)
        ).all()
    if dict(statuses) != {"completed": len(job_ids)}:
        raise RuntimeError(f"requests did not all complete: {dict(statuses)}")


def _remove_leftovers(engine: sa.Engine) -> None:
    """Rows of an earlier benchmark run that was interrupted."""
    from resources import schema

    jobs = schema.data_export_job
    with engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.requestedBy.like("bench:%")))


def _clean_up(engine: sa.Engine, marker: str, started_at: dt.datetime) -> None:
    from resources import schema

    jobs, audit, outbox = schema.data_export_job, schema.data_audit_log, schema.notification_outbox
    with engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.requestedBy == marker))
        conn.execute(audit.delete().where(audit.c.actor == marker))
        conn.execute(
            outbox.delete().where(outbox.c.createdAt >= started_at, outbox.c.kind.like("export.%"))
        )
