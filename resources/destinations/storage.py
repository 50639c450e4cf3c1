"""A user's destination as an `ObjectStorage`: the same keys, listing, deleting and atomic
writes that goalport's own storage has, on the service's filesystem with the user's
credentials, so backups, retention, listing and erasure take one path wherever files are.

**Atomic, streamed writes.** Object stores (S3, Azure Blob, GCS) publish an upload only when
it completes (a multipart upload completed, a block list committed, a resumable upload
finalised); the bytes stream in parts and a failure discards the upload, so nothing is
published. Elsewhere (WebDAV, SFTP, the cloud drives) the bytes stream to a hidden
`.tmp-<random>` name in the same folder and are renamed into place once complete; a failure
deletes the temporary file, and one left by a killed process is never listed (and is
deleted with the folder on erasure).

**Failures** of the service come out as `DestinationError`s in words the user can act on
(`filesystems.describe_failure`): a refused credential is a `DestinationCredentialError`.
The service's own message is not quoted (it may hold a signed URL or a token).
"""

from __future__ import annotations

import builtins
import hashlib
import posixpath
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import fsspec
import sqlalchemy as sa
from fsspec.spec import AbstractBufferedFile
from pydantic import PrivateAttr

from resources.audit import subject_ref
from resources.destinations.credentials import (
    credential_destinations,
    load_subject_credentials,
    save_subject_credentials,
)
from resources.destinations.errors import DestinationError
from resources.destinations.filesystems import describe_failure, destination_filesystem
from resources.destinations.urls import SCHEMES, Destination, parse_destination
from resources.keys import KeyVault
from resources.storage import ObjectStorage, StorageError, StoredObject

# Services that publish an upload only when it completes: written in place.
_ATOMIC_UPLOADS = ("s3", "az", "gs")
# Bytes handed to the service at a time when streaming (and S3's multipart part size).
CHUNK_SIZE = 8 * 2**20


