"""`goalport backup connect USER PROVIDER`: connect a user's Dropbox, Google Drive or
OneDrive as their backup destination from a terminal, until the portal's button exists.

It prints the provider's authorisation URL (OAuth with PKCE, `resources.destinations.oauth`),
the person opens it and consents, and pastes back the address their browser was sent to
(the API's callback URL, which needs no running API here) or just its `code`.
"""

from __future__ import annotations

import click

from pipelines.cli.common import errors_as_user_errors, friendly_errors, open_database
from resources import settings


def _destination_error_types() -> tuple[type[Exception], ...]:
    from assets.backups.config import BackupConfigError
    from resources.destinations.errors import DestinationError
    from resources.keys import KeyCustodyError

    return (DestinationError, KeyCustodyError, BackupConfigError)


destination_errors = errors_as_user_errors(_destination_error_types)


@click.command("connect")
@click.argument("user_id")
@click.argument("provider", type=click.Choice(["dropbox", "gdrive", "onedrive"]))
@click.option("--folder", default="goalport", show_default=True, help="where backups go there")
@friendly_errors
@destination_errors
def connect(user_id: str, provider: str, folder: str) -> None:
    """Connect USER_ID's PROVIDER account; their backups then go to PROVIDER://FOLDER."""
    from assets.backups.config import save_backup_config
    from resources.destinations.oauth import finish_connection, parse_redirect, start_connection
    from resources.keys import KeyVault

    database = open_database()
    keys = KeyVault()
    authorization = start_connection(database.engine, keys, user_id, provider, folder)
    minutes = max(1, int(settings.oauth_state_ttl().total_seconds() // 60))
    click.echo("Open this address, sign in and allow goalport access:")
    click.echo(authorization.url)
    click.echo(f"(within {minutes} minutes)", err=True)
    pasted = click.prompt("Paste the address your browser was sent back to (or its code)", err=True)
    answer = parse_redirect(pasted)
    connection = finish_connection(
        database.engine,
        keys,
        provider,
        state=answer.get("state", authorization.state),
        code=answer.get("code"),
        error=answer.get("error"),
        user_id=user_id,
    )
    save_backup_config(
        database.engine, user_id, actor="cli", destination_url=connection.destination_url
    )
    click.echo(f"Connected: {user_id}'s backups now go to {connection.destination_url}")
