"""What a user's backups are, which of them to keep, deleting the rest, and erasing all.

**Retention** (`{"keep_last": N}`, or tiers `{"daily": d, "weekly": w, "monthly": m}`:
the newest backup of each of the last d days, w ISO weeks, m months, in the user's time
zone) runs only after a newer backup has been verified, and never deletes that backup or
anything newer than it.

A backup file is known by its name (`resources.storage_layout.backup_time_of`) below
`backups/<userId>/` at the user's destination; it counts as verified when its
`DataExportJob` row completed, which happens only after its restore drill.
"""

from __future__ import annotations

import datetime as dt
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from assets.backups.config import (
    BACKUP_EXPORT_TYPE,
    BackupConfig,
    Retention,
    delete_backup_config,
    get_backup_config,
)
from assets.backups.places import backup_places
from assets.exports.job_status import ExportStatus, expire_jobs
from resources.audit import record_audit
from resources.destinations.errors import DestinationError
from resources.keys import KeyVault
from resources.schema import data_export_job as job_table
from resources.storage import ObjectStorage
from resources.storage_layout import backup_folder, backup_time_of


def backups_to_delete(
    created: Sequence[dt.datetime], retention: Retention, timezone: str = "UTC"
) -> list[dt.datetime]:
    """Which of these backup times the policy lets go (newest first is kept first)."""
    ordered = sorted(set(created), reverse=True)
    keep: set[dt.datetime] = set()
    if retention.keep_last is not None:
        keep.update(ordered[: retention.keep_last])
    zone = ZoneInfo(timezone)
    tiers = (
        (retention.daily, lambda d: d.date()),
        (retention.weekly, lambda d: d.isocalendar()[:2]),
        (retention.monthly, lambda d: (d.year, d.month)),
    )
    for count, period in tiers:
        if not count:
            continue
        seen: list = []
        for moment in ordered:
            bucket = period(moment.astimezone(zone))
            if bucket in seen:
                continue
            if len(seen) == count:
                break
            seen.append(bucket)
            keep.add(moment)
    return [m for m in ordered if m not in keep]


def apply_retention(
    engine: sa.Engine,
    destination: ObjectStorage,
    user_id: str,
    retention: Retention,
    *,
    newest_verified: str,
    timezone: str = "UTC",
    earlier: Sequence[ObjectStorage] = (),
) -> list[str]:
    """Delete the user's backups the policy lets go, all older than `newest_verified` (a
    backup that has just passed its restore drill at `destination`); returns the deleted
    URLs. Backups at `earlier` destinations (ones the user has left) count with the rest:
    the policy keeps the newest wherever they are."""
    newest_time = backup_time_of(newest_verified)
    if newest_time is None:
        raise ValueError(f"{newest_verified!r} is not a backup file's key")
    files: dict[tuple[int, str], dt.datetime] = {}
    folder = backup_folder(user_id)
    places = [destination, *earlier]
    for index, place in enumerate(places):
        for key in place.list(folder):
            created = backup_time_of(key)
            if created is not None and posixpath.dirname(key) == folder:
                files[(index, key)] = created
    doomed_times = set(backups_to_delete(list(files.values()), retention, timezone))
    doomed = [
        (index, k)
        for (index, k), t in files.items()
        if t in doomed_times and t < newest_time and not (index == 0 and k == newest_verified)
    ]
    deleted = []
    for index, key in sorted(doomed):
        places[index].delete(key)
        deleted.append(places[index].object_url(key))
    if deleted:
        with engine.begin() as conn:
            expire_jobs(conn, file_urls=deleted)
            record_audit(
                conn,
                user_id=user_id,
                operation="backup_retention",
                operation_type="delete",
                record_count=len(deleted),
                details={
                    "deleted": deleted,
                    "retention": retention.as_dict(),
                    "newestVerified": destination.object_url(newest_verified),
                },
            )
    return deleted


@dataclass(frozen=True)
class BackupFile:
    url: str
    key: str
    created_at: dt.datetime
    size: int
    encrypted: bool
    verified: bool  # passed its restore drill when written


@dataclass
class BackupListing:
    files: list[BackupFile]  # newest first, wherever they are
    unreachable: dict[str, str]  # a destination's URL -> why it could not be listed


def list_backup_files(
    engine: sa.Engine,
    storage: ObjectStorage,
    user_id: str,
    config: BackupConfig | None = None,
    keys: KeyVault | None = None,
) -> BackupListing:
    """The user's backup files at their destination and at every earlier one that still
    holds some, newest first; the places that could not be reached, with the reason."""
    config = config or get_backup_config(engine, user_id) or BackupConfig(user_id=user_id)
    places = backup_places(engine, keys or KeyVault(), storage, config)
    found: list[tuple[ObjectStorage, str, dt.datetime]] = []
    for place in places.all:
        try:
            listed = place.list(backup_folder(user_id))
        except DestinationError as exc:
            places.unreachable[place.root] = str(exc)
            continue
        found.extend((place, k, t) for k in listed if (t := backup_time_of(k)))
    urls = [place.object_url(k) for place, k, _ in found]
    with engine.connect() as conn:
        verified = set(
            conn.execute(
                sa.select(job_table.c.fileUrl).where(
                    job_table.c.userId == user_id,
                    job_table.c.exportType == BACKUP_EXPORT_TYPE,
                    job_table.c.status == ExportStatus.COMPLETED.value,
                    job_table.c.fileUrl.in_(urls),
                )
            ).scalars()
        )
    files = [
        BackupFile(
            url=url,
            key=key,
            created_at=created,
            size=int(place.info(key).get("size") or 0),
            encrypted=key.endswith(".age"),
            verified=url in verified,
        )
        for (place, key, created), url in zip(found, urls, strict=True)
    ]
    files.sort(key=lambda f: f.created_at, reverse=True)
    return BackupListing(files, places.unreachable)


def list_backups(
    engine: sa.Engine,
    storage: ObjectStorage,
    user_id: str,
    config: BackupConfig | None = None,
    keys: KeyVault | None = None,
) -> list[BackupFile]:
    """The user's backup files wherever they are (see `list_backup_files`), newest first."""
    return list_backup_files(engine, storage, user_id, config, keys).files


def erase_user_backups(
    engine: sa.Engine, storage: ObjectStorage, user_id: str, keys: KeyVault | None = None
) -> int:
    """Delete every backup file of the user (main storage, their destination and every
    earlier one) and their configuration; returns the number of files deleted. For erasure,
    which also destroys the user's key so that copies elsewhere become unreadable."""
    config = get_backup_config(engine, user_id) or BackupConfig(user_id=user_id)
    places = backup_places(engine, keys or KeyVault(), storage, config)
    everywhere = {p.root: p for p in [storage, *places.all]}
    deleted = sum(place.delete_prefix(backup_folder(user_id)) for place in everywhere.values())
    delete_backup_config(engine, user_id)
    return deleted
