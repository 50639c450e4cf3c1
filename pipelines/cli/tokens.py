"""`goalport tokens create|list|revoke`: personal API tokens for `goalport serve`.

A token is printed once, on the last line of `create`, and stored only as a hash.
"""

from __future__ import annotations

import datetime as dt

import click

from pipelines.cli.common import errors_as_user_errors, open_database, split_csv, utc_minute


def _error_types() -> tuple[type[Exception], ...]:
    from api.tokens import TokenError
    from resources.database import DatabaseUnavailableError

    return (TokenError, DatabaseUnavailableError)


token_errors = errors_as_user_errors(_error_types)


@click.group()
def tokens() -> None:
    """Personal API tokens: create, list, revoke."""


@tokens.command("create")
@click.argument("user_id")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="exports, imports, templates, backups, gdpr, audit, sync; repeat or separate with commas",
)
@click.option("--expires", "days", type=click.FloatRange(min=0, min_open=True), help="days")
@click.option("--name", help="a label to tell tokens apart, e.g. the device")
@token_errors
def tokens_create(user_id: str, scopes: tuple[str, ...], days: float | None, name: str | None):
    """Make a token for USER_ID; the token itself is the last line (shown only now)."""
    from api.tokens import create_token

    expires_in = dt.timedelta(days=days) if days is not None else None
    token, secret = create_token(
        open_database().engine, user_id, split_csv(scopes), expires_in=expires_in, name=name
    )
    click.echo(
        f"{token.id}\tscopes {','.join(token.scopes)}\texpires {utc_minute(token.expires_at)}",
        err=True,
    )
    click.echo("store it now: goalport keeps only its hash", err=True)
    click.echo(secret)


@tokens.command("list")
@click.argument("user_id")
@token_errors
def tokens_list(user_id: str) -> None:
    """USER_ID's tokens (never their secrets): id, state, scopes, expiry, last use, name."""
    from api.tokens import list_tokens
    from resources.audit import utc_now

    now = utc_now()
    for token in list_tokens(open_database().engine, user_id):
        click.echo(
            "\t".join(
                [
                    token.id,
                    token.state(now),
                    ",".join(token.scopes),
                    f"expires {utc_minute(token.expires_at)}",
                    f"used {utc_minute(token.last_used_at)}",
                    token.name or "",
                ]
            )
        )


@tokens.command("revoke")
@click.argument("token_id")
@token_errors
def tokens_revoke(token_id: str) -> None:
    """Revoke a token at once (its next request gets 401)."""
    from api.tokens import revoke_token

    token = revoke_token(open_database().engine, token_id)
    click.echo(f"{token.id}\trevoked {utc_minute(token.revoked_at)}")
