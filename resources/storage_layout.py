"""Where goalport's files live in object storage: the one module that knows the key layout.

Every file goalport writes about a user sits in one folder of that user per area,
`<area>/<user id>/...` (USER_AREAS), so that erasure deletes and verifies a user by listing
`user_prefixes(user_id)`, and a new per-user area added here is erased and checked with no
change anywhere else (the import plans were once missed for want of this list). Backups
keep the same `backups/<user>/` folder below a destination the user chose. The template
catalog is the one shared area and holds nothing personal.

Times in names are UTC to the microsecond (`STAMP_FORMAT`), so names sort by time. Plain
Python: the writers (exports, backups, GDPR, imports, templates), erasure and the CLI
import it, and it imports nothing of goalport's.
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
from dataclasses import dataclass

EXPORTS_PREFIX = "exports"
BACKUPS_PREFIX = "backups"
GDPR_PREFIX = "gdpr"
INBOX_PREFIX = "imports/inbox"
PLANS_PREFIX = "imports/plans"
UPLOADS_PREFIX = "imports/uploads"
# Every area that holds files of one user below `<area>/<user id>/`. The names carry no
# personal data: erasure receipts count deleted files by them.
USER_AREAS = (
    EXPORTS_PREFIX,
    BACKUPS_PREFIX,
    GDPR_PREFIX,
    INBOX_PREFIX,
    PLANS_PREFIX,
    UPLOADS_PREFIX,
)

CATALOG_PREFIX = "templates/catalog"

STAMP_FORMAT = "%Y%m%dT%H%M%S%fZ"
_BACKUP_NAME = re.compile(r"goalport-backup-(\d{8}T\d{12}Z)\.zip(\.age)?$")


class StorageLayoutError(ValueError):
    """A user id that cannot name a folder of its own; the message names it."""


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime(STAMP_FORMAT)


def user_folder(area: str, user_id: str) -> str:
    """`<area>/<user id>`: the folder that holds only this user's files in `area`.

    An id with a slash would put one user's folder inside another's (erasing "a" would
    delete "a/b"'s files), so it is refused, as are "." and "..".
    """
    if not user_id or "/" in user_id or user_id in (".", ".."):
        raise StorageLayoutError(f"user id {user_id!r} cannot name a storage folder")
    return f"{area}/{user_id}"


def user_prefixes(user_id: str) -> dict[str, str]:
    """Every folder of the main storage that holds this user's files, by area."""
    return {area: user_folder(area, user_id) for area in USER_AREAS}


def destination_prefixes(user_id: str) -> list[str]:
    """The user's folders below a backup destination they chose (not the main storage)."""
    return [backup_folder(user_id)]


# ---------------------------------------------------------------- exports


def export_folder(user_id: str) -> str:
    return user_folder(EXPORTS_PREFIX, user_id)


def export_key(user_id: str, extension: str, exported_at: dt.datetime, suffix: str = "") -> str:
    """exports/<user>/<UTC time>[-<suffix>].<ext>: one folder per user, erasable as a whole."""
    tail = f"-{suffix}" if suffix else ""
    return f"{export_folder(user_id)}/{_stamp(exported_at)}{tail}.{extension}"


def passphrase_export_key(user_id: str, created_at: dt.datetime, job_id: str) -> str:
    """exports/<user>/goalport-backup-<UTC time>-<job>.zip.age: a backup archive sealed
    with the user's passphrase, downloadable and expiring like any export."""
    return f"{export_folder(user_id)}/goalport-backup-{_stamp(created_at)}-{job_id}.zip.age"


# ---------------------------------------------------------------- backups


def backup_folder(user_id: str) -> str:
    """backups/<user>: where a user's backup files are, below any destination."""
    return user_folder(BACKUPS_PREFIX, user_id)


def backup_key(user_id: str, created_at: dt.datetime, encrypted: bool) -> str:
    """backups/<user>/goalport-backup-<UTC time>.zip[.age]: names sort by time."""
    suffix = ".zip.age" if encrypted else ".zip"
    return f"{backup_folder(user_id)}/goalport-backup-{_stamp(created_at)}{suffix}"


def backup_time_of(key: str) -> dt.datetime | None:
    """The creation time in a backup file's name, or None if it is not a backup file."""
    match = _BACKUP_NAME.search(posixpath.basename(key))
    if match is None:
        return None
    return dt.datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------- GDPR


def gdpr_folder(user_id: str) -> str:
    return user_folder(GDPR_PREFIX, user_id)


def gdpr_bundle_key(user_id: str, exported_at: dt.datetime) -> str:
    """gdpr/<user>/<UTC time>.zip: one folder per user, erased as a whole."""
    return f"{gdpr_folder(user_id)}/{_stamp(exported_at)}.zip"


# ---------------------------------------------------------------- imports


def inbox_folder(user_id: str) -> str:
    """imports/inbox/<user>: files dropped here are imported into that user's data."""
    return user_folder(INBOX_PREFIX, user_id)


@dataclass(frozen=True)
class InboxFile:
    """An object of the import inbox: whose it is and the name it was dropped with."""

    user_id: str
    file_name: str


def parse_inbox_key(key: str) -> InboxFile | None:
    """The owner and file name of `imports/inbox/<user>/[...]/<file>`; None for a key that
    is not inside a user's inbox folder (such a file belongs to nobody and is not imported)."""
    inbox = INBOX_PREFIX + "/"
    if not key.startswith(inbox):
        return None
    user_id, _, rest = key[len(inbox) :].partition("/")
    file_name = rest.rsplit("/", 1)[-1]
    if not user_id or user_id in (".", "..") or not file_name:
        return None
    return InboxFile(user_id, file_name)


def plan_key(user_id: str, job_id: str) -> str:
    """imports/plans/<user>/<job>.plan: where a job's plan waits between preview and apply."""
    return f"{user_folder(PLANS_PREFIX, user_id)}/{job_id}.plan"


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


def upload_key(user_id: str, job_id: str, file_name: str) -> str:
    """imports/uploads/<user>/<job>/<file>: a file uploaded through the API for one import
    job (not the inbox: the inbox sensor would make a second job of it). The name keeps
    only plain characters, so a client's name cannot climb out of the folder."""
    base = _UNSAFE_NAME.sub("_", posixpath.basename(file_name.replace("\\", "/"))).strip(" .")
    return f"{user_folder(UPLOADS_PREFIX, user_id)}/{job_id}/{base[:120] or 'upload'}"


# ---------------------------------------------------------------- the template catalog


def catalog_index_key() -> str:
    return f"{CATALOG_PREFIX}/index.json"


def catalog_version_key(template_key: str, version: int) -> str:
    return f"{CATALOG_PREFIX}/{template_key}/v{version}.json"
