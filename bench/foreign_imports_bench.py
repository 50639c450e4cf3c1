"""Foreign-import benchmark: a 50,000-task Todoist export parsed, previewed and applied into
PostgreSQL (target: preview + apply under 20 s), then previewed again (the re-import path
through ExternalRef, which must find nothing to change).

`run(database_url)` only uses the server of `database_url` (the shared bench database is
left alone): it works in a scratch database of its own and drops it afterwards. The
baseline, measured in the same run, is the straightforward importer: the same staged rows
written one by one through the SQLAlchemy ORM with their ImportChange records
(`bench.import_bench._orm_apply`), on the first GOALPORT_BENCH_ORM_ROWS rows (2,000) and
scaled to the whole import.

Then each app added with issue 15 (Microsoft To Do, Remember The Milk, Taskwarrior,
Toodledo): its export of 50,000 tasks detected and parsed in a process of its own (time,
peak memory), against the Todoist parse above as the baseline, and at x1, x4 and x16 of
3,125 tasks to show the time grows linearly with the input.
"""

from __future__ import annotations

import os
import tempfile
import time

import sqlalchemy as sa

TASKS = 50_000
TARGET_SECONDS = 20.0


def run(database_url: str) -> dict:
    """Parse, preview, apply and re-preview a `TASKS`-task Todoist CSV; returns the numbers."""
    from assets.imports.apply import apply_import
    from assets.imports.detect import detect_import
    from assets.imports.jobs import create_import_job
    from assets.imports.parsers.todoist import generate_todoist_csv
    from assets.imports.preview import preview_import
    from assets.imports.staging import TABLE_NAMES, app_columns
    from bench.import_bench import _orm_apply, orm_comparison_text, scratch_database
    from migrations import upgrade
    from resources import schema
    from resources.storage import ObjectStorage
    from synthetic.load import load_population
    from synthetic.population import generate_population

    with scratch_database(database_url) as database:
        url = database.url
        upgrade(url)
        users = generate_population(1, seed=3, heavy_every=0)["User"]
        load_population(database.engine, {"User": users})
        user_id = users["id"][0].as_py()
        data = generate_todoist_csv(TASKS, seed=1)
        name = "Bench [1000000001].csv"

        started = time.perf_counter()
        detected = detect_import(data, file_name=name)
        parse_seconds = time.perf_counter() - started
        del detected

        with tempfile.TemporaryDirectory() as folder:
            storage = ObjectStorage(url=folder)

            def job() -> str:
                return create_import_job(database.engine, user_id=user_id, file_name=name)

            first = job()
            started, cpu = time.perf_counter(), time.process_time()
            preview = preview_import(database, storage, first, data)
            preview_seconds = time.perf_counter() - started
            preview_cpu = time.process_time() - cpu
            started, cpu = time.perf_counter(), time.process_time()
            applied = apply_import(database, storage, first)
            apply_seconds = time.perf_counter() - started
            apply_cpu = time.process_time() - cpu

            second = job()
            started = time.perf_counter()
            again = preview_import(database, storage, second, data)
            repeat_seconds = time.perf_counter() - started

        plan = preview.plan
        staged = {name: app_columns(plan.tables[name].creates, name) for name in TABLE_NAMES}
        rows = sum(t.num_rows for t in staged.values())
        # the scratch database holds only this user: TRUNCATE, since deleting 50,000 goals
        # row by row checks the self-reference (parentGoalId) for each one
        names = [*(t.name for t in schema.APP_TABLES[1:]), schema.import_change.name]
        with database.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " CASCADE"))
        sample = int(os.environ.get("GOALPORT_BENCH_ORM_ROWS", "2000")) or None
        orm_seconds, orm_rows = _orm_apply(database.engine, user_id, staged, "orm", sample)
        orm_estimate = orm_seconds / orm_rows * rows
        total = preview_seconds + apply_seconds
        result = {
            "tasks": TASKS,
            "rows": rows,
            "file_bytes": len(data),
            "parse_seconds": round(parse_seconds, 3),
            "preview_seconds": round(preview_seconds, 3),
            "apply_seconds": round(apply_seconds, 3),
            "total_seconds": round(total, 3),
            # this process's CPU time (not the database's): steadier on a busy machine
            "preview_cpu_seconds": round(preview_cpu, 3),
            "apply_cpu_seconds": round(apply_cpu, 3),
            "target_seconds": TARGET_SECONDS,
            "within_target": total < TARGET_SECONDS,
            "parse_share_of_total": round(parse_seconds / total, 3),
            "created": plan.totals()["create"],
            "skipped_items": sum(e.count for e in preview.detected.report if e.action == "skipped"),
            "apply_statements": applied.statements,
            "repeat_preview_seconds": round(repeat_seconds, 3),
            "repeat_preview_changes": again.plan.row_writes,
            "orm_rows_measured": orm_rows,
            "orm_ms_per_row": round(1000 * orm_seconds / orm_rows, 3),
            "orm_apply_seconds_for_all_rows": round(orm_estimate, 1),
            "apply_speedup_vs_orm": round(orm_estimate / apply_seconds, 1),
        }
        print(
            f"Todoist export of {TASKS:,} tasks ({len(data) / 1e6:.1f} MB CSV, {rows:,} rows): "
            f"parse {parse_seconds:.2f} s, preview (parse included) {preview_seconds:.2f} s, "
            f"apply {apply_seconds:.2f} s ({applied.statements} statements)"
        )
        print(
            f"total {total:.2f} s against the {TARGET_SECONDS:.0f} s target "
            f"({'met' if total < TARGET_SECONDS else 'MISSED'}); parsing is "
            f"{parse_seconds / total:.0%} of it; the same file again: preview "
            f"{repeat_seconds:.2f} s, {again.plan.row_writes} changes"
        )
        print(orm_comparison_text(result, orm_estimate))
        result["other_apps"] = other_apps(parse_seconds)
        return result


SCALES = (1, 4, 16)
SCALE_UNIT = TASKS // 16


def other_apps(todoist_parse_seconds: float) -> dict:
    """Each new app's 50,000-task parse (time, peak memory) and its growth over x1..x16."""
    from bench.foreign_app_files import APPS, parse_measured
    from bench.run import in_child

    results = {}
    for app in APPS:
        runs = {scale: in_child(parse_measured, app, SCALE_UNIT * scale) for scale in SCALES}
        full = runs[SCALES[-1]]
        linearity = full["seconds"] / (SCALES[-1] * max(runs[1]["seconds"], 1e-6))
        results[app] = {
            **full,
            "seconds_by_scale": {f"x{s}": runs[s]["seconds"] for s in SCALES},
            "x16_over_16_x1": round(linearity, 2),
            "vs_todoist_parse": round(full["seconds"] / todoist_parse_seconds, 2),
        }
        print(
            f"{app}: {full['tasks']:,} tasks ({full['file_bytes'] / 1e6:.1f} MB) parsed in "
            f"{full['seconds']:.2f} s ({full['seconds'] / todoist_parse_seconds:.1f}x the "
            f"Todoist parse), peak {full['peak_rss_mib']:.0f} MiB "
            f"(+{full['rss_growth_mib']:.0f}); x1/x4/x16: "
            + " / ".join(f"{runs[s]['seconds']:.2f}" for s in SCALES)
            + f" s, x16 = {linearity:.2f} x 16 x1 (1.0 is linear)"
        )
    return results


if __name__ == "__main__":
    import json

    from bench.run import server_url

    print(json.dumps(run(server_url()), indent=2))
