"""The `goalport` command line: the same code paths as the Dagster jobs, for operators,
scripts and installs without the Dagster daemon.

Commands import their heavy modules when they run, so `goalport --help` stays fast.
Errors a user can act on end in one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import functools
import sys

import click

from resources import settings


class UserError(click.ClickException):
    """A message for the person at the keyboard, exit status 1."""


def errors_as_user_errors(load_error_types):
    """A decorator: the exception types `load_error_types()` returns (imported when a command
    runs, so `--help` stays fast) end as one clear line and exit status 1."""

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                return command(*args, **kwargs)
            except load_error_types() as exc:
                raise UserError(str(exc)) from exc

        return wrapper

    return decorate


def _core_error_types() -> tuple[type[Exception], ...]:
    from assets.exports.batches import ExportRequestError
    from resources.database import DatabaseUnavailableError
    from resources.storage import StorageError

    return (ExportRequestError, DatabaseUnavailableError, StorageError)


friendly_errors = errors_as_user_errors(_core_error_types)
"""Turn goalport's own error types into one clear line and exit status 1."""


def open_database(url: str | None = None):
    """The app database, checked reachable and migrated."""
    from resources.database import AppDatabase

    database = AppDatabase(url=url or "")
    database.check_reachable()
    return database


def open_storage(url: str | None = None):
    from resources.storage import ObjectStorage

    return ObjectStorage(url=url or "")


def dagster_instance():
    """The instance under DAGSTER_HOME when it is set (runs show in `make dev`), else a
    throwaway one."""
    import os

    import dagster as dg

    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def split_csv(values: tuple[str, ...] | str | None) -> list[str]:
    """`--x a,b --x c` and `--x a --x b,c` both mean [a, b, c]."""
    if not values:
        return []
    if isinstance(values, str):
        values = (values,)
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@click.group()
@click.version_option(package_name="goalport")
def main() -> None:
    """goalport: export, back up, erase and import Goal Assistant data.

    Configured by GOALPORT_DATABASE_URL and GOALPORT_STORAGE_URL; without them, a SQLite
    database and a storage folder under ./var.
    """


@main.group()
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


@main.command()
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
    from synthetic import seed_database

    try:
        counts = seed_database(settings.database_url(), n_users, seed=seed, heavy_every=heavy_every)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    click.echo(", ".join(f"{name} {count}" for name, count in counts.items()))


@main.command()
@click.argument("user_ids", nargs=-1, required=True)
@click.option(
    "--format",
    "formats",
    multiple=True,
    default=("json",),
    show_default=True,
    help="json, csv, xlsx or parquet; repeat or separate with commas",
)
@click.option("--modules", multiple=True, help="only these module kinds, e.g. fitness,bible")
@click.option("--since", help="activity on or after this date (YYYY-MM-DD)")
@click.option("--until", help="activity on or before this date (YYYY-MM-DD)")
@click.option(
    "--out", "out_url", help="folder or s3://bucket/prefix (default GOALPORT_STORAGE_URL)"
)
@friendly_errors
def export(user_ids, formats, modules, since, until, out_url) -> None:
    """Export users' data now, in one batch, and print where each file went."""
    from assets.exports.batches import ExportRequestError, check_formats, export_users, make_filter

    chosen = check_formats(split_csv(formats))
    filters = make_filter(split_csv(modules) or None, since, until)
    database = open_database()
    unknown = sorted(set(user_ids) - database.existing_user_ids(user_ids))
    if unknown:
        raise ExportRequestError(f"unknown user id: {', '.join(unknown)}")
    storage = open_storage(out_url)
    storage.check_writable()
    with click.progressbar(length=len(set(user_ids)), label="exporting", file=sys.stderr) as bar:
        result = export_users(
            database,
            storage,
            user_ids,
            chosen,
            filters,
            on_user_done=lambda _uid, _files: bar.update(1),
        )
    for f in result.files:
        click.echo(f"{f.user_id}\t{f.format}\t{f.stored.size}\t{f.stored.url}")
    for user_id, reason in sorted(result.failed_users.items()):
        click.echo(f"{user_id}\tFAILED\t{reason}", err=True)
    if result.failed_users:
        raise UserError(
            f"{len(result.failed_users)} of {len(set(user_ids))} users not exported (see above)"
        )


@main.command()
@click.option("--users", "n_users", type=click.IntRange(min=1), default=5, show_default=True)
@friendly_errors
def demo(n_users: int) -> None:
    """Migrate, seed demo users if the database is empty, run the export job, show the files."""
    import dagster as dg

    from assets.exports.defs.assets import ExportConfig, export_job
    from migrations import upgrade
    from pipelines.definitions import defs
    from synthetic import seed_database

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
    keys = [k for k in storage.list("exports") if any(f"exports/{u}/" in k for u in user_ids)]
    click.echo(f"\nwrote {len(keys)} files under {storage.root}/exports:")
    for key in keys:
        click.echo(f"  {storage.object_url(key)}  ({storage.info(key)['size']} bytes)")
    click.echo(f"\ndatabase: {database_url}")


# Each area's commands live in its own module and register here, one line each.
# (Imported at the bottom: those modules import UserError and friends from this one.)
from pipelines.cli import areas as cli_areas  # noqa: E402

cli_areas.register(main)

if __name__ == "__main__":
    main()
