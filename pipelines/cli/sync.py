"""`goalport sync devices|revoke|compact`: a user's sync devices, revoking one, and the
change log's compaction (also a daily schedule)."""

from __future__ import annotations

import click

from pipelines.cli.common import errors_as_user_errors, open_database, utc_minute


def _error_types() -> tuple[type[Exception], ...]:
    from assets.sync.devices import DeviceError
    from resources.database import DatabaseUnavailableError
    from resources.settings import SettingError

    return (DeviceError, DatabaseUnavailableError, SettingError)


sync_errors = errors_as_user_errors(_error_types)


@click.group("sync")
def sync_group() -> None:
    """Sync across devices: list and revoke a user's devices, compact the change log."""


@sync_group.command("devices")
@click.argument("user_id")
@sync_errors
def sync_devices(user_id: str) -> None:
    """USER_ID's devices: device id, state, first and last seen, last cursor, name."""
    from assets.sync.devices import list_devices

    for device in list_devices(open_database().engine, user_id):
        click.echo(
            "\t".join(
                [
                    device.device_id,
                    "revoked" if device.revoked_at else "active",
                    f"since {utc_minute(device.created_at)}",
                    f"seen {utc_minute(device.last_seen_at)}",
                    f"cursor {device.last_cursor if device.last_cursor is not None else '-'}",
                    device.name or "",
                ]
            )
        )


@sync_group.command("revoke")
@click.argument("user_id")
@click.argument("device_id")
@sync_errors
def sync_revoke(user_id: str, device_id: str) -> None:
    """Revoke USER_ID's device DEVICE_ID at once: its pulls and pushes get 403."""
    from assets.sync.devices import revoke_device

    device = revoke_device(open_database().engine, user_id, device_id)
    click.echo(f"{device.device_id}\trevoked {utc_minute(device.revoked_at)}")


@sync_group.command("compact")
@sync_errors
def sync_compact() -> None:
    """Drop what the change log keeps past GOALPORT_SYNC_RETENTION_DAYS (30)."""
    from assets.sync.changelog import compact_change_log
    from resources import settings

    done = compact_change_log(open_database().engine, settings.sync_retention())
    click.echo(
        f"horizon at seq {done.purged_through}: {done.tombstones_deleted} tombstones, "
        f"{done.images_deleted} row images, {done.receipts_deleted} push receipts deleted"
    )
