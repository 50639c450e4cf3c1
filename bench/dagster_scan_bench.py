"""The erasure's search of Dagster's records for one user, with 100, 1,000 and 5,000
unrelated runs in the instance: the goal is a flat line, since the erasure looks only at
the user's runs (found through goalport's rows and the user's GDPR bucket). The old way,
every run's config, tags and events searched, is measured on the same instance as the
baseline.

`run(database_url)` reads the seeded database (one user's rows, never written) and keeps
its Dagster instance (SQLite) in a temporary folder, removed before returning. Runs are
added directly to the run storage (`add_run`) with one event each, in one event table
(as on PostgreSQL); the user's own runs are three GDPR bulk runs of their bucket, with
twenty events each. Nothing here asserts; it reports.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid

import sqlalchemy as sa

RUN_COUNTS = (100, 1000, 5000)
USER_RUNS = 3
REPEATS = 3


def run(database_url: str) -> dict:
    import dagster as dg

    from assets.gdpr.bulk import user_bucket
    from assets.gdpr.defs import DagsterRunHistory, bucket_key, gdpr_bulk_job
    from resources import schema

    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        user_id = conn.execute(sa.select(schema.user.c.id).limit(1)).scalar_one()
    folder = tempfile.mkdtemp(prefix="goalport-dagster-scan-bench-")
    report: dict = {"user_runs": USER_RUNS, "by_unrelated_runs": {}}
    # one event table for every run, as on PostgreSQL (SQLite's default is a file per run)
    events = {
        "module": "dagster.core.storage.event_log",
        "class": "ConsolidatedSqliteEventLogStorage",
        "config": {"base_dir": f"{folder}/events"},
    }
    with dg.instance_for_test(temp_dir=folder, overrides={"event_log_storage": events}) as instance:

        def add_run(job_name: str, tags: dict[str, str], steps: int = 1) -> None:
            added = instance.add_run(
                dg.DagsterRun(job_name=job_name, run_id=str(uuid.uuid4()), tags=tags)
            )
            for step in range(steps):
                instance.report_engine_event(f"step {step} done for a batch", added)

        bucket = bucket_key(user_bucket(user_id))
        for _ in range(USER_RUNS):
            add_run(gdpr_bulk_job.name, {"dagster/partition": bucket}, steps=20)
        scoped = DagsterRunHistory(instance, engine=engine)
        everything = DagsterRunHistory(instance)
        present = 0
        for count in RUN_COUNTS:
            for i in range(present, count):
                add_run("export_job", {"goalport/batch_id": f"sb_bench_{i}"})
            present = count
            sweep_ms = _median_ms(lambda: scoped.sweep(user_id))
            full_ms = _median_ms(lambda: everything.runs_mentioning(user_id), repeats=1)
            searched = scoped.sweeps[user_id].runs_searched
            report["by_unrelated_runs"][count] = {
                "scoped_sweep_ms": round(sweep_ms, 1),
                "runs_searched": searched,
                "every_run_search_ms": round(full_ms, 1),
            }
            print(
                f"{count:>5} unrelated runs: the erasure's sweep {sweep_ms:7.1f} ms "
                f"({searched} runs searched); searching every run {full_ms:8.1f} ms"
            )
    engine.dispose()
    first, last = (report["by_unrelated_runs"][n] for n in (RUN_COUNTS[0], RUN_COUNTS[-1]))
    report["scoped_ratio"] = round(last["scoped_sweep_ms"] / first["scoped_sweep_ms"], 2)
    report["every_run_ratio"] = round(last["every_run_search_ms"] / first["every_run_search_ms"], 2)
    print(
        f"   {RUN_COUNTS[-1]} vs {RUN_COUNTS[0]} runs: the erasure's sweep x{report['scoped_ratio']}"
        f" (flat is the goal), searching every run x{report['every_run_ratio']}"
    )
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    return report


def _median_ms(action, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)
