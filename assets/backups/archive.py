"""The backup file: its name, its manifest, building it, decrypting and opening it.

A backup is one user's data rendered by `assets.exports.batches` (JSON unless configured
otherwise: what the importer restores exactly) inside a zip with a `manifest.json`
(format `goalport.backup`, the user, the time, every member's SHA-256 and size, and the
row count of every table). It is encrypted with age to the user's goalport key
(`resources.keys.KeyVault`) and to the user's own recipients from the configuration, so
the user opens it with `age -d -i` and no goalport; its key is
`backups/<userId>/goalport-backup-<UTC time>.zip.age` (`resources.storage_layout.backup_key`)
below the destination URL (by default the main storage). The zip has the shape of a GDPR bundle (manifest.json beside
data/), so the import path reads a decrypted backup like any goalport export.

`open_backup` is what a restore, the restore drill and `goalport backup restore` use: it
returns data only when the whole file authenticates and matches its manifest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from assets.backups.config import BackupError
from assets.formats.registry import DATA_FORMATS, FORMATS, reader_of
from assets.imports.parsers.base import ImportFormatError, safe_zip_members
from resources import age

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "goalport.backup"
MANIFEST_VERSION = 1


class BackupVerificationError(BackupError):
    """A backup file does not open or does not match its manifest; never partial data."""


def data_member_name(fmt: str) -> str:
    return f"data/export.{FORMATS[fmt].extension}"


def build_backup_archive(
    *,
    user_id: str,
    created_at: dt.datetime,
    fmt: str,
    export: bytes,
    row_counts: Mapping[str, int],
    include: Sequence[str] | None,
) -> tuple[bytes, dict]:
    """The backup's plaintext (a zip: manifest.json and data/export.<ext>) and manifest."""
    member = data_member_name(fmt)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "userId": user_id,
        "createdAt": created_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "exportFormat": fmt,
        "include": list(include) if include is not None else None,
        "files": [
            {"path": member, "sha256": hashlib.sha256(export).hexdigest(), "size": len(export)}
        ],
        "rowCounts": {str(name): int(n) for name, n in row_counts.items()},
        "records": int(sum(row_counts.values())),
    }
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr(MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True))
        archive.writestr(member, export)
    return sink.getvalue(), manifest


@dataclass
class OpenedBackup:
    """A backup file decrypted, its manifest checked and its data read."""

    file_name: str
    encrypted: bool
    manifest: dict
    archive: bytes  # the decrypted zip
    tables: dict[str, pa.Table]

    @property
    def user_id(self) -> str:
        return self.manifest["userId"]

    @property
    def row_counts(self) -> dict[str, int]:
        return {name: t.num_rows for name, t in self.tables.items()}

    @property
    def records(self) -> int:
        return sum(self.row_counts.values())


def decrypt_backup(
    data: bytes,
    *,
    file_name: str,
    identities: Sequence[str] = (),
    passphrase: str | None = None,
    max_work_factor: int = age.DEFAULT_MAX_WORK_FACTOR,
) -> tuple[bytes, bool]:
    """(plaintext, was encrypted). Any failure is a BackupVerificationError saying why;
    nothing is returned unless the whole file authenticates."""
    if not age.is_age_file(data[:64]):
        return data, False
    if passphrase is None and not identities:
        raise BackupVerificationError(
            f"{file_name} is encrypted (age): give the passphrase, or the user whose backup "
            "key it was encrypted to, or an identity file"
        )
    try:
        plain = age.decrypt(
            data,
            identities=list(identities),
            passphrase=passphrase,
            max_work_factor=max_work_factor,
        )
    except age.AgeWrongPassphraseError:
        raise BackupVerificationError(
            f"cannot decrypt {file_name}: wrong passphrase (nothing was decrypted)"
        ) from None
    except age.AgeNoMatchError as exc:
        if passphrase is None and "passphrase" in str(exc):
            raise BackupVerificationError(
                f"cannot decrypt {file_name}: it is encrypted with a passphrase; give the "
                "passphrase (--passphrase-env NAME or --ask-passphrase)"
            ) from None
        raise BackupVerificationError(
            f"cannot decrypt {file_name}: wrong key, the file is not encrypted to any key "
            f"given ({exc})"
        ) from None
    except age.AgeTruncatedError as exc:
        raise BackupVerificationError(
            f"cannot decrypt {file_name}: the file is truncated ({exc}); nothing was restored"
        ) from None
    except (age.AgePayloadError, age.AgeHeaderMacError) as exc:
        raise BackupVerificationError(
            f"cannot decrypt {file_name}: the file is damaged or was altered ({exc}); "
            "nothing was restored"
        ) from None
    except age.AgeError as exc:
        raise BackupVerificationError(f"cannot decrypt {file_name}: {exc}") from None
    return plain, True


