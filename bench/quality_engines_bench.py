"""The data-quality rules' two engines side by side: pyarrow (`assets.quality.arrow_checks`)
and great-expectations, on in-memory synthetic batches of growing size (the seeded
benchmark database is not read). Each batch is checked by both; the reports must agree
(a mismatch raises: the engines are held to the same rows in tests/quality/test_engines.py).

Reported per batch size (GOALPORT_BENCH_ENGINE_USERS, default "1,100,2000,10000"): wall and
CPU seconds of each engine, warm (great-expectations' import, measured once in a fresh
process, is reported apart as `gx_import_s`), and pyarrow / GX. What GOALPORT_GX_MIN_ROWS
should be follows from these: a single-user request pays GX's import for nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


def run(database_url: str) -> dict:
    from assets.quality.suites import ARROW, GREAT_EXPECTATIONS, run_quality_suites
    from synthetic.population import generate_population

    sizes = [
        int(n) for n in os.environ.get("GOALPORT_BENCH_ENGINE_USERS", "1,100,2000,10000").split(",")
    ]
    report: dict = {"gx_import_s": _import_seconds("great_expectations")}
    print(f"importing great_expectations in a fresh process: {report['gx_import_s']:.1f} s")
    run_quality_suites(generate_population(2, seed=1, heavy_every=0), engine=GREAT_EXPECTATIONS)
    for users in sizes:
        tables = generate_population(users, seed=3, heavy_every=0)
        rows = sum(t.num_rows for t in tables.values())
        timings, reports = {}, {}
        for engine in (ARROW, GREAT_EXPECTATIONS):
            wall, cpu = time.perf_counter(), time.process_time()
            reports[engine] = run_quality_suites(tables, engine=engine)
            timings[engine] = (time.perf_counter() - wall, time.process_time() - cpu)
        if reports[ARROW].results != reports[GREAT_EXPECTATIONS].results:
            raise AssertionError(f"the engines disagree on a batch of {users} users")
        (arrow_s, arrow_cpu), (gx_s, gx_cpu) = timings[ARROW], timings[GREAT_EXPECTATIONS]
        report[f"{users}_users"] = entry = {
            "rows": rows,
            "arrow_s": arrow_s,
            "arrow_cpu_s": arrow_cpu,
            "gx_s": gx_s,
            "gx_cpu_s": gx_cpu,
            "arrow_over_gx_cpu": arrow_cpu / gx_cpu if gx_cpu else None,
        }
        print(
            f"{users:>6} users ({rows:>8} rows): pyarrow {arrow_s:.3f} s ({arrow_cpu:.3f} CPU), "
            f"great-expectations warm {gx_s:.3f} s ({gx_cpu:.3f} CPU); "
            f"pyarrow/GX CPU {entry['arrow_over_gx_cpu']:.2f}"
        )
    return report


def _import_seconds(module: str) -> float:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import time; t = time.perf_counter(); import {module}; "
            "print(time.perf_counter() - t)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip())
