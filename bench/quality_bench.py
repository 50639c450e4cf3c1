"""Data-quality benchmark: what the checks cost, as a share of the whole export run.

`run(database_url)` exports users of the seeded benchmark database twice per case, each
time in a fresh process: once the way goalport exports (the great-expectations suites on
each batch first, every file read back and proven complete), once the bare path (extract,
render in the process pool, write), to folders it deletes afterwards. The cases:
- the whole benchmark data set (GOALPORT_BENCH_QUALITY_USERS to take fewer) as JSON, in
  batches of 2,000 users in one process, the way an operator's export of everyone runs;
- 2,000 users in all four formats (XLSX is the slowest to read back);
- one request-sized batch (100 users, JSON): a Dagster run of the request sensor, where
  importing great_expectations is paid once for little work.
GOALPORT_BENCH_QUALITY_CASES=dataset,formats,request picks cases (default: all).

Reported, for each case:
- `gx_import_s`: importing great_expectations, once per process (a Dagster run is a
  process, so once per run);
- `quality_s`: the suites on the batches (one GX validation per table per batch);
- `quality_share`: (import + suites) / (import + the checked export): the target is under
  0.15 on the benchmark data set;
- `quality_share_warm`: suites / the checked export, for a process that has imported GX
  already (the CLI checking batch after batch, a long-lived worker);
- `checks_share`: everything the checks add (import, suites, reading every file back)
  over the checked run, from the difference with the bare export;
- the same shares of CPU time (`*_cpu`, rendering workers included), steadier than wall
  time on a machine that is busy with other work.
Nothing here asserts.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time

BATCH_USERS = 2000
REQUEST_BATCH_USERS = 100


def cases() -> dict[str, tuple[int | None, tuple[str, ...]]]:
    """label -> (users, or None for all of them; formats); GOALPORT_BENCH_QUALITY_CASES
    (comma-separated: dataset, formats, request) runs only some."""
    everyone = int(os.environ.get("GOALPORT_BENCH_QUALITY_USERS", "0")) or None
    every_format = ("json", "csv", "xlsx", "parquet")
    named = {
        "dataset": ("json, benchmark data set", everyone, ("json",)),
        "formats": ("json+csv+xlsx+parquet, 2,000 users", BATCH_USERS, every_format),
        "request": ("json, one request batch", REQUEST_BATCH_USERS, ("json",)),
    }
    chosen = os.environ.get("GOALPORT_BENCH_QUALITY_CASES", "").split(",")
    return {
        label: (n_users, formats)
        for key, (label, n_users, formats) in named.items()
        if key in chosen or chosen == [""]
    }


def run(database_url: str) -> dict:
    report = {}
    for label, (n_users, formats) in cases().items():
        measured = measure_quality_share(database_url, n_users=n_users, formats=formats)
        report[label] = measured
        print(
            f"{label} ({measured['users']} users): export {measured['export_s']:.1f} s "
            f"with checks, {measured['bare_export_s']:.1f} s without; great_expectations "
            f"import {measured['gx_import_s']:.1f} s + suites {measured['quality_s']:.1f} s = "
            f"{measured['quality_share']:.0%} of the run ({measured['quality_share_warm']:.0%} "
            f"once imported; {measured['quality_share_cpu']:.0%} of the CPU time); every "
            f"check together, reading back included, {measured['checks_share']:.0%} "
            f"({measured['checks_share_cpu']:.0%} of the CPU time)"
        )
    return report


def measure_quality_share(
    database_url: str, n_users: int | None = BATCH_USERS, formats: tuple[str, ...] = ("json",)
) -> dict:
    """The checked and the bare export of the same users, each in a fresh process."""
    checked = _in_fresh_process(_export_with_checks, database_url, n_users, formats)
    bare = _in_fresh_process(_export_without_checks, database_url, n_users, formats)
    run_s = checked["gx_import_s"] + checked["export_s"]
    run_cpu_s = checked["gx_import_cpu_s"] + checked["export_cpu_s"]
    return {
        **checked,
        "bare_export_s": bare["export_s"],
        "bare_export_cpu_s": bare["export_cpu_s"],
        "quality_share": (checked["gx_import_s"] + checked["quality_s"]) / run_s,
        "quality_share_warm": checked["quality_s"] / checked["export_s"],
        "quality_share_cpu": (checked["gx_import_cpu_s"] + checked["quality_cpu_s"]) / run_cpu_s,
        "checks_share": max(0.0, run_s - bare["export_s"]) / run_s,
        "checks_share_cpu": max(0.0, run_cpu_s - bare["export_cpu_s"]) / run_cpu_s,
    }


def _in_fresh_process(function, *args) -> dict:
    """`function(*args)` in a new process that may start its own rendering pool (a
    multiprocessing.Pool worker, as `bench.run.in_child` uses, may not)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _batches(database_url: str, n_users: int | None):
    from resources.database import AppDatabase

    database = AppDatabase(url=database_url)
    user_ids = database.all_user_ids()[:n_users]
    return database, [user_ids[i : i + BATCH_USERS] for i in range(0, len(user_ids), BATCH_USERS)]


def _export_with_checks(database_url: str, n_users: int | None, formats: tuple[str, ...]) -> dict:
    from assets.exports.batches import export_users
    from resources.storage import ObjectStorage

    database, batches = _batches(database_url, n_users)
    started, started_cpu = time.perf_counter(), time.process_time()
    import great_expectations  # noqa: F401  (timed on its own: once per process)

    gx_import_s, gx_import_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    totals = {"files": 0, "failed_users": 0, "quality_s": 0.0, "quality_cpu_s": 0.0}
    with tempfile.TemporaryDirectory() as root:
        storage = ObjectStorage(url=root)
        started, started_cpu = time.perf_counter(), _cpu_with_children()
        for user_ids in batches:
            result = export_users(database, storage, user_ids, formats)
            totals["files"] += len(result.files)
            totals["failed_users"] += len(result.failed_users)
            totals["quality_s"] += result.timings["quality"]
            totals["quality_cpu_s"] += result.timings["quality_cpu"]
        export_s, export_cpu_s = time.perf_counter() - started, _cpu_with_children() - started_cpu
    return {
        "users": sum(len(b) for b in batches),
        **totals,
        "gx_import_s": gx_import_s,
        "gx_import_cpu_s": gx_import_cpu_s,
        "export_s": export_s,
        "export_cpu_s": export_cpu_s,
    }


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its finished children (the rendering pool)."""
    import resource

    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _export_without_checks(
    database_url: str, n_users: int | None, formats: tuple[str, ...]
) -> dict:
    from assets.exports.batches import render_batch
    from assets.formats.registry import FORMATS
    from resources.storage import ObjectStorage
    from resources.storage_layout import export_key

    database, batches = _batches(database_url, n_users)
    exported_at = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as root:
        storage = ObjectStorage(url=root)
        started, started_cpu = time.perf_counter(), _cpu_with_children()
        for user_ids in batches:
            batch = database.extract(user_ids)
            rendered = render_batch(
                batch.per_user(), formats, exported_at=exported_at, filters=batch.filters.as_dict()
            )
            for user_id, files in rendered:
                for fmt, data in files.items():
                    storage.write_bytes(
                        export_key(user_id, FORMATS[fmt].extension, exported_at), data
                    )
        export_s, export_cpu_s = time.perf_counter() - started, _cpu_with_children() - started_cpu
    return {"export_s": export_s, "export_cpu_s": export_cpu_s}
