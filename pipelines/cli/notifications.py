"""`goalport notifications list [--dead]`, `goalport notifications deliver`: the webhook
outbox, its dead letters (every attempt failed), and a delivery of what is due now (what
`webhook_delivery_sensor`'s run does)."""

from __future__ import annotations

import click

from pipelines.cli.common import friendly_errors, open_database

STATUSES = ("pending", "sent", "dead")


@click.group()
def notifications() -> None:
    """Webhook notifications (the outbox): list them, deliver the due ones."""


@notifications.command("list")
@click.option("--dead", is_flag=True, help="only dead letters (every attempt failed)")
@click.option("--status", type=click.Choice(STATUSES), help="only this status")
@click.option("--user", "user_id", metavar="USER", help="only this user's")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@friendly_errors
def notifications_list(dead: bool, status: str | None, user_id: str | None, limit: int) -> None:
    """Notifications, newest first: id, event, status, attempts, queued, last error."""
    from assets.exports.notifications import list_notifications

    if dead and status not in (None, "dead"):
        raise click.BadParameter("--dead lists dead letters only", param_hint="--status")
    rows = list_notifications(
        open_database().engine, status="dead" if dead else status, user_id=user_id, limit=limit
    )
    if not rows:
        click.echo("no notifications")
        return
    for row in rows:
        queued = row["createdAt"].strftime("%Y-%m-%d %H:%M:%S")
        click.echo(
            f"{row['id']}\t{row['kind']}\t{row['status']}\t{row['attempts']} attempts\t"
            f"{queued}\t{row['lastError'] or '-'}"
        )


@notifications.command("deliver")
@friendly_errors
def notifications_deliver() -> None:
    """POST the notifications that are due now to GOALPORT_WEBHOOK_URL."""
    from assets.exports.notifications import deliver_notifications

    outcome = deliver_notifications(open_database().engine)
    if outcome.not_configured:
        click.echo("GOALPORT_WEBHOOK_URL is not set: nothing to deliver to", err=True)
        return
    click.echo(f"{len(outcome.sent)} notifications sent, {len(outcome.failed)} failed")
