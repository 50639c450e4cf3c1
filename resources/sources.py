"""Reading the file an import, a restore or a verification names: one helper, two rules.

- `OPERATOR` (a person at the `goalport` CLI, who has the machine's shell and credentials
  anyway): a local path, or a `file://` or `s3://` URL, which covers every object of
  goalport's storage by the URL that `goalport export` and `backup list` print.
- `RUN` (a Dagster run: the import job reads the file its `DataImportJob` row names): only
  objects inside goalport's storage, named by URL, by path below a local storage folder,
  or by key. Rows are written by the app, the API and the inbox sensor, so a row must not
  make a run read `/etc/passwd`, another bucket, an http URL, or `../` out of the prefix:
  anything outside is refused with a `SourceRefusedError` that names the location.

Files are read whole and closed. The import's size limits (`ImportLimits`) judge the bytes
afterwards, as they always did.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from resources.storage import ObjectStorage, StorageError

OPERATOR_SCHEMES = ("file", "s3")


class SourceRules(enum.Enum):
    """Who is reading, and so which locations they may read."""

    OPERATOR = "operator"
    RUN = "run"


OPERATOR = SourceRules.OPERATOR
RUN = SourceRules.RUN


class SourceRefusedError(StorageError):
    """A location the reader may not read; the message names it and says what is allowed."""


@dataclass(frozen=True)
class SourceFile:
    """A file's bytes and where they came from: a local path (without `file://`) or a URL."""

    data: bytes
    location: str

    @property
    def name(self) -> str:
        return self.location.rstrip("/").rsplit("/", 1)[-1]


def read_source(
    location: str, storage: ObjectStorage | None = None, *, rules: SourceRules = RUN
) -> SourceFile:
    """The bytes at `location` under `rules` (the stricter `RUN` unless told otherwise;
    `RUN` needs the `storage` it is confined to).

    Raises `SourceRefusedError` for a location the rules do not allow and `StorageError`
    (naming the location and the reason) for one that cannot be read.
    """
    if not location:
        raise SourceRefusedError("no file named: give a path or URL")
    if rules is RUN:
        if storage is None:
            raise TypeError("a run reads only from goalport's storage: pass it")
        key = _key_in_storage(location, storage)
        return SourceFile(_read_object(storage, key, location), location)
    scheme = location.split("://", 1)[0].lower() if "://" in location else None
    if scheme is not None and scheme not in OPERATOR_SCHEMES:
        raise SourceRefusedError(
            f"cannot read {location}: give a local path, a file:// or s3:// URL (not {scheme}://)"
        )
    if scheme == "s3":
        folder, _, name = location.rstrip("/").rpartition("/")
        endpoint = storage.endpoint_url if storage is not None else None
        bucket = ObjectStorage(url=folder, endpoint_url=endpoint)
        return SourceFile(_read_object(bucket, name, location), location)
    path = location.removeprefix("file://")
    return SourceFile(_read_local(path), path)


def _key_in_storage(location: str, storage: ObjectStorage) -> str:
    """The storage key `location` names, refusing anything outside the storage prefix."""

    def refuse(why: str) -> SourceRefusedError:
        return SourceRefusedError(
            f"refused to read {location}: {why}; a Dagster run reads only objects inside "
            f"goalport's storage ({storage.root})"
        )

    if "://" in location or location.startswith("/"):
        key = storage.key_of(location)
        if key is None:
            raise refuse("it is outside the storage")
    else:
        key = location
    try:
        target = storage.path(key)
    except StorageError as exc:
        raise refuse("the key would leave the storage prefix") from exc
    if storage.is_local:
        real_root = os.path.realpath(storage.root)
        if os.path.commonpath([real_root, os.path.realpath(target)]) != real_root:
            raise refuse("it is a link that leads outside the storage")
    return key


def _read_object(storage: ObjectStorage, key: str, shown: str) -> bytes:
    try:
        return storage.read_bytes(key)
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError(f"cannot read {shown}: {exc.strerror or exc}") from exc


def _read_local(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
