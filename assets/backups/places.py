"""Where a user's backups are: the destination they chose now (or goalport's main storage),
and every destination they chose before that still holds backups of theirs.

A backup written to a destination of the user's records a `FileLocation` (kind `backup`,
the user's backup folder there). When the user changes destination, the old one is
remembered through that row, with its credentials, until it is empty: retention, listing,
restores and erasure reach it like the current one. Retention emptying an old place
forgets it and its credentials (`forget_emptied_place`).

A destination that cannot be reached (revoked credentials) fails what needs it with a
`DestinationError` saying so; listing shows the places it could reach and names the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.backups.config import BackupConfig, BackupConfigError
from resources.audit import subject_ref
from resources.destinations.credentials import forget_place_credentials
from resources.destinations.errors import DestinationError
from resources.destinations.storage import (
    is_user_destination,
    open_destination,
    storage_at,
)
from resources.erasure_fence import file_locations, forget_file_locations
from resources.keys import KeyVault
from resources.storage import ObjectStorage
from resources.storage_layout import backup_folder

BACKUP_LOCATION_KIND = "backup"


def current_destination(
    engine: sa.Engine, keys: KeyVault, config: BackupConfig, storage: ObjectStorage
) -> ObjectStorage:
    """Where this configuration's next backup goes: its destination, opened with the
    user's credentials, else the main storage."""
    url = config.destination_url
    if not url:
        return storage
    if not is_user_destination(url):
        raise BackupConfigError(
            "the backup destination is not one users may choose any more (a local path or "
            "an unsupported URL): configure a destination such as s3://, az://, gs://, "
            "webdav+https:// or sftp://"
        )
    return open_destination(engine, keys, config.user_id, url)


def remembered_urls(engine: sa.Engine, user_id: str) -> list[str]:
    """The destination URLs holding backups of the user, as recorded (oldest first)."""
    with engine.connect() as conn:
        located = file_locations(conn, subject_ref(user_id))
    folder = backup_folder(user_id)
    return list(
        dict.fromkeys(
            loc.storage_url
            for loc in located
            if loc.kind == BACKUP_LOCATION_KIND and loc.key == folder
        )
    )


@dataclass
class BackupPlaces:
    """The places a user's backups are, opened; `unreachable` names the ones that failed."""

    current: ObjectStorage | None
    earlier: list[ObjectStorage] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)  # URL -> why

    @property
    def all(self) -> list[ObjectStorage]:
        return [p for p in (self.current, *self.earlier) if p is not None]


def backup_places(
    engine: sa.Engine,
    keys: KeyVault,
    storage: ObjectStorage,
    config: BackupConfig,
    *,
    current: ObjectStorage | None = None,
) -> BackupPlaces:
    """The user's current place (`current` when the caller has it open) and every earlier
    one still recorded."""
    places = BackupPlaces(current=current)
    if current is None:
        try:
            places.current = current_destination(engine, keys, config, storage)
        except (DestinationError, BackupConfigError) as exc:
            places.unreachable[config.destination_url or storage.root] = str(exc)
    seen = {p.root for p in places.all} | set(places.unreachable)
    subject = subject_ref(config.user_id)
    for url in remembered_urls(engine, config.user_id):
        if url in seen:
            continue
        seen.add(url)
        try:
            places.earlier.append(storage_at(engine, keys, subject, url))
        except DestinationError as exc:
            places.unreachable[url] = str(exc)
    return places


def forget_emptied_place(
    engine: sa.Engine, place: ObjectStorage, user_id: str, still_chosen: Sequence[str]
) -> bool:
    """If `place` no longer holds anything of the user's backups and is not their chosen
    destination, forget it: its recorded location and its credentials. True if forgotten."""
    if place.root in still_chosen or place.list_including_unfinished(backup_folder(user_id)):
        return False
    subject = subject_ref(user_id)
    with engine.begin() as conn:
        gone = [
            loc.id
            for loc in file_locations(conn, subject)
            if loc.storage_url == place.root and loc.kind == BACKUP_LOCATION_KIND
        ]
        forget_file_locations(conn, gone)
        if not any(loc.storage_url == place.root for loc in file_locations(conn, subject)):
            forget_place_credentials(conn, subject, place.root)
    return True
