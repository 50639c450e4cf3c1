"""Object storage through fsspec: a local folder by default, `s3://bucket/prefix` via s3fs.

Writes are atomic: a reader sees the whole object or nothing. On a local folder the bytes
go to a hidden temporary file in the same folder, which is fsynced and renamed into place;
on S3 a PUT (or a completed multipart upload) is atomic by the protocol. A local file is
readable by its owner only (0600, in 0700 folders, whatever the umask).

A write that was interrupted (the process killed) leaves its bytes behind: a `.tmp-` file on
a local folder, an unfinished multipart upload on S3. Listings hide them; deleting a prefix
removes them too, and `list_including_unfinished` is what says whether anything is left.
Deleting also removes the local folders it leaves empty (folders are named after users).
"""

from __future__ import annotations

import builtins
import hashlib
import os
import posixpath
import uuid
from dataclasses import dataclass

import dagster as dg
import fsspec
import pydantic
from pydantic import PrivateAttr

from resources.settings import s3_endpoint_url, s3_max_attempts, storage_url

# Bytes per part of a streamed S3 write (`open_writer`): what a streamed upload holds in
# memory (S3's minimum part is 5 MiB).
STREAM_PART_BYTES = 8 * 2**20


class StorageError(RuntimeError):
    """Storage cannot be read or written; the message names the location and the reason."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    url: str
    size: int
    sha256: str


class ObjectStorage(dg.ConfigurableResource):
    """A prefix in object storage: keys are relative paths below `url`."""

    url: str = pydantic.Field(
        default="", description="folder or s3://bucket/prefix; empty means GOALPORT_STORAGE_URL"
    )
    endpoint_url: str | None = None
    s3_part_size: int = pydantic.Field(
        default=50 * 2**20,
        description="bytes per part of an S3 multipart upload (objects of two parts or more)",
    )

    _fs: fsspec.AbstractFileSystem | None = PrivateAttr(default=None)

    @property
    def resolved_url(self) -> str:
        return self.url or storage_url()

    @property
    def is_local(self) -> bool:
        return "://" not in self.resolved_url or self.resolved_url.startswith("file://")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self._fs is None:
            if self.is_local:
                self._fs = fsspec.filesystem("file")
            else:
                protocol = self.resolved_url.split("://", 1)[0]
                options: dict[str, object] = {}
                endpoint = self.endpoint_url or s3_endpoint_url()
                if protocol == "s3" and endpoint:
                    options["client_kwargs"] = {"endpoint_url": endpoint}
                # The retry budget of each S3 call (botocore's, and s3fs's own on top): an
                # outage longer than it fails the step, whose RetryPolicy waits with
                # back-off (resources/run_policy.py); short in tests.
                attempts = s3_max_attempts() if protocol == "s3" else None
                if attempts is not None:
                    options["config_kwargs"] = {
                        "retries": {"max_attempts": attempts, "mode": "standard"}
                    }
                self._fs = fsspec.filesystem(protocol, **options)
                if attempts is not None:
                    self._fs.retries = attempts  # s3fs's class-level default is 5
        return self._fs

    @property
    def root(self) -> str:
        if self.is_local:
            return os.path.abspath(self.resolved_url.removeprefix("file://"))
        return self.resolved_url.rstrip("/")

    def path(self, key: str) -> str:
        """The full path of `key`, refusing keys that would escape the prefix."""
        clean = posixpath.normpath("/" + key).lstrip("/")
        if not key or clean != key.strip("/") or clean.startswith(".."):
            raise StorageError(f"invalid object key {key!r}")
        return f"{self.root}/{clean}"

    def object_url(self, key: str) -> str:
        path = self.path(key)
        return path if not self.is_local else "file://" + path

    def key_of(self, location: str) -> str | None:
        """The key of `location` when it names a place below this prefix (the inverse of
        `object_url`; on a local folder its plain absolute path too), else None. The key
        is returned unchecked: `path` refuses one that would escape the prefix."""
        if self.is_local:
            location = location.removeprefix("file://")
        root = self.root.rstrip("/") + "/"
        if not location.startswith(root):
            return None
        return location[len(root) :]

    def write_bytes(self, key: str, data: bytes) -> StoredObject:
        """Store `data` under `key` atomically; returns its URL, size and SHA-256."""
        target = self.path(key)
        try:
            if self.is_local:
                _write_local_atomically(target, data)
            elif self.resolved_url.startswith("s3://"):
                self.fs.pipe_file(target, data, chunksize=self.s3_part_size)
            else:
                self.fs.pipe_file(target, data)
        except (OSError, PermissionError) as exc:
            raise StorageError(f"cannot write {self.object_url(key)}: {exc}") from exc
        return StoredObject(
            key=key,
            url=self.object_url(key),
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )

    def open_writer(self, key: str) -> ObjectWriter:
        """A writer that stores `key` a chunk at a time (memory stays at one chunk or one
        S3 part): `commit()` makes the object appear whole, `abort()` leaves nothing."""
        target = self.path(key)
        try:
            if self.is_local:
                return _LocalWriter(self, key, target)
            block = STREAM_PART_BYTES if self.resolved_url.startswith("s3://") else None
            handle = self.fs.open(target, "wb", **({"block_size": block} if block else {}))
        except OSError as exc:
            raise StorageError(f"cannot write {self.object_url(key)}: {exc}") from exc
        return _FsspecWriter(self, key, handle)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError as exc:
            raise StorageError(f"no object at {self.object_url(key)}") from exc

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def list(self, prefix: str = "") -> list[str]:
        """Keys below `prefix`, sorted; temporary files of unfinished writes are not listed."""
        return [k for k in self._find(prefix) if not _is_temporary(k)]

    def list_including_unfinished(self, prefix: str = "") -> builtins.list[str]:
        """Everything stored below `prefix`, sorted: the keys, the temporary files of
        interrupted writes, and (on S3) unfinished multipart uploads, as `<key> (unfinished
        upload)`. Empty means nothing is left."""
        uploads = [f"{key} (unfinished upload)" for key, _ in self._unfinished_uploads(prefix)]
        return sorted(self._find(prefix) + uploads)

    def _find(self, prefix: str) -> builtins.list[str]:
        base = self.root if not prefix else self.path(prefix)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        root = self.root.split("://", 1)[-1].rstrip("/") + "/"
        keys = []
        for path in found:
            path = path.split("://", 1)[-1]
            keys.append(path[len(root) :] if path.startswith(root) else path)
        return sorted(keys)

    def _unfinished_uploads(self, prefix: str) -> builtins.list[tuple[str, str]]:
        """(key, upload id) of the S3 multipart uploads started below `prefix` and never
        completed or aborted: their parts are stored, unlisted, until aborted."""
        if not self.resolved_url.startswith("s3://"):
            return []
        base = (self.root if not prefix else self.path(prefix)).split("://", 1)[1]
        bucket, _, below = (base.rstrip("/") + "/").partition("/")
        root = self.root.split("://", 1)[1].partition("/")[2].rstrip("/")
        found: builtins.list[tuple[str, str]] = []
        markers: dict[str, str] = {}
        while True:
            page = self.fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=below, **markers)
            for upload in page.get("Uploads", []):
                key = upload["Key"]
                found.append((key[len(root) + 1 :] if root else key, upload["UploadId"]))
            if not page.get("IsTruncated"):
                return found
            markers = {
                "KeyMarker": page["NextKeyMarker"],
                "UploadIdMarker": page["NextUploadIdMarker"],
            }

    def info(self, key: str) -> dict:
        return self.fs.info(self.path(key))

    def delete(self, key: str) -> bool:
        """Delete one object; True if it existed. On a local folder, the folders it leaves
        empty go too (below the root): their names are users' ids."""
        path = self.path(key)
        if not self.fs.exists(path):
            return False
        self.fs.rm_file(path)
        if self.is_local:
            _remove_emptied_parents(os.path.dirname(path), self.root)
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Delete everything below `prefix`: objects, temporary files of interrupted writes,
        unfinished S3 uploads and, on a local folder, the folders left empty (the prefix's
        own included). Returns how many objects and uploads were deleted."""
        keys = self._find(prefix)
        for key in keys:
            self.fs.rm_file(self.path(key))
        uploads = self._unfinished_uploads(prefix)
        bucket = self.root.split("://", 1)[-1].partition("/")[0]
        for key, upload_id in uploads:
            self.fs.call_s3(
                "abort_multipart_upload",
                Bucket=bucket,
                Key=self.path(key).split("://", 1)[1].partition("/")[2],
                UploadId=upload_id,
            )
        if self.is_local and prefix.strip("/"):
            _remove_empty_folders(self.path(prefix))
        return len(keys) + len(uploads)

    def check_writable(self) -> None:
        """Write and delete a probe object; raise StorageError saying why if that fails."""
        probe = f".probe-{uuid.uuid4().hex}"
        self.write_bytes(probe, b"")
        self.delete(probe)


class ObjectWriter:
    """An object being written: `write` chunks, then `commit` (it appears whole, atomically)
    or `abort` (nothing is left: no temporary file, no unfinished multipart upload). Used as
    a context manager it commits on success and aborts on any exception."""

    def __init__(self, storage: ObjectStorage, key: str):
        self.storage, self.key = storage, key
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._done = False

    def write(self, data: bytes) -> None:
        try:
            self._write(data)
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self.storage.object_url(self.key)}: {exc}") from exc
        self.size += len(data)
        self._sha256.update(data)

    def commit(self) -> StoredObject:
        try:
            self._commit()
        except OSError as exc:
            self.abort()
            raise StorageError(f"cannot write {self.storage.object_url(self.key)}: {exc}") from exc
        self._done = True
        return StoredObject(
            self.key, self.storage.object_url(self.key), self.size, self._sha256.hexdigest()
        )

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._abort()

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, kind, _value, _traceback) -> None:
        if kind is None and not self._done:
            self.commit()
        else:
            self.abort()

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _abort(self) -> None:
        raise NotImplementedError


class _LocalWriter(ObjectWriter):
    """A hidden temporary file in the object's folder, fsynced and renamed into place."""

    def __init__(self, storage: ObjectStorage, key: str, target: str):
        super().__init__(storage, key)
        self.target = target
        folder = os.path.dirname(target)
        _make_private_folders(folder)
        self.temporary = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
        try:
            fd = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # a delete removed the folder as it became empty: again
            _make_private_folders(folder)
            fd = os.open(self.temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)
        self.handle = os.fdopen(fd, "wb")

    def _write(self, data: bytes) -> None:
        self.handle.write(data)

    def _commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.temporary, self.target)

    def _abort(self) -> None:
        self.handle.close()
        if os.path.exists(self.temporary):
            os.unlink(self.temporary)
        _remove_emptied_parents(os.path.dirname(self.target), self.storage.root)


