"""Dropbox, Google Drive and OneDrive as fsspec filesystems, over their documented HTTP APIs:
the entry point. The common part is cloud_drive_base.py, each provider its own module
(dropbox_fs.py, google_drive_fs.py, onedrive_fs.py).

`cloud_drive_filesystem("dropbox://…" | "gdrive://…" | "onedrive://…", secrets, save_secrets)`
gives a filesystem whose paths are the URL's without its scheme ("dropbox://goalport/x.age"
is the file x.age in the user's folder "goalport"), like s3fs's.

Why goalport's own small filesystems rather than dropboxdrivefs, gdrive-fsspec or
msgraphfs: goalport needs (1) every endpoint to be a setting, so tests reach fake providers
on plain-http loopback, (2) every refreshed token handed to `save_secrets`, to be stored
wrapped, and (3) a revoked grant told apart from a passing failure. The official Dropbox
SDK under dropboxdrivefs builds https:// URLs to its fixed hosts and refreshes tokens
internally; the other two were not evaluated further once the three APIs turned out to be a
few documented calls each. The doc pages are cited where they are used, and the tests'
fake providers (tests/destinations/fake_clouds.py) follow the same pages.

The secrets are the OAuth tokens `resources.destinations.oauth` obtained: `access_token`,
`refresh_token` and `expires_at` (Unix seconds). An expired access token, or one the
provider answers 401 to, is refreshed once with the refresh token and the new tokens are
handed to `save_secrets`; a refresh the provider refuses (`invalid_grant`: revoked,
expired, password changed) is a DestinationCredentialError that says to reconnect.

Writes stream and are all-or-nothing: Dropbox upload sessions and Drive resumable uploads
send one chunk at a time and the file appears only when the last one is committed; Graph's
upload sessions need the total size in every request, so a OneDrive file is spooled to a
temporary file on local disk (memory stays flat) and sent in fragments when it is closed.
A file left unclosed, or closed by an exception inside its `with`, is never committed.
"""

from __future__ import annotations

from collections.abc import Mapping

from resources.destinations.cloud_drive_base import (
    PROVIDER_NAMES,
    CloudDriveFileSystem,
    SaveSecrets,
    TokenClient,
    provider_name,
    tokens_from_response,
)
from resources.destinations.dropbox_fs import DropboxFileSystem
from resources.destinations.errors import DestinationCredentialError, DestinationError
from resources.destinations.google_drive_fs import GoogleDriveFileSystem
from resources.destinations.onedrive_fs import OneDriveFileSystem

__all__ = [
    "CLOUD_DRIVE_SCHEMES",
    "CloudDriveFileSystem",
    "DropboxFileSystem",
    "GoogleDriveFileSystem",
    "OneDriveFileSystem",
    "cloud_drive_filesystem",
    "provider_name",
    "tokens_from_response",
]

CLOUD_DRIVE_SCHEMES = tuple(PROVIDER_NAMES)
_CLASSES: dict[str, type[CloudDriveFileSystem]] = {
    "dropbox": DropboxFileSystem,
    "gdrive": GoogleDriveFileSystem,
    "onedrive": OneDriveFileSystem,
}


def cloud_drive_filesystem(
    url: str, secrets: Mapping[str, str], save_secrets: SaveSecrets
) -> CloudDriveFileSystem:
    """The filesystem for a `dropbox://`, `gdrive://` or `onedrive://` destination URL."""
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _CLASSES:
        raise DestinationError(f"{scheme}:// is not a cloud drive goalport knows")
    if not secrets.get("access_token") and not secrets.get("refresh_token"):
        raise DestinationCredentialError(
            f"{provider_name(scheme)} is not connected: connect it first "
            f"(`goalport backup connect USER {scheme}` or the API's OAuth start)"
        )
    return _CLASSES[scheme](TokenClient(scheme, secrets, save_secrets))
