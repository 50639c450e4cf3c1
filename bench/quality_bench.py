"""Data-quality benchmark: what the checks cost, as a share of the whole export run.

`run(database_url)` exports the first 2,000 users of the seeded benchmark database twice
per format set, each time in a fresh process: once the way goalport exports (the
great-expectations suites on the batch first, every file proven complete), once the
bare path (extract, render in the process pool, write), to folders it deletes afterwards.

Reported, for each format set:
- `gx_import_s`: importing great_expectations, once per process (a Dagster run is a
  process, so once per run);
- `quality_s`: the suites on the batch (one GX validation per table);
- `quality_share`: (import + suites) / (import + the checked export);
- `quality_share_warm`: suites / the checked export, for a process that has imported GX
  already (the CLI checking batch after batch, a long-lived worker);
- `checks_share`: everything the checks add (import, suites, reading every file back)
  over the checked run, from the difference with the bare export;
- the same shares of CPU time (`*_cpu`, rendering workers included), steadier than wall
  time on a machine that is busy with other work.
Nothing here asserts; the target is a `quality_share` under 0.15.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time

USERS = 2000
FORMAT_SETS = (("json",), ("json", "csv", "xlsx", "parquet"))


def run(database_url: str, format_sets: tuple[tuple[str, ...], ...] = FORMAT_SETS) -> dict:
    report = {}
    for formats in format_sets:
        label = "+".join(formats)
        measured = measure_quality_share(database_url, n_users=USERS, formats=formats)
        report[label] = measured
        print(
            f"{measured['users']} users, {label}: export {measured['export_s']:.1f} s with checks, "
            f"{measured['bare_export_s']:.1f} s without; great_expectations import "
            f"{measured['gx_import_s']:.1f} s + suites {measured['quality_s']:.1f} s = "
            f"{measured['quality_share']:.0%} of the run (target < 15%; "
            f"{measured['quality_share_warm']:.0%} once imported; "
            f"{measured['quality_share_cpu']:.0%} of the CPU time); every check together "
            f"{measured['checks_share']:.0%} ({measured['checks_share_cpu']:.0%} of the CPU time)"
        )
    return report


def measure_quality_share(
    database_url: str, n_users: int = USERS, formats: tuple[str, ...] = ("json",)
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


def _users(database_url: str, n_users: int):
    from resources.database import AppDatabase

    database = AppDatabase(url=database_url)
    return database, database.all_user_ids()[:n_users]


def _export_with_checks(database_url: str, n_users: int, formats: tuple[str, ...]) -> dict:
    from assets.exporting import export_users
    from resources.storage import ObjectStorage

    database, user_ids = _users(database_url, n_users)
    started, started_cpu = time.perf_counter(), time.process_time()
    import great_expectations  # noqa: F401  (timed on its own: once per process)

    gx_import_s, gx_import_cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    with tempfile.TemporaryDirectory() as root:
        started, started_cpu = time.perf_counter(), _cpu_with_children()
        result = export_users(database, ObjectStorage(url=root), user_ids, formats)
        export_s, export_cpu_s = time.perf_counter() - started, _cpu_with_children() - started_cpu
    return {
        "users": len(user_ids),
        "files": len(result.files),
        "failed_users": len(result.failed_users),
        "gx_import_s": gx_import_s,
        "gx_import_cpu_s": gx_import_cpu_s,
        "export_s": export_s,
        "export_cpu_s": export_cpu_s,
        "quality_s": result.timings["quality"],
        "quality_cpu_s": result.timings["quality_cpu"],
        "completeness_worker_s": result.timings["completeness"],
    }


def _cpu_with_children() -> float:
    """CPU seconds of this process and of its finished children (the rendering pool)."""
    import resource

    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _export_without_checks(database_url: str, n_users: int, formats: tuple[str, ...]) -> dict:
    from assets.exporting import export_key, render_batch
    from resources.storage import ObjectStorage

    database, user_ids = _users(database_url, n_users)
    exported_at = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory() as root:
        storage = ObjectStorage(url=root)
        started, started_cpu = time.perf_counter(), _cpu_with_children()
        batch = database.extract(user_ids)
        per_user = batch.per_user()
        rendered = render_batch(
            per_user, formats, exported_at=exported_at, filters=batch.filters.as_dict()
        )
        for user_id, files in rendered:
            for fmt, data in files.items():
                storage.write_bytes(export_key(user_id, fmt, exported_at), data)
        export_s, export_cpu_s = time.perf_counter() - started, _cpu_with_children() - started_cpu
    return {"users": len(per_user), "export_s": export_s, "export_cpu_s": export_cpu_s}
