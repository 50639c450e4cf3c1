"""Import benchmark: preview and apply of a 50,000-row goalport export into PostgreSQL,
against applying the same rows one by one through the SQLAlchemy ORM in the same run.

`run(pg_url)` takes the URL of a PostgreSQL server (any database on it), works in a scratch
database of its own that it drops afterwards, prints a summary and returns the
measurements; nothing here asserts. The ORM baseline is what a straightforward importer
does: for each row, look it up by id, add it, add its ImportChange record, in one
transaction. It costs about 10 ms a row here (minutes for 50,000), so by default it runs
on the first GOALPORT_BENCH_ORM_ROWS rows (5,000) and its time per row is scaled to the
whole import; set GOALPORT_BENCH_ORM_ROWS=0 to run it on every row.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pyarrow as pa
import sqlalchemy as sa

if TYPE_CHECKING:
    from resources.database import AppDatabase

ROWS = 50_000
SCRATCH_PREFIX = "goalport_import_bench_"


@contextmanager
def scratch_database(server_url: str) -> Iterator[AppDatabase]:
    """A new, empty database on the server of `server_url`, dropped afterwards: the bench
    database is shared by every section and stays as it is."""
    from resources.database import AppDatabase

    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    database = AppDatabase(
        url=sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    )
    try:
        yield database
    finally:
        database.engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def heavy_user_tables(rows: int = ROWS, seed: int = 7) -> tuple[str, dict[str, pa.Table]]:
    """One seeded heavy user's tables, progress trimmed so that every table adds up to `rows`."""
    from resources.database import split_by_user
    from synthetic.population import generate_population

    population = generate_population(2, seed=seed, heavy_every=1)
    counts = pa.TableGroupBy(population["Progress"], "userId").aggregate([("id", "count")])
    user_id = counts.sort_by([("id_count", "descending")])["userId"][0].as_py()
    tables = {}
    for name, table in population.items():
        owner = "id" if name == "User" else "userId"
        parts = dict(split_by_user(table, owner))
        tables[name] = parts.get(user_id, table.slice(0, 0))
    others = sum(t.num_rows for n, t in tables.items() if n != "Progress")
    tables["Progress"] = tables["Progress"].slice(0, max(0, rows - others))
    return user_id, tables


def orm_comparison_text(result: dict, orm_estimate: float) -> str:
    """The line that puts the bulk apply beside the row-by-row ORM baseline (`_orm_apply`)."""
    return (
        f"row by row through the ORM: {result['orm_ms_per_row']:.2f} ms a row (measured on "
        f"{result['orm_rows_measured']:,} rows), {orm_estimate:.0f} s for all: bulk apply is "
        f"{result['apply_speedup_vs_orm']:.0f}x faster"
    )


def _orm_apply(
    engine: sa.Engine, user_id: str, tables: dict[str, pa.Table], job_id: str, limit: int | None
) -> tuple[float, int]:
    """Row by row through the ORM: get, add, record the change; one commit at the end.
    Returns the seconds and the rows written (the first `limit` rows, parents first)."""
    from sqlalchemy import orm

    from assets.imports.row_json import rows_as_json
    from resources import schema

    registry = orm.registry()
    classes = {}
    for table in [*schema.APP_TABLES, schema.import_change]:
        cls = type(f"Orm{table.name}", (), {})
        registry.map_imperatively(cls, table)
        classes[table.name] = cls
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    with orm.Session(engine) as session:
        number = 0
        for table in schema.APP_TABLES:
            if table.name == "User":
                continue
            arrow = tables[table.name]
            if limit is not None:
                arrow = arrow.slice(0, max(0, limit - number))
            for row, after in zip(arrow.to_pylist(), rows_as_json(arrow), strict=True):
                model = classes[table.name]
                if session.get(model, row["id"]) is None:
                    session.add(model(**row))
                number += 1
                session.add(
                    classes["ImportChange"](
                        id=f"orm_{job_id}_{number:07d}",
                        importJobId=job_id,
                        userId=user_id,
                        tableName=table.name,
                        rowId=row["id"],
                        action="create",
                        before=None,
                        after=after,
                        createdAt=now,
                    )
                )
        session.commit()
    registry.dispose()
    return time.perf_counter() - started, number


def run(pg_url: str) -> dict:
    """Measure preview, apply and the ORM baseline on `ROWS` rows; returns the numbers."""
    from assets.formats.json import render_json
    from assets.imports.apply import apply_import
    from assets.imports.jobs import create_import_job
    from assets.imports.preview import preview_import
    from migrations import upgrade
    from resources import schema
    from resources.storage import ObjectStorage
    from synthetic.load import load_population

    with scratch_database(pg_url) as database:
        url = database.url
        upgrade(url)
        user_id, tables = heavy_user_tables()
        rows = sum(t.num_rows for t in tables.values())
        load_population(database.engine, {"User": tables["User"]})
        exported_at = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
        data = render_json(tables, user_id=user_id, exported_at=exported_at)
        with tempfile.TemporaryDirectory() as folder:
            storage = ObjectStorage(url=folder)

            def job() -> str:
                return create_import_job(database.engine, user_id=user_id, file_name="bench.json")

            first = job()
            started = time.perf_counter()
            preview = preview_import(database, storage, first, data)
            preview_seconds = time.perf_counter() - started
            started = time.perf_counter()
            applied = apply_import(database, storage, first)
            apply_seconds = time.perf_counter() - started

            second = job()
            started = time.perf_counter()
            again = preview_import(database, storage, second, data)
            repeat_preview_seconds = time.perf_counter() - started

        with database.engine.begin() as conn:
            for table in reversed(schema.APP_TABLES[1:]):
                conn.execute(sa.delete(table).where(table.c.userId == user_id))
            conn.execute(sa.delete(schema.import_change))
        sample = int(os.environ.get("GOALPORT_BENCH_ORM_ROWS", "5000")) or None
        orm_seconds, orm_rows = _orm_apply(database.engine, user_id, tables, "orm", sample)
        orm_estimate = orm_seconds / orm_rows * (rows - 1)
        result = {
            "rows": rows,
            "file_bytes": len(data),
            "preview_seconds": round(preview_seconds, 3),
            "apply_seconds": round(apply_seconds, 3),
            "apply_statements": applied.statements,
            "changes_recorded": applied.changes_recorded,
            "created": preview.plan.totals()["create"],
            "repeat_preview_seconds": round(repeat_preview_seconds, 3),
            "repeat_preview_changes": again.plan.row_writes,
            "orm_rows_measured": orm_rows,
            "orm_seconds_measured": round(orm_seconds, 3),
            "orm_ms_per_row": round(1000 * orm_seconds / orm_rows, 3),
            "orm_apply_seconds_for_all_rows": round(orm_estimate, 1),
            "apply_speedup_vs_orm": round(orm_estimate / apply_seconds, 1),
            "target_speedup": 10,
        }
        print(
            f"import of {rows:,} rows ({len(data) / 1e6:.1f} MB JSON): preview "
            f"{preview_seconds:.2f} s, apply {apply_seconds:.2f} s in one transaction "
            f"({applied.statements} statements), same file again: preview "
            f"{repeat_preview_seconds:.2f} s, {again.plan.row_writes} changes"
        )
        print(orm_comparison_text(result, orm_estimate) + " (target 10x)")
        return result


if __name__ == "__main__":
    import json

    from bench.run import server_url

    print(json.dumps(run(server_url()), indent=2))
