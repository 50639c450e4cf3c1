"""What every `goalport` command shares: errors as one line and exit status 1, the database
and storage it works on, reading the file a person names, and the options several areas
spell the same way.

Area modules import this module and their areas' services, never `pipelines.cli.main`
(which imports them: that would be an import cycle). Heavy modules are imported when a
command runs, so `goalport --help` stays fast.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable

import click

from resources import settings


class UserError(click.ClickException):
    """A message for the person at the keyboard, exit status 1."""


def errors_as_user_errors(load_error_types: Callable[[], tuple[type[Exception], ...]]):
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
    from resources.audit import UserErasedError
    from resources.database import DatabaseUnavailableError
    from resources.settings import SettingError
    from resources.storage import StorageError

    return (
        ExportRequestError,
        DatabaseUnavailableError,
        SettingError,
        StorageError,
        UserErasedError,
    )


friendly_errors = errors_as_user_errors(_core_error_types)
"""Turn goalport's own error types into one clear line and exit status 1."""


def open_database(url: str | None = None):
    """The app database, checked reachable and migrated."""
    from resources.database import AppDatabase

    database = AppDatabase(url=url or "")
    database.check_reachable()
    return database


def open_storage(url: str | None = None):
    """goalport's storage (GOALPORT_STORAGE_URL), or the folder or prefix `url` names."""
    from resources.storage import ObjectStorage

    return ObjectStorage(url=url or "")


def dagster_instance():
    """The instance under DAGSTER_HOME when it is set (runs show in `make dev`), else a
    throwaway one."""
    import dagster as dg

    if settings.dagster_home():
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def read_file(location: str):
    """The `SourceFile` at a local path or a `file://`/`s3://` URL a person typed, with the
    operator's rules of `resources.sources` (a Dagster run's are stricter)."""
    from resources.sources import OPERATOR, read_source

    return read_source(location, rules=OPERATOR)


def passphrase_from(variable: str, option: str = "--passphrase-env") -> str:
    """The passphrase in the environment variable a person named; never on the command
    line, where `ps` and shell history would keep it."""
    value = settings.secret_from_variable(variable)
    if value is None:
        raise UserError(f"{option} {variable}: that environment variable is not set or empty")
    return value


def identities_from(identity_file: str | None) -> list[str]:
    """The age identities in the file a person named with `--identity` (none if no file)."""
    if not identity_file:
        return []
    from resources import age

    with open(identity_file, "rb") as handle:
        return age.parse_identity_file(handle.read())


def split_csv(values: tuple[str, ...] | str | None) -> list[str]:
    """`--x a,b --x c` and `--x a --x b,c` both mean [a, b, c]."""
    if not values:
        return []
    if isinstance(values, str):
        values = (values,)
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def utc_minute(moment: dt.datetime | None) -> str:
    """A moment as people read it in a listing, in UTC (SQLite's naive values are UTC)."""
    if moment is None:
        return "-"
    from resources.schema import as_utc  # pyarrow + SQLAlchemy, ~0.3 s: not for `--help`

    return as_utc(moment).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# Options several commands share, spelt once.
modules_option = click.option(
    "--modules", multiple=True, help="only these module kinds, e.g. fitness,bible"
)
since_option = click.option("--since", help="activity on or after this date (YYYY-MM-DD)")
until_option = click.option("--until", help="activity on or before this date (YYYY-MM-DD)")
out_option = click.option(
    "--out", "out_url", help="folder or s3://bucket/prefix (default GOALPORT_STORAGE_URL)"
)


def identity_option(help_text: str):
    """`--identity FILE`: an age identity file to decrypt with (`identities_from`)."""
    return click.option(
        "--identity", "identity_file", type=click.Path(exists=True, dir_okay=False), help=help_text
    )


def passphrase_env_option(help_text: str, metavar: str = "VAR"):
    """`--passphrase-env VAR`: the variable that holds a passphrase (`passphrase_from`)."""
    return click.option("--passphrase-env", metavar=metavar, help=help_text)