class _FsspecWriter(ObjectWriter):
    """An fsspec file: on S3 a multipart upload of STREAM_PART_BYTES parts, completed by
    `commit` (or one PUT when small) and aborted by `abort`."""

    def __init__(self, storage: ObjectStorage, key: str, handle):
        super().__init__(storage, key)
        self.handle = handle

    def _write(self, data: bytes) -> None:
        self.handle.write(data)

    def _commit(self) -> None:
        self.handle.close()

    def _abort(self) -> None:
        discard = getattr(self.handle, "discard", None)
        if discard is not None:
            discard()  # s3fs: aborts the multipart upload, drops the buffer
            self.handle.closed = True  # closing would upload what was discarded
        else:
            self.handle.close()
            self.storage.delete(self.key)


def _is_temporary(key: str) -> bool:
    return posixpath.basename(key).startswith(".tmp-")


def _write_local_atomically(target: str, data: bytes) -> None:
    folder = os.path.dirname(target)
    _make_private_folders(folder)
    temporary = os.path.join(folder, f".tmp-{uuid.uuid4().hex}")
    try:
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # a delete removed the folder as it became empty: again
            _make_private_folders(folder)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _make_private_folders(folder: str) -> None:
    """Create `folder` and its missing parents 0700, whatever the umask."""
    missing = []
    while not os.path.isdir(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue  # a concurrent writer made it
        os.chmod(path, 0o700)


def _remove_emptied_parents(folder: str, root: str) -> None:
    """Remove `folder` and its parents while they are empty, up to (not including) `root`."""
    root = os.path.normpath(root.removeprefix("file://"))
    folder = os.path.normpath(folder.removeprefix("file://"))
    while folder != root and folder.startswith(root + os.sep):
        try:
            os.rmdir(folder)
        except OSError:  # not empty (or already gone, or being written to): stop
            return
        folder = os.path.dirname(folder)


def _remove_empty_folders(top: str) -> None:
    """Remove `top` and the folders below it that are empty, deepest first; a folder that a
    concurrent write has just filled is left alone."""
    if not os.path.isdir(top):
        return
    for folder, _, _ in os.walk(top, topdown=False):
        try:
            os.rmdir(folder)
        except OSError:
            continue