class DestinationStorage(ObjectStorage):
    """A prefix at a user's destination (`url`), on its own filesystem."""

    _destination: Destination | None = PrivateAttr(default=None)

    @classmethod
    def on(cls, destination: Destination, fs: fsspec.AbstractFileSystem) -> DestinationStorage:
        store = cls(url=destination.url)
        store._destination = destination
        store._fs = fs
        return store

    @property
    def destination(self) -> Destination:
        assert self._destination is not None, "made by DestinationStorage.on"
        return self._destination

    # ------------------------------------------------------------ where keys are

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        assert self._fs is not None, "made by DestinationStorage.on"
        return self._fs

    @property
    def root(self) -> str:
        return self.destination.url

    def _clean_key(self, key: str) -> str:
        clean = posixpath.normpath("/" + key).lstrip("/")
        if not key or clean != key.strip("/") or clean.startswith(".."):
            raise StorageError(f"invalid object key {key!r}")
        return clean

    def path(self, key: str) -> str:
        """The path of `key` on the destination's filesystem."""
        return f"{self.destination.root.rstrip('/')}/{self._clean_key(key)}"

    def object_url(self, key: str) -> str:
        base, _, query = self.destination.url.partition("?")
        url = f"{base.rstrip('/')}/{self._clean_key(key)}"
        return f"{url}?{query}" if query else url

    def key_of(self, location: str) -> str | None:
        base, _, query = self.destination.url.partition("?")
        location_base, _, location_query = location.partition("?")
        prefix = base.rstrip("/") + "/"
        if location_query != query or not location_base.startswith(prefix):
            return None
        return location_base[len(prefix) :]

    def _find(self, prefix: str) -> builtins.list[str]:
        base = self.destination.root.rstrip("/") if not prefix else self.path(prefix)
        with self._failures():
            self.fs.invalidate_cache()  # another process may have written or deleted since
            try:
                found = self.fs.find(base)
            except FileNotFoundError:
                return []
        root = self.destination.root.strip("/") + "/"
        keys = []
        for path in found:
            path = path.split("://", 1)[-1].lstrip("/")
            if path.startswith(root):
                keys.append(path[len(root) :])
        return sorted(keys)

    def _unfinished_uploads(self, prefix: str) -> builtins.list[tuple[str, str]]:
        if self.destination.scheme != "s3":
            return []
        bucket, _, root = self.destination.root.partition("/")
        below = self.path(prefix).partition("/")[2] if prefix else root
        found: builtins.list[tuple[str, str]] = []
        markers: dict[str, str] = {}
        with self._failures():
            while True:
                page = self.fs.call_s3(
                    "list_multipart_uploads", Bucket=bucket, Prefix=below, **markers
                )
                for upload in page.get("Uploads", []):
                    key = upload["Key"]
                    found.append((key[len(root) + 1 :] if root else key, upload["UploadId"]))
                if not page.get("IsTruncated"):
                    return found
                markers = {
                    "KeyMarker": page["NextKeyMarker"],
                    "UploadIdMarker": page["NextUploadIdMarker"],
                }

    # ------------------------------------------------------------ operations

    @contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except FileNotFoundError:
            raise
        except Exception as exc:  # every service raises its own kinds
            raise describe_failure(self.destination, exc) from None

    def write_bytes(self, key: str, data: bytes) -> StoredObject:
        view = memoryview(data)
        chunks = (view[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE))
        return self.write_stream(key, chunks, size=len(data))

    def write_stream(
        self, key: str, chunks: Iterable[bytes | memoryview], *, size: int | None = None
    ) -> StoredObject:
        """Stream `chunks` to `key`, published only once complete (see the module's words);
        returns its URL, size and SHA-256."""
        target = self.path(key)
        digest = hashlib.sha256()
        written = 0

        source_failed: list[BaseException] = []

        def counted() -> Iterator[bytes | memoryview]:
            nonlocal written
            try:
                for chunk in chunks:
                    digest.update(chunk)
                    written += len(chunk)
                    yield chunk
            except BaseException as exc:  # the bytes' source failed, not the destination
                source_failed.append(exc)
                raise

        try:
            with self._failures():
                if self.destination.protocol in _ATOMIC_UPLOADS:
                    _upload_in_place(self.fs, target, counted())
                else:
                    self._upload_then_rename(target, counted(), size)
        except DestinationError:
            if source_failed:
                raise source_failed[0] from None
            raise
        return StoredObject(
            key=key, url=self.object_url(key), size=written, sha256=digest.hexdigest()
        )

    def _upload_then_rename(
        self, target: str, chunks: Iterator[bytes | memoryview], size: int | None
    ) -> None:
        folder = posixpath.dirname(target)
        temporary = f"{folder}/.tmp-{uuid.uuid4().hex}"
        self.fs.makedirs(folder, exist_ok=True)
        try:
            if self.destination.protocol == "webdav":
                # webdav4's own file object spools the whole file first: PUT the stream
                self.fs.client.upload_fileobj(
                    _ChunkReader(chunks), temporary.lstrip("/"), overwrite=True, size=size
                )
            else:
                # SFTP keeps its own block size (OpenSSH refuses messages over 256 KiB)
                _upload_in_place(self.fs, temporary, chunks, block_size=None)
            self.fs.mv(temporary, target)
        except BaseException:
            try:
                if self.fs.exists(temporary):
                    self.fs.rm_file(temporary)
            except Exception:  # the first failure is the one to report
                pass
            raise

    def read_bytes(self, key: str) -> bytes:
        with self._failures():
            return super().read_bytes(key)

    def exists(self, key: str) -> bool:
        with self._failures():
            return super().exists(key)

    def info(self, key: str) -> dict:
        with self._failures():
            return super().info(key)

    def delete(self, key: str) -> bool:
        path = self.path(key)
        with self._failures():
            if not self.fs.exists(path):
                return False
            self.fs.rm_file(path)
        return True

    def delete_prefix(self, prefix: str) -> int:
        keys = self._find(prefix)
        with self._failures():
            for key in keys:
                self.fs.rm_file(self.path(key))
            uploads = self._unfinished_uploads(prefix)
            bucket = self.destination.root.partition("/")[0]
            for key, upload_id in uploads:
                self.fs.call_s3(
                    "abort_multipart_upload",
                    Bucket=bucket,
                    Key=self.path(key).partition("/")[2],
                    UploadId=upload_id,
                )
            if prefix.strip("/") and self.destination.protocol not in _ATOMIC_UPLOADS:
                _remove_empty_folders(self.fs, self.path(prefix))
        return len(keys) + len(uploads)


def _upload_in_place(
    fs: fsspec.AbstractFileSystem,
    path: str,
    chunks: Iterator[bytes | memoryview],
    block_size: int | None = CHUNK_SIZE,
) -> None:
    """Write `chunks` through the filesystem's own streaming file. A failure discards the
    upload: fsspec's buffered files publish what they hold when closed (also when garbage
    collected), so such a file is marked closed without publishing."""
    options = {"block_size": block_size} if block_size else {}
    handle = fs.open(path, "wb", **options)
    try:
        for chunk in chunks:
            handle.write(chunk)
    except BaseException:
        if isinstance(handle, AbstractBufferedFile):
            try:
                handle.discard()  # S3: abort the multipart upload; GCS: cancel the session
            finally:
                handle.closed = True
        else:  # SFTP writes as it goes, to a temporary name its caller deletes
            handle.close()
        raise
    handle.close()


