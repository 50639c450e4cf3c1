"""Archive and database imports: a Notion HTML export of 10,000 pages and a Things 3
database of 20,000 to-dos, each parsed (time and peak memory, at a quarter and at the full
size, so the ratio shows whether parsing grows linearly) and then previewed and applied
into PostgreSQL in a scratch database of its own.

Baselines, measured in the same run: for Notion, only opening the zip and parsing every
page with selectolax (what any importer must do); for Things, only copying the database
and reading its tables with a plain `SELECT *`. The ratios say what the mapping costs on
top of reading the file.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import sqlite3
import tempfile
import time
import zipfile
from pathlib import Path

NOTION_PAGES = 10_000
THINGS_TODOS = 20_000


def notion_html_export(pages: int) -> bytes:
    """`pages` pages: databases of 500 rows, each row with its own page of properties."""
    buffer = io.BytesIO()
    root = "Export-0000/"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        made = 0
        database = 0
        while made < pages:
            database += 1
            db_id = f"{database:032x}"
            rows = min(499, pages - made - 1)
            cells = []
            for row in range(rows):
                row_id = f"{database:08x}{row:024x}"
                title = f"Task {database}-{row} ✅"
                cells.append(
                    f'<tr id="{row_id}"><td class="cell-title"><a href="Tasks%20{db_id}/'
                    f'{title}%20{row_id}.html">{title}</a></td><td><span class="status-value">'
                    f"{'Done' if row % 3 == 0 else 'In progress'}</span></td></tr>"
                )
                properties = (
                    '<tr class="property-row property-row-status"><th>Status</th><td>'
                    f'<span class="status-value">{"Done" if row % 3 == 0 else "Open"}</span></td></tr>'
                    '<tr class="property-row property-row-date"><th>Due</th><td>'
                    f"<time>@March {row % 28 + 1}, 2024</time></td></tr>"
                    '<tr class="property-row property-row-created_time"><th>Created</th><td>'
                    "<time>@January 2, 2024 9:30 AM</time></td></tr>"
                    '<tr class="property-row property-row-last_edited_time"><th>Last edited</th>'
                    "<td><time>@February 2, 2024 9:30 AM</time></td></tr>"
                    '<tr class="property-row property-row-multi_select"><th>Tags</th><td>'
                    '<span class="selected-value">Work</span><span class="selected-value">Q1</span>'
                    "</td></tr>"
                )
                archive.writestr(
                    f"{root}Tasks {db_id}/{title} {row_id}.html",
                    _page(row_id, title, properties, "<p>Some notes about the task.</p>" * 3),
                )
            table = (
                '<table class="collection-content"><thead><tr><th>Name</th><th>Status</th>'
                f"</tr></thead><tbody>{''.join(cells)}</tbody></table>"
            )
            archive.writestr(
                f"{root}Tasks {db_id}.html", _page(db_id, f"Tasks {database}", "", table)
            )
            made += rows + 1
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("Export-0000-Part-1.zip", buffer.getvalue())
    return outer.getvalue()


def _page(page_id: str, title: str, properties: str, body: str) -> str:
    return (
        f'<html><head><meta charset="utf-8"/><title>{title}</title></head><body>'
        f'<article id="{page_id}" class="page sans"><header><h1 class="page-title">{title}'
        f'</h1><table class="properties"><tbody>{properties}</tbody></table></header>'
        f'<div class="page-body">{body}</div></article></body></html>'
    )


def things_database(todos: int) -> bytes:
    """A current-schema Things database: 10 areas, a project per 100 to-dos, headings,
    a checklist item per 4 to-dos, tags."""
    base = dt.datetime(2023, 1, 1, tzinfo=dt.UTC).timestamp()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "main.sqlite")
        db = sqlite3.connect(path, isolation_level=None)
        db.executescript(
            """
            CREATE TABLE TMArea (uuid TEXT PRIMARY KEY, title TEXT, visible INTEGER, "index" INTEGER);
            CREATE TABLE TMTag (uuid TEXT PRIMARY KEY, title TEXT);
            CREATE TABLE TMTaskTag (tasks TEXT, tags TEXT);
            CREATE TABLE TMChecklistItem (uuid TEXT PRIMARY KEY, title TEXT, status INTEGER,
              stopDate REAL, creationDate REAL, userModificationDate REAL, task TEXT, "index" INTEGER);
            CREATE TABLE TMTask (uuid TEXT PRIMARY KEY, type INTEGER, status INTEGER,
              trashed INTEGER, title TEXT, notes TEXT, creationDate REAL,
              userModificationDate REAL, stopDate REAL, start INTEGER, startDate INTEGER,
              deadline INTEGER, area TEXT, project TEXT, heading TEXT, "index" INTEGER,
              rt1_recurrenceRule BLOB, rt1_repeatingTemplate TEXT);
            BEGIN;
            """
        )
        db.executemany(
            "INSERT INTO TMArea VALUES (?,?,1,?)", [(f"A{a}", f"Area {a}", a) for a in range(10)]
        )
        db.executemany("INSERT INTO TMTag VALUES (?,?)", [("G1", "Work"), ("G2", "Home")])
        projects = max(todos // 100, 1)
        db.executemany(
            "INSERT INTO TMTask (uuid, type, status, trashed, title, creationDate,"
            ' userModificationDate, area, "index") VALUES (?,1,0,0,?,?,?,?,?)',
            [(f"P{p}", f"Project {p}", base, base + 60, f"A{p % 10}", p) for p in range(projects)],
        )
        db.executemany(
            "INSERT INTO TMTask (uuid, type, status, trashed, title, project, creationDate,"
            ' "index") VALUES (?,2,0,0,?,?,?,0)',
            [(f"H{p}", "Next", f"P{p}", base) for p in range(projects)],
        )
        rows = []
        for n in range(todos):
            done = n % 3 == 0
            created = base + n * 60
            rows.append(
                (
                    f"T{n}",
                    3 if done else 0,
                    f"To-do {n} ✓",
                    "A note" if n % 2 else None,
                    created,
                    created + 3600,
                    created + 7200 if done else None,
                    (2024 << 16) | ((n % 12 + 1) << 12) | ((n % 28 + 1) << 7),
                    f"P{n % projects}",
                    f"H{n % projects}" if n % 5 == 0 else None,
                    n,
                )
            )
        db.executemany(
            "INSERT INTO TMTask (uuid, type, status, trashed, title, notes, creationDate,"
            ' userModificationDate, stopDate, deadline, project, heading, "index")'
            " VALUES (?,0,?,0,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        db.executemany(
            "INSERT INTO TMChecklistItem VALUES (?,?,?,?,?,?,?,0)",
            [
                (f"C{n}", f"Step {n}", 3 if n % 8 == 0 else 0, base, base, base, f"T{n}")
                for n in range(0, todos, 4)
            ],
        )
        db.executemany(
            "INSERT INTO TMTaskTag VALUES (?,?)", [(f"T{n}", "G1") for n in range(0, todos, 7)]
        )
        db.execute("COMMIT")
        db.close()
        return Path(path).read_bytes()


def _notion_floor(data: bytes) -> None:
    from selectolax.lexbor import LexborHTMLParser

    with zipfile.ZipFile(io.BytesIO(data)) as outer:
        inner = outer.read(outer.namelist()[0])
    with zipfile.ZipFile(io.BytesIO(inner)) as archive:
        for name in archive.namelist():
            LexborHTMLParser(archive.read(name).decode()).css_first("h1")


def _things_floor(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "main.sqlite")
        Path(path).write_bytes(data)
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        for table in ("TMArea", "TMTag", "TMTaskTag", "TMChecklistItem", "TMTask"):
            db.execute(f"SELECT * FROM {table}").fetchall()
        db.close()


def _timed(function, *args):
    from bench.run import PeakMemory

    with PeakMemory() as memory:
        started, cpu = time.perf_counter(), time.process_time()
        result = function(*args)
        seconds = time.perf_counter() - started
    # this process's CPU time: steadier than the wall clock on a shared machine
    return result, seconds, {**memory.as_dict(), "cpu_seconds": round(time.process_time() - cpu, 3)}


def _parse(data: bytes, name: str):
    from assets.imports.parsers.detect import parse_foreign_export

    return parse_foreign_export(data, file_name=name)


def _measure(label: str, build, size: int, name: str, floor) -> dict:
    _parse(build(50), name)  # warm-up: imports and first-use costs stay out of the ratio
    quarter = build(size // 4)
    full = build(size)
    _, _, quarter_memory = _timed(_parse, quarter, name)
    parsed, wall_seconds, memory = _timed(_parse, full, name)
    _, _, floor_memory = _timed(floor, full)
    quarter_seconds, seconds = quarter_memory["cpu_seconds"], memory.pop("cpu_seconds")
    floor_seconds = floor_memory["cpu_seconds"]
    goals = parsed.tables["Goal"].num_rows
    result = {
        "items": size,
        "file_bytes": len(full),
        "goals": goals,
        "parse_cpu_seconds": round(seconds, 3),
        "parse_wall_seconds": round(wall_seconds, 3),
        "parse_cpu_seconds_quarter": round(quarter_seconds, 3),
        "growth_x4": round(seconds / max(quarter_seconds, 1e-9), 2),
        "baseline_read_cpu_seconds": round(floor_seconds, 3),
        "ratio_to_baseline": round(seconds / max(floor_seconds, 1e-9), 2),
        **memory,
    }
    print(
        f"{label}: {len(full) / 1e6:.1f} MB, {goals:,} goals, parse {seconds:.2f} s CPU "
        f"({wall_seconds:.2f} s wall) "
        f"(x4 the input: x{result['growth_x4']} the time), peak +{memory['rss_growth_mib']} MiB; "
        f"only reading the file {floor_seconds:.2f} s (x{result['ratio_to_baseline']})"
    )
    return result


def _pipeline(database_url: str, files: dict[str, bytes]) -> dict:
    from assets.imports.apply import apply_import
    from assets.imports.jobs import create_import_job
    from assets.imports.preview import preview_import
    from bench.import_bench import scratch_database
    from migrations import upgrade
    from resources.storage import ObjectStorage
    from synthetic.load import load_population
    from synthetic.population import generate_population

    results = {}
    with scratch_database(database_url) as database, tempfile.TemporaryDirectory() as folder:
        upgrade(database.url)
        users = generate_population(len(files), seed=5, heavy_every=0)["User"]
        load_population(database.engine, {"User": users})
        storage = ObjectStorage(url=folder)
        for (name, data), user_id in zip(files.items(), users["id"].to_pylist(), strict=True):
            job = create_import_job(database.engine, user_id=user_id, file_name=name)
            started = time.perf_counter()
            preview = preview_import(database, storage, job, data, max_bad_share=1.0)
            preview_seconds = time.perf_counter() - started
            started = time.perf_counter()
            apply_import(database, storage, job)
            apply_seconds = time.perf_counter() - started
            results[name] = {
                "preview_seconds": round(preview_seconds, 3),
                "apply_seconds": round(apply_seconds, 3),
                "created": preview.plan.totals()["create"],
            }
            print(
                f"  {name}: preview {preview_seconds:.2f} s, apply {apply_seconds:.2f} s, "
                f"{preview.plan.totals()['create']:,} rows created"
            )
    return results


def run(database_url: str) -> dict:
    notion = _measure(
        f"Notion HTML export of {NOTION_PAGES:,} pages",
        notion_html_export,
        NOTION_PAGES,
        "Export-0000.zip",
        _notion_floor,
    )
    things = _measure(
        f"Things 3 database of {THINGS_TODOS:,} to-dos",
        things_database,
        THINGS_TODOS,
        "main.sqlite",
        _things_floor,
    )
    print("through the import pipeline (scratch database):")
    pipeline = _pipeline(
        database_url,
        {
            "Export-0000.zip": notion_html_export(NOTION_PAGES),
            "main.sqlite": things_database(THINGS_TODOS),
        },
    )
    return {"notion_html": notion, "things3": things, "pipeline": pipeline}


if __name__ == "__main__":
    import json

    from bench.run import server_url

    print(json.dumps(run(server_url()), indent=2))
