"""Shared helpers of the import tests: load a population, dump the database, export a user
with the real renderers, and run an import job end to end (preview, then apply)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from assets.formats.registry import FORMATS
from assets.imports.apply import apply_import
from assets.imports.jobs import create_import_job
from assets.imports.preview import preview_import
from resources import schema
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from synthetic.load import load_population
from synthetic.population import generate_population

EXPORTED_AT = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)
OWN_TABLES = ("DataImportJob", "ImportChange", "ExternalRef", "DataAuditLog")


def reset(engine: sa.Engine) -> None:
    """Empty every app table and goalport's import bookkeeping (between hypothesis cases)."""
    names = [*schema.APP_TABLE_NAMES, *OWN_TABLES]
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{n}"' for n in names) + " CASCADE"))


def populate(engine: sa.Engine, n_users: int, seed: int) -> list[str]:
    tables = generate_population(n_users, seed=seed, heavy_every=0)
    load_population(engine, tables)
    return tables["User"]["id"].to_pylist()


def dump(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every app table (all users), sorted: 'what the database holds'."""
    result = {}
    with engine.connect() as conn:
        for table in schema.APP_TABLES:
            rows = conn.execute(sa.select(table).order_by(table.c.id)).fetchall()
            result[table.name] = [tuple(r) for r in rows]
    return result


def export_user(database: AppDatabase, user_id: str, fmt: str, exported_at=EXPORTED_AT) -> bytes:
    tables = database.extract([user_id]).per_user()[user_id]
    return FORMATS[fmt].render(tables, user_id=user_id, exported_at=exported_at, filters=None)


def import_file(
    database: AppDatabase,
    storage: ObjectStorage,
    user_id: str,
    data: bytes,
    *,
    file_name: str = "export",
    mode: str = "merge",
    policy: str = "fail",
    modules=None,
    apply: bool = True,
    **preview_options,
):
    """Create a job, preview it and (by default) apply it; returns (job id, plan)."""
    job_id = create_import_job(
        database.engine,
        user_id=user_id,
        file_name=file_name,
        mode=mode,
        conflict_policy=policy,
        modules=modules,
    )
    preview = preview_import(database, storage, job_id, data, **preview_options)
    if apply:
        apply_import(database, storage, job_id)
    return job_id, preview.plan


def erase_user_rows(engine: sa.Engine, user_id: str, *, keep_account: bool) -> None:
    with engine.begin() as conn:
        if keep_account:
            for table in reversed(schema.APP_TABLES[1:]):
                conn.execute(sa.delete(table).where(table.c.userId == user_id))
        else:
            conn.execute(sa.delete(schema.user).where(schema.user.c.id == user_id))


def corrupt_user_rows(engine: sa.Engine, user_id: str, *, touch_updated_at: bool) -> None:
    """Change titles, drop some progress, add a goal that the export does not have."""
    goal, progress = schema.goal, schema.progress
    now = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as conn:
        values = {"title": "corrupted", "priority": 1}
        if touch_updated_at:
            values["updatedAt"] = now
        first = (
            conn.execute(
                sa.select(goal.c.id).where(goal.c.userId == user_id).order_by(goal.c.id).limit(3)
            )
            .scalars()
            .all()
        )
        conn.execute(goal.update().where(goal.c.id.in_(first)).values(**values))
        some = (
            conn.execute(
                sa.select(progress.c.id)
                .where(progress.c.userId == user_id)
                .order_by(progress.c.id)
                .limit(5)
            )
            .scalars()
            .all()
        )
        conn.execute(progress.delete().where(progress.c.id.in_(some)))
        conn.execute(
            schema.user.update()
            .where(schema.user.c.id == user_id)
            .values(firstName="Someone", lastName="Else")
        )
        conn.execute(
            goal.insert().values(
                id="cextra000000000000000000x",
                userId=user_id,
                title="not in the export",
                priority=3,
                isCompleted=False,
                createdAt=now,
                updatedAt=now,
            )
        )