class _ChunkReader:
    """A read-only file over an iterator of chunks (what webdav4 streams a PUT from)."""

    def __init__(self, chunks: Iterator[bytes | memoryview]):
        self._chunks = chunks
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += bytes(chunk)
        if size < 0:
            size = len(self._pending)
        taken, self._pending = self._pending[:size], self._pending[size:]
        return taken


def _remove_empty_folders(fs: fsspec.AbstractFileSystem, top: str) -> None:
    """Remove `top` and the folders below it that are empty (WebDAV and SFTP keep folders:
    their names are users' ids)."""
    try:
        folders = sorted(
            (
                p
                for p, d in fs.find(top, withdirs=True, detail=True).items()
                if d["type"] == "directory"
            ),
            key=len,
            reverse=True,
        )
    except FileNotFoundError:
        return
    for folder in [*folders, top]:
        try:
            if not fs.ls(folder, detail=False):
                fs.rmdir(folder)
        except (FileNotFoundError, OSError):
            continue


# ---------------------------------------------------------------- opening a user's place


def is_user_destination(url: str | None) -> bool:
    """Whether `url` is a user destination URL (else: goalport's own storage or a legacy
    place reached with goalport's own access)."""
    if not url or "://" not in url:
        return False
    return url.split("://", 1)[0].lower() in SCHEMES


def open_destination(
    engine: sa.Engine,
    keys: KeyVault,
    user_id: str,
    url: str,
    secrets: dict[str, str] | None = None,
) -> DestinationStorage:
    """The user's destination at `url`, opened with their stored credentials (or `secrets`,
    e.g. while testing a destination before saving it)."""
    return open_subject_destination(engine, keys, subject_ref(user_id), url, secrets)


def open_subject_destination(
    engine: sa.Engine,
    keys: KeyVault,
    subject: str,
    url: str,
    secrets: dict[str, str] | None = None,
) -> DestinationStorage:
    """As `open_destination`, by pseudonym: erasure reaches places after the user's rows."""
    destination = parse_destination(url)
    if secrets is None:
        secrets = load_subject_credentials(engine, keys, subject, url)
        save: Callable[[dict[str, str]], None] = lambda new: save_subject_credentials(  # noqa: E731
            engine, keys, subject, url, new
        )
    else:
        save = secrets.update
    try:
        fs = destination_filesystem(url, secrets, save)
    except DestinationError:
        raise
    except Exception as exc:
        raise describe_failure(destination, exc) from None
    return DestinationStorage.on(destination, fs)


def storage_at(engine: sa.Engine, keys: KeyVault, subject: str, url: str) -> ObjectStorage:
    """The storage at a recorded place: a user destination with the user's credentials when
    goalport holds some for it, else as goalport reaches it itself (`--out` copies, places
    recorded before destinations had credentials)."""
    if is_user_destination(url):
        with engine.connect() as conn:
            held = url in credential_destinations(conn, subject)
        if held:
            return open_subject_destination(engine, keys, subject, url)
    return ObjectStorage(url=url)


def place_opener(
    engine: sa.Engine, subject: str, keys: KeyVault | None = None
) -> Callable[[str], ObjectStorage]:
    """`storage_at` for one user (by pseudonym), for erasure and its verification; the key
    vault (the master key, from the environment unless given) is made when first needed."""
    vault = keys

    def open_place(url: str) -> ObjectStorage:
        nonlocal vault
        if vault is None:
            vault = KeyVault()
        return storage_at(engine, vault, subject, url)

    return open_place


def probe_destination(store: DestinationStorage) -> None:
    """ "Test this destination": write a small object, read it back, delete it; raise the
    DestinationError that says what failed."""
    key = f".goalport-test-{uuid.uuid4().hex}"
    payload = b"goalport destination test " + uuid.uuid4().hex.encode()
    store.write_bytes(key, payload)
    try:
        if store.read_bytes(key) != payload:
            raise DestinationError(
                f"{store.destination.scheme}:// destination at {store.destination.host}: "
                "what was read back differs from what was written"
            )
    finally:
        store.delete(key)


def connect_destination(
    engine: sa.Engine, keys: KeyVault, user_id: str, url: str, secrets: dict[str, str]
) -> DestinationStorage:
    """ "Test this destination" with `secrets`, then store them (wrapped) for the user: a
    destination that fails the test is not saved, and the error says why."""
    store = open_destination(engine, keys, user_id, url, secrets=secrets)
    probe_destination(store)
    # a token the test refreshed is what `secrets` now holds
    save_subject_credentials(engine, keys, subject_ref(user_id), store.root, secrets)
    return store
