"""`goalport portal link USER`: a single-use sign-in link to the "Your data" portal.

The app's backend (or an operator) gives it to the user; it works once, for 15 minutes.
Printed on the last line: absolute on GOALPORT_PUBLIC_URL, relative when that is unset.
"""

from __future__ import annotations

import click

from pipelines.cli.common import errors_as_user_errors, open_database


def _error_types() -> tuple[type[Exception], ...]:
    from portal.sessions import SignInError
    from resources.database import DatabaseUnavailableError

    return (SignInError, DatabaseUnavailableError)


portal_errors = errors_as_user_errors(_error_types)


@click.group()
def portal() -> None:
    """The "Your data" portal served by `goalport serve` under /portal."""


@portal.command("link")
@click.argument("user_id")
@portal_errors
def portal_link(user_id: str) -> None:
    """A sign-in link for USER_ID (last line): single use, valid for 15 minutes."""
    from portal.sessions import LINK_LIFETIME, create_sign_in_link, portal_key
    from resources import settings

    link = create_sign_in_link(
        open_database().engine,
        portal_key(settings.download_secret()),
        user_id,
        public_url=settings.public_url(),
    )
    minutes = int(LINK_LIFETIME.total_seconds() // 60)
    click.echo(f"single use, valid for {minutes} minutes; it signs in as this user", err=True)
    click.echo(link)
