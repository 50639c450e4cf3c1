"""`make bench`: seeds a large data set once, then measures goalport against baselines
measured in the same run, and prints ratios (PERFORMANCE.md has the numbers this machine
gave before). Not a test: nothing here asserts; it reports.

Environment: GOALPORT_BENCH_PG_URL (the server; `make bench` passes the test server),
GOALPORT_BENCH_USERS (default 20000), GOALPORT_BENCH_ONLY (comma-separated section names),
GOALPORT_BENCH_DB (the database to seed once and reuse, default goalport_bench).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

BENCH_DB = os.environ.get("GOALPORT_BENCH_DB", "goalport_bench")


def server_url() -> str:
    return os.environ.get(
        "GOALPORT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )


def database_url(name: str = BENCH_DB) -> str:
    return sa.make_url(server_url()).set(database=name).render_as_string(hide_password=False)


def ensure_seeded(n_users: int) -> str:
    """The benchmark database with `n_users` seeded users; seeded only if it is not already."""
    from migrations import upgrade
    from synthetic.seed import seed_database

    admin = sa.create_engine(server_url(), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": BENCH_DB}
        ).first()
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{BENCH_DB}"'))
    url = database_url()
    upgrade(url)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        have = conn.execute(sa.text('SELECT count(*) FROM "User"')).scalar_one()
    if have != n_users:
        with engine.begin() as conn:
            tables = conn.execute(
                sa.text(
                    "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables "
                    "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            ).scalar_one()
            conn.execute(sa.text(f"TRUNCATE {tables} CASCADE"))
        started = time.perf_counter()
        seed_database(url, n_users, seed=1, heavy_every=5000)
        print(f"seeded {n_users} users in {time.perf_counter() - started:.1f} s")
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()
    return url


def in_child(function: Callable, *args) -> dict:
    """Run `function(*args)` in a fresh process, so memory peaks do not mix."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, args)


class PeakMemory:
    """Peak resident memory inside a `with` block, sampled from /proc every 5 ms, minus
    the resident memory when the block started (after imports and warm-up)."""

    def __enter__(self) -> PeakMemory:
        import gc
        import threading

        gc.collect()
        self.baseline = self.peak = _rss_bytes()
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._sampler.join()
        self.peak = max(self.peak, _rss_bytes())

    def as_dict(self) -> dict:
        return {
            "peak_rss_mib": round(self.peak / 2**20, 1),
            "rss_growth_mib": round((self.peak - self.baseline) / 2**20, 1),
        }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------- extraction


def binary_copy_discarded(url: str) -> dict:
    import psycopg

    libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn, conn.cursor() as cur:
        rows = cur.execute('SELECT count(*) FROM "Progress"').fetchone()[0]
        with PeakMemory() as memory:
            started = time.perf_counter()
            with cur.copy('COPY "Progress" TO STDOUT (FORMAT binary)') as copy:
                for _block in copy:
                    pass
            seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, **memory.as_dict()}


def goalport_extract_progress(url: str) -> dict:
    from resources.database import AppDatabase, ExtractFilter

    database = AppDatabase(url=url)
    user_ids = database.all_user_ids()
    database.extract_tables(["Progress"], user_ids[:1], ExtractFilter())  # load the driver
    with PeakMemory() as memory:
        started = time.perf_counter()
        tables = database.extract_tables(["Progress"], user_ids, ExtractFilter())
        seconds = time.perf_counter() - started
    table = tables["Progress"]
    return {
        "rows": table.num_rows,
        "seconds": seconds,
        "arrow_mib": table.nbytes / 2**20,
        **memory.as_dict(),
    }


def pandas_read_sql_progress(url: str) -> dict:
    import pandas as pd

    engine = sa.create_engine(url)
    pd.read_sql('SELECT * FROM "Progress" LIMIT 1', engine)
    with PeakMemory() as memory:
        started = time.perf_counter()
        frame = pd.read_sql('SELECT * FROM "Progress"', engine)
        seconds = time.perf_counter() - started
    return {"rows": len(frame), "seconds": seconds, **memory.as_dict()}


def batched_users(url: str, n_users: int) -> dict:
    from resources.database import AppDatabase

    database = AppDatabase(url=url)
    user_ids = database.all_user_ids()[:n_users]
    database.extract(user_ids[:1]).per_user()  # load the driver
    started = time.perf_counter()
    per_user = database.extract(user_ids).per_user()
    rows = sum(t.num_rows for tables in per_user.values() for t in tables.values())
    return {"users": len(per_user), "rows": rows, "seconds": time.perf_counter() - started}


def per_user_orm_queries(url: str, n_users: int) -> dict:
    """What most code does: one ORM query per user per table."""
    from sqlalchemy.orm import Session, registry

    from resources import schema

    mapper_registry = registry()
    classes = {}
    for table in schema.APP_TABLES:
        cls = type(table.name, (), {})
        mapper_registry.map_imperatively(cls, table)
        classes[table.name] = (cls, table)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        user_ids = [r[0] for r in conn.execute(sa.text('SELECT id FROM "User" ORDER BY id'))]
    user_ids = user_ids[:n_users]
    started = time.perf_counter()
    rows = 0
    with Session(engine) as session:
        for uid in user_ids:
            for name, (cls, table) in classes.items():
                owner = table.c.id if name == "User" else table.c.userId
                rows += len(session.query(cls).filter(owner == uid).all())
            session.expunge_all()
    return {"users": len(user_ids), "rows": rows, "seconds": time.perf_counter() - started}


