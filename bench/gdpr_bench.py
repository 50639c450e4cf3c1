"""GDPR bulk bundles for the whole seeded population, against the naive path, in one run.

The bulk path is `assets.gdpr.bulk` (what the `gdpr_bundles` partitions and `goalport gdpr
export --all` run): bucket by bucket, one query per table per chunk of users, rendering in
one worker process per core. The naive path is what most code does: one query per user per
table, users rendered one after another; it is measured on a sample of users and its rate
extrapolated to the population (said so in the output). Bundles go to a temporary local
folder that is deleted afterwards. The bench database is shared by every section, so the
bulk run does not write its audit entries (one INSERT per chunk: not a measurable cost).

GOALPORT_BENCH_GDPR_BUCKETS=N runs the bulk path on the first N of the 64 buckets only
(about N/64 of the population; default all), for a quicker measurement of the rate and CPU
per user. The naive sample is the same either way.
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time

NAIVE_SAMPLE = 200
MEMORY_PROBE_BUCKETS = 8  # peak memory after this many buckets, against after all of them


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _rss_mib(who: int) -> float:
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def bucket_count() -> int:
    """The buckets the bulk run covers: GOALPORT_BENCH_GDPR_BUCKETS, else all of them."""
    from assets.gdpr.bulk import BUCKET_COUNT

    chosen = int(os.environ.get("GOALPORT_BENCH_GDPR_BUCKETS", "0") or 0)
    return min(chosen, BUCKET_COUNT) if chosen > 0 else BUCKET_COUNT


def bulk_bundles(url: str, out: str, buckets_run: int) -> dict:
    from assets.gdpr.bulk import GdprBundleExporter, bucket_user_ids
    from resources.database import AppDatabase
    from resources.storage import ObjectStorage

    database = AppDatabase(url=url)
    storage = ObjectStorage(url=out)
    cpu_before = _cpu_seconds(resource.RUSAGE_SELF)
    started = time.perf_counter()
    written = {"bundles": 0, "bytes": 0, "largest_user_rows": 0}  # running totals only

    def count(bundle) -> None:
        written["bundles"] += 1
        written["bytes"] += bundle.stored.size
        written["largest_user_rows"] = max(written["largest_user_rows"], bundle.records)

    incomplete = 0
    probe: dict = {}
    probe_buckets = max(1, min(MEMORY_PROBE_BUCKETS, buckets_run // 2))
    phases = [range(probe_buckets), range(probe_buckets, buckets_run)]
    for phase, buckets in enumerate(phases):
        # one pool per phase: its workers' peak is known when they exit; the buckets are
        # read lazily, workers busy across their boundaries (as `gdpr export --all` runs)
        with GdprBundleExporter(database, storage, record_audit=False) as exporter:
            result = exporter.export_groups(
                (bucket_user_ids(database.engine, bucket) for bucket in buckets),
                on_user_done=count,
                keep_bundles=False,
            )
        incomplete += len(result.incomplete_user_ids) + len(result.failed)
        if phase == 0:
            probe = {
                "buckets": probe_buckets,
                "users": written["bundles"],
                "main_peak_rss_mib": _rss_mib(resource.RUSAGE_SELF),
                "worker_peak_rss_mib": _rss_mib(resource.RUSAGE_CHILDREN),
            }
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu_before + _cpu_seconds(resource.RUSAGE_CHILDREN)
    bundles = written["bundles"]
    return {
        "users": bundles,
        "seconds": seconds,
        "users_per_second": bundles / seconds,
        "cpu_seconds": cpu,
        "cpu_ms_per_user": 1000 * cpu / max(bundles, 1),
        "bytes": written["bytes"],
        "incomplete_or_failed": incomplete,
        "largest_user_rows": written["largest_user_rows"],
        "buckets": buckets_run,
        "after_first_buckets": probe,
        "main_peak_rss_mib": _rss_mib(resource.RUSAGE_SELF),
        "worker_peak_rss_mib": _rss_mib(resource.RUSAGE_CHILDREN),
    }


def naive_bundles(url: str, out: str, sample: int) -> dict:
    """One query per user per table (SQLAlchemy Core), one user after another."""
    import datetime as dt

    import pyarrow as pa
    import sqlalchemy as sa

    from assets.gdpr.bulk import RECORD_SOURCES
    from assets.gdpr.bundle import render_gdpr_bundle
    from resources import schema
    from resources.audit import utc_now
    from resources.storage import ObjectStorage
    from resources.storage_layout import gdpr_bundle_key

    engine = sa.create_engine(url)
    storage = ObjectStorage(url=out)
    exported_at = utc_now()
    with engine.connect() as conn:
        user_ids = (
            conn.execute(sa.select(schema.user.c.id).order_by(schema.user.c.id)).scalars().all()
        )
    step = max(1, len(user_ids) // sample)
    chosen = user_ids[::step][:sample]
    started = time.perf_counter()
    cpu_before = _cpu_seconds(resource.RUSAGE_SELF)
    with engine.connect() as conn:
        for user_id in chosen:
            tables, live = {}, {}
            for table in schema.APP_TABLES:
                owner = table.c.id if table.name == "User" else table.c.userId
                rows = conn.execute(sa.select(table).where(owner == user_id)).mappings().all()
                arrow_schema = schema.APP_ARROW_SCHEMAS[table.name]
                tables[table.name] = pa.Table.from_pylist(
                    [
                        {
                            k: (v.astimezone(dt.UTC) if isinstance(v, dt.datetime) else v)
                            for k, v in r.items()
                        }
                        for r in rows
                    ],
                    schema=arrow_schema,
                )
                live[table.name] = conn.execute(
                    sa.select(sa.func.count()).where(owner == user_id)
                ).scalar_one()
            log = schema.data_audit_log
            audit = [
                dict(r)
                for r in conn.execute(sa.select(log).where(log.c.userId == user_id)).mappings()
            ]
            live["DataAuditLog"] = len(audit)
            records = {}
            for name, owner_name in RECORD_SOURCES.items():
                table = schema.metadata.tables[name]
                records[name] = [
                    dict(r)
                    for r in conn.execute(
                        sa.select(table).where(table.c[owner_name] == user_id)
                    ).mappings()
                ]
            data = render_gdpr_bundle(
                tables,
                user_id=user_id,
                exported_at=exported_at,
                audit_rows=audit,
                texts=None,
                live_counts=live,
                records=records,
            )
            storage.write_bytes(gdpr_bundle_key(user_id, exported_at), data)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu_before
    engine.dispose()
    return {
        "cpu_ms_per_user": 1000 * cpu / len(chosen),
        "users": len(chosen),
        "population": len(user_ids),
        "seconds": seconds,
        "users_per_second": len(chosen) / seconds,
        "extrapolated_seconds": len(user_ids) * seconds / len(chosen),
    }


def in_child(function, *args) -> dict:
    """`function(*args)` in a fresh process that may start its own workers (bench.run's
    pool child is daemonic, and daemonic processes cannot have children)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def run(database_url: str) -> dict:
    from assets.gdpr.bulk import BUCKET_COUNT

    load_before = os.getloadavg()[0]
    folders = [tempfile.mkdtemp(prefix="goalport-gdpr-bench-") for _ in range(2)]
    try:
        bulk = in_child(bulk_bundles, database_url, folders[0], bucket_count())
        naive = in_child(naive_bundles, database_url, folders[1], NAIVE_SAMPLE)
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    ratio = bulk["users_per_second"] / naive["users_per_second"]
    probe = bulk["after_first_buckets"]
    load = (load_before, os.getloadavg()[0])
    cores = os.cpu_count() or 1
    print(
        f"GDPR bundles, bulk (buckets, one query per table per chunk, rendering on every core):\n"
        f"  {bulk['users']:,} users ({bulk['buckets']} of {BUCKET_COUNT} buckets) in "
        f"{bulk['seconds']:.0f} s = {bulk['users_per_second']:.1f} "
        f"users/s (target >= 35, the population in under 10 minutes); "
        f"{bulk['bytes'] / 2**20:.0f} MiB written; {bulk['incomplete_or_failed']} incomplete or failed\n"
        f"  peak RSS: main {bulk['main_peak_rss_mib']:.0f} MiB, largest worker "
        f"{bulk['worker_peak_rss_mib']:.0f} MiB (largest user {bulk['largest_user_rows']:,} rows); "
        f"after the first {probe['buckets']} buckets ({probe['users']:,} users): main "
        f"{probe['main_peak_rss_mib']:.0f} MiB, worker {probe['worker_peak_rss_mib']:.0f} MiB\n"
        f"GDPR bundles, naive (one query per user per table, one user after another), measured on "
        f"{naive['users']} users and extrapolated:\n"
        f"  {naive['users_per_second']:.1f} users/s, {naive['extrapolated_seconds']:.0f} s for "
        f"{naive['population']:,} users (extrapolated)\n"
        f"  bulk is {ratio:.1f}x faster than naive\n"
        f"  CPU per user (client processes, PostgreSQL not counted): bulk "
        f"{bulk['cpu_ms_per_user']:.0f} ms, naive {naive['cpu_ms_per_user']:.0f} ms; load average "
        f"{load[0]:.1f} before, {load[1]:.1f} after, on {cores} cores (rates fall with other load)"
    )
    return {"bulk": bulk, "naive": naive, "speedup": ratio, "load_average": load}