def open_backup(
    data: bytes,
    *,
    file_name: str = "backup",
    identities: Sequence[str] = (),
    passphrase: str | None = None,
    max_work_factor: int = age.DEFAULT_MAX_WORK_FACTOR,
) -> OpenedBackup:
    """Decrypt a backup, check every member against its manifest SHA-256 and size, read
    the data with its format's reader and check the row counts against the manifest."""
    plain, encrypted = decrypt_backup(
        data,
        file_name=file_name,
        identities=identities,
        passphrase=passphrase,
        max_work_factor=max_work_factor,
    )

    def bad(what: str) -> BackupVerificationError:
        return BackupVerificationError(f"{file_name}: {what}")

    try:
        members = safe_zip_members(plain, file_name=file_name)
    except ImportFormatError as exc:
        raise bad(f"not a goalport backup archive ({exc})") from None
    except zipfile.BadZipFile:
        raise bad("not a goalport backup archive (not a zip)") from None
    if MANIFEST_NAME not in members:
        raise bad("no manifest.json: not a goalport backup")
    try:
        manifest = json.loads(members[MANIFEST_NAME])
    except ValueError as exc:
        raise bad(f"manifest.json is not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise bad(f"manifest.json does not describe a {MANIFEST_FORMAT} file")
    if manifest.get("version") != MANIFEST_VERSION:
        raise bad(f"backup version {manifest.get('version')!r} is not supported (expected 1)")
    fmt = manifest.get("exportFormat")
    if not isinstance(fmt, str) or fmt not in DATA_FORMATS:
        raise bad(f"manifest.json: unknown exportFormat {fmt!r}")
    for entry in manifest.get("files") or []:
        path, digest = entry.get("path"), entry.get("sha256")
        content = members.get(path)
        if content is None:
            raise bad(f"member {path!r} is in the manifest but missing")
        if len(content) != entry.get("size") or hashlib.sha256(content).hexdigest() != digest:
            raise bad(f"member {path!r} does not match its size and SHA-256 in manifest.json")
    member = data_member_name(fmt)
    if member not in {e.get("path") for e in manifest.get("files") or []}:
        raise bad(f"manifest.json does not list the data file {member!r}")
    try:
        tables = reader_of(fmt)(members[member])
    except (ValueError, KeyError, pa.ArrowException, zipfile.BadZipFile) as exc:
        raise bad(f"{member} cannot be read as a goalport {fmt} export: {exc}") from None
    opened = OpenedBackup(file_name, encrypted, manifest, plain, tables)
    expected = {str(k): v for k, v in (manifest.get("rowCounts") or {}).items()}
    actual = {k: v for k, v in opened.row_counts.items() if v or k in expected}
    if {k: v for k, v in expected.items() if v or k in actual} != actual:
        differences = ", ".join(
            f"{name} {expected.get(name, 0)} in manifest, {actual.get(name, 0)} in data"
            for name in sorted(set(expected) | set(actual))
            if expected.get(name, 0) != actual.get(name, 0)
        )
        raise bad(f"row counts do not match the manifest: {differences}")
    owners = set(tables["User"]["id"].to_pylist()) if "User" in tables else set()
    if owners - {manifest.get("userId")}:
        raise bad(
            f"the data belongs to {sorted(owners)}, the manifest to {manifest.get('userId')!r}"
        )
    return opened