def bench_extraction(url: str, report: dict) -> None:
    limit = in_child(binary_copy_discarded, url)
    ours = in_child(goalport_extract_progress, url)
    pandas = in_child(pandas_read_sql_progress, url)
    rate = lambda r: r["rows"] / r["seconds"]  # noqa: E731
    report["extraction"] = {
        "binary_copy_discarded": limit,
        "goalport_adbc": ours,
        "pandas_read_sql": pandas,
        "goalport_share_of_limit": rate(ours) / rate(limit),
        "pandas_share_of_limit": rate(pandas) / rate(limit),
        "goalport_peak_over_arrow_size": ours["rss_growth_mib"] / max(ours["arrow_mib"], 1e-9),
    }
    print(
        f"Progress table, {limit['rows']:,} rows:\n"
        f"  binary COPY to nowhere  {rate(limit) / 1e6:5.2f} M rows/s  (the limit)\n"
        f"  goalport (ADBC, exact)  {rate(ours) / 1e6:5.2f} M rows/s  "
        f"{rate(ours) / rate(limit):.2f} of the limit (target >= 0.5); "
        f"peak RSS growth {ours['rss_growth_mib']:.0f} MiB for a "
        f"{ours['arrow_mib']:.0f} MiB Arrow table "
        f"({report['extraction']['goalport_peak_over_arrow_size']:.2f}x, target < 2)\n"
        f"  pandas.read_sql         {rate(pandas) / 1e6:5.2f} M rows/s  "
        f"{rate(pandas) / rate(limit):.2f} of the limit"
    )
    n = 2000
    batched = in_child(batched_users, url, n)
    naive = in_child(per_user_orm_queries, url, n)
    report["many_users"] = {
        "batched": batched,
        "per_user_orm": naive,
        "speedup": naive["seconds"] / batched["seconds"],
    }
    print(
        f"{n} users, every table ({batched['rows']:,} rows):\n"
        f"  batched (one query per table, sort once, slice)  {batched['seconds']:6.2f} s\n"
        f"  one ORM query per user per table                 {naive['seconds']:6.2f} s\n"
        f"  batched is {naive['seconds'] / batched['seconds']:.1f}x faster (target >= 10)"
    )


# -------------------------------------------------------------------------- rendering


def bench_rendering(url: str, report: dict) -> None:
    from assets.formats.registry import DATA_FORMATS, export_format
    from resources.database import AppDatabase

    database = AppDatabase(url=url)
    with database.engine.connect() as conn:
        typical = conn.execute(
            sa.text(
                'SELECT "userId" FROM "Progress" GROUP BY "userId" '
                "HAVING count(*) BETWEEN 150 AND 250 ORDER BY 1 LIMIT 1"
            )
        ).scalar()
        heavy = conn.execute(
            sa.text('SELECT "userId" FROM "Progress" GROUP BY 1 ORDER BY count(*) DESC LIMIT 1')
        ).scalar()
    report["rendering"] = {}
    for label, uid in (("typical", typical), ("heavy", heavy)):
        tables = database.extract([uid]).per_user()[uid]
        counts = f"{tables['Goal'].num_rows} goals / {tables['Progress'].num_rows} progress"
        timings = {}
        for fmt in DATA_FORMATS:
            started = time.perf_counter()
            data = export_format(fmt).render(
                tables, user_id=uid, exported_at=dt.datetime.now(dt.UTC), filters=None
            )
            timings[fmt] = {"ms": (time.perf_counter() - started) * 1000, "bytes": len(data)}
        report["rendering"][label] = {"rows": counts, **timings}
        print(
            f"render one {label} user ({counts}): "
            + ", ".join(f"{fmt} {t['ms']:.0f} ms" for fmt, t in timings.items())
        )


# ------------------------------------------------------------------------------ main

SECTIONS: dict[str, Callable[[str, dict], None]] = {
    "extraction": bench_extraction,
    "rendering": bench_rendering,
}


def optional_sections() -> dict[str, Callable[[str, dict], None]]:
    """Each area's benchmark module `bench/<area>_bench.py` has `run(database_url) -> dict`;
    it prints its own lines, and its result goes into the report."""
    import importlib

    found = {}
    for path in sorted(Path(__file__).parent.glob("*_bench.py")):
        module = importlib.import_module(f"bench.{path.stem}")
        found[path.stem.removesuffix("_bench")] = _section(path.stem, module.run)
    return found


def _section(name: str, run: Callable[[str], dict]) -> Callable[[str, dict], None]:
    def section(url: str, report: dict) -> None:
        report[name] = run(url)

    return section


def main() -> int:
    n_users = int(os.environ.get("GOALPORT_BENCH_USERS", "20000"))
    only = {s for s in os.environ.get("GOALPORT_BENCH_ONLY", "").split(",") if s}
    url = ensure_seeded(n_users)
    report: dict = {"users": n_users, "when": dt.datetime.now(dt.UTC).isoformat()}
    sections = {**SECTIONS, **optional_sections()}
    for name, run in sections.items():
        if only and name not in only:
            continue
        print(f"\n== {name}")
        started = time.perf_counter()
        run(url, report)
        print(f"   ({time.perf_counter() - started:.0f} s)")
    out = Path("var/bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nfull results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
