"""`goalport db upgrade`, `goalport seed` and `goalport demo`: an install from nothing to
exported files, on the embedded default (SQLite and ./var/storage) or on the configured
database and storage.
"""

from __future__ import annotations

import click

from pipelines.cli.common import (
    UserError,
    dagster_instance,
    friendly_errors,
    open_database,
    open_storage,
)
from resources import settings
from resources.storage_layout import EXPORTS_PREFIX, export_folder


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@friendly_errors
def db_upgrade() -> None:
    """Create or migrate goalport's tables (and the app's, on a new database)."""
    import sqlalchemy as sa

    from migrations import upgrade

    url = settings.database_url()
    try:
        upgrade(url)
    except sa.exc.OperationalError as exc:
        where = sa.make_url(url).render_as_string()
        raise UserError(f"cannot migrate {where}: {exc.orig}") from exc
    click.echo(f"database at {sa.make_url(url).render_as_string()} is up to date")


@click.command()
@click.option("--users", "n_users", type=click.IntRange(min=1), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--heavy-every",
    type=click.IntRange(min=0),
    default=2000,
    show_default=True,
    help="every Nth user (from the second) gets 50,000+ progress rows; 0 for none",
)
@friendly_errors
def seed(n_users: int, seed: int, heavy_every: int) -> None:
    """Fill the database with deterministic, realistic synthetic users."""
    from synthetic.seed import seed_database

    try:
        counts = seed_database(settings.database_url(), n_users, seed=seed, heavy_every=heavy_every)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    click.echo(", ".join(f"{name} {count}" for name, count in counts.items()))


@click.command()
@click.option("--users", "n_users", type=click.IntRange(min=1), default=5, show_default=True)
@friendly_errors
def demo(n_users: int) -> None:
    """Migrate, seed demo users if the database is empty, run the export job, show the files."""
    import dagster as dg

    from assets.exports.defs import ExportConfig, export_job
    from migrations import upgrade
    from pipelines.definitions import defs
    from synthetic.seed import seed_database

    database_url = settings.database_url()
    upgrade(database_url)
    database = open_database(database_url)
    user_ids = database.all_user_ids()
    if not user_ids:
        click.echo(f"seeding {n_users} demo users into {database_url}")
        seed_database(database_url, n_users, seed=0, heavy_every=0)
        user_ids = database.all_user_ids()
    storage = open_storage()
    click.echo(f"running export_job for {len(user_ids)} users, every format ...")
    job = defs.resolve_job_def(export_job.name)
    result = job.execute_in_process(
        run_config=dg.RunConfig(
            ops={
                "extracted_batch": ExportConfig(
                    user_ids=user_ids, formats=["json", "csv", "xlsx", "parquet"]
                )
            }
        ),
        instance=dagster_instance(),
    )
    if not result.success:
        raise UserError("the export job failed; see the log above")
    keys = sorted(k for u in user_ids for k in storage.list(export_folder(u)))
    click.echo(f"\nwrote {len(keys)} files under {storage.root}/{EXPORTS_PREFIX}:")
    for key in keys:
        click.echo(f"  {storage.object_url(key)}  ({storage.info(key)['size']} bytes)")
    click.echo(f"\ndatabase: {database_url}")
