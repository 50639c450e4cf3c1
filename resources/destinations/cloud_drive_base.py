"""What goalport's cloud drive filesystems share (resources/destinations/cloud_drives.py):
a user's authorised HTTP client at a provider (`TokenClient`: refresh on expiry or a 401,
the new tokens to `save_secrets`, a refused grant as DestinationCredentialError), the
streamed uploads' contract (`Upload`, `ChunkedUpload`), the file class that commits an
upload only on a clean close, and the fsspec filesystem on top of each provider's few calls
(dropbox_fs.py, google_drive_fs.py, onedrive_fs.py).

A DestinationError names the provider, the operation and the provider's error code, never
the path (goalport's paths hold user ids, and these messages reach job rows and run logs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from resources import settings
from resources.destinations.errors import DestinationCredentialError, DestinationError

PROVIDER_NAMES = {"dropbox": "Dropbox", "gdrive": "Google Drive", "onedrive": "OneDrive"}
_REFRESH_MARGIN_SECONDS = 60  # refresh a token that would expire within a minute
_MAX_PROVIDER_TEXT = 200  # how much of a provider's error text goes into our messages
# "slow down" answers: Dropbox 429 (too_many_requests, too_many_write_operations), Graph 429
# and 503 with Retry-After, Drive 429; each documents waiting Retry-After (or backing off)
_THROTTLED = (429, 503)

SaveSecrets = Callable[[dict[str, str]], None]


def provider_name(provider: str) -> str:
    """The provider's name as users know it ("Google Drive" for gdrive)."""
    return PROVIDER_NAMES[provider]


def provider_text(response: httpx.Response) -> str:
    """What the provider said about an error, short: its error code and description."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:_MAX_PROVIDER_TEXT]
    if isinstance(body, dict):
        error = body.get("error")
        if "error_summary" in body:  # Dropbox API errors
            text = str(body["error_summary"])
        elif isinstance(error, dict):  # Graph and Google API errors
            text = f"{error.get('code', '')}: {error.get('message', '')}"
        else:  # OAuth token endpoint errors (RFC 6749 section 5.2)
            text = f"{error}: {body.get('error_description', '')}"
        return text.strip(": ")[:_MAX_PROVIDER_TEXT]
    return str(body)[:_MAX_PROVIDER_TEXT]


# ---------------------------------------------------------------- tokens and requests


class TokenClient:
    """One user's authorised HTTP client at one provider: refreshes, retries once on 401."""

    def __init__(self, provider: str, secrets: Mapping[str, str], save_secrets: SaveSecrets):
        self.provider = provider
        self.name = provider_name(provider)
        self._secrets = dict(secrets)
        self._save_secrets = save_secrets
        self.http = httpx.Client(
            timeout=settings.cloud_drive_timeout_seconds(), follow_redirects=False
        )

    def endpoint(self, name: str) -> str:
        return settings.cloud_drive_endpoint(self.provider, name)

    def _expired(self) -> bool:
        if not self._secrets.get("access_token"):
            return True
        try:
            expires_at = float(self._secrets.get("expires_at") or "inf")
        except ValueError:  # unreadable: treat as expired, a refresh writes a good one
            return True
        return expires_at - _REFRESH_MARGIN_SECONDS < time.time()

    def refresh(self) -> None:
        """New tokens from the refresh token (RFC 6749 section 6), stored via save_secrets."""
        refresh_token = self._secrets.get("refresh_token")
        if not refresh_token:
            raise DestinationCredentialError(
                f"{self.name} access expired and goalport holds no refresh token: connect "
                f"{self.name} again"
            )
        client_id, client_secret = settings.cloud_drive_client(self.provider)
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        form["client_id"] = client_id
        if client_secret:
            form["client_secret"] = client_secret
        try:
            response = self.http.post(self.endpoint("token"), data=form)
        except httpx.HTTPError as error:
            raise DestinationError(
                f"{self.name} could not be reached to refresh access ({type(error).__name__})"
            ) from None
        if response.status_code in (400, 401):
            raise DestinationCredentialError(
                f"{self.name} refused goalport's access ({provider_text(response)}): it was "
                f"revoked or has expired; connect {self.name} again"
            )
        if response.status_code != 200:
            raise DestinationError(
                f"{self.name} could not refresh access: HTTP {response.status_code}"
            )
        self._secrets = tokens_from_response(response.json(), previous=self._secrets)
        self._save_secrets(dict(self._secrets))

    def request(
        self, method: str, url: str, *, authorised: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """One request; with `authorised`, a bearer token that is refreshed when expired or
        refused once (a second refusal is a DestinationCredentialError). A throttled
        answer (429, or 503 "try later") is retried after the provider's Retry-After."""
        if authorised and self._expired():
            self.refresh()
        extra_headers = kwargs.pop("headers", None) or {}
        refreshed, throttled = False, 0
        while True:
            headers = dict(extra_headers)
            if authorised:
                headers["Authorization"] = f"Bearer {self._secrets['access_token']}"
            try:
                response = self.http.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError as error:
                raise DestinationError(
                    f"{self.name} could not be reached ({type(error).__name__})"
                ) from None
            if response.status_code in _THROTTLED:
                throttled += 1
                if throttled > settings.cloud_drive_retries():
                    raise DestinationError(
                        f"{self.name} is busy (HTTP {response.status_code}) and still was after "
                        f"{throttled - 1} retries: the next backup tries again"
                    )
                time.sleep(self._wait(response, throttled))
                continue
            if response.status_code != 401 or not authorised:
                return response
            if refreshed:
                raise DestinationCredentialError(
                    f"{self.name} refuses goalport's access ({provider_text(response)}): "
                    f"connect {self.name} again"
                )
            self.refresh()
            refreshed = True

    @staticmethod
    def _wait(response: httpx.Response, attempt: int) -> float:
        """Seconds to wait: the provider's Retry-After, else 1, 2, 4 ... seconds; at most
        the GOALPORT_CLOUD_DRIVE_MAX_WAIT_SECONDS setting."""
        said = response.headers.get("retry-after", "")
        wait = float(said) if said.replace(".", "", 1).isdigit() else 2.0 ** (attempt - 1)
        return min(wait, settings.cloud_drive_max_wait_seconds())


def tokens_from_response(body: Mapping[str, Any], previous: Mapping[str, str]) -> dict[str, str]:
    """The secrets to keep from a token endpoint's answer (RFC 6749 section 5.1). A refresh
    answer without a new refresh token (Google, Dropbox) keeps the old one; Microsoft
    rotates it."""
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise DestinationError("the provider's token answer holds no access_token")
    secrets = {"access_token": access_token}
    refresh_token = body.get("refresh_token") or previous.get("refresh_token")
    if refresh_token:
        secrets["refresh_token"] = str(refresh_token)
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int | float | str) and str(expires_in).strip():
        secrets["expires_at"] = str(int(time.time() + float(expires_in)))
    return secrets


# ---------------------------------------------------------------- the common filesystem


class Upload:
    """A streamed upload: `write` bytes as they come, then `finish` (commits) or `abort`."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Forget the upload; nothing has become visible."""


class ChunkedUpload(Upload):
    """Cuts what is written into `chunk_bytes` pieces for `send(piece, offset)`; the rest
    goes with `send_last(piece, offset)`. Holds at most one chunk plus one write."""

    def __init__(self) -> None:
        self.chunk_bytes = settings.cloud_drive_chunk_bytes()
        self._pending = bytearray()
        self.offset = 0

    def write(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) > self.chunk_bytes:  # keep something for the last request
            piece = bytes(self._pending[: self.chunk_bytes])
            del self._pending[: self.chunk_bytes]
            self.send(piece, self.offset)
            self.offset += len(piece)

    def finish(self) -> None:
        self.send_last(bytes(self._pending), self.offset)
        self.offset += len(self._pending)
        self._pending.clear()

    def send(self, piece: bytes, offset: int) -> None:
        raise NotImplementedError

    def send_last(self, piece: bytes, offset: int) -> None:
        raise NotImplementedError


class _CloudDriveFile(AbstractBufferedFile):
    """Reads by ranges; writes through an `Upload` that commits only on a clean close."""

    fs: CloudDriveFileSystem
    _upload: Upload | None = None

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs._read_range(self.path, start, end)

    def _initiate_upload(self) -> None:
        self._upload = self.fs._begin_upload(self.path)

    def _upload_chunk(self, final: bool = False) -> bool:
        assert self._upload is not None
        self._upload.write(self.buffer.getvalue())
        if final:
            self._upload.finish()
        return True

    def discard(self) -> None:
        """Abandon a write: nothing is committed, the provider's session is dropped."""
        if self._closed or "r" in self.mode:
            return
        upload, self._upload = self._upload, None
        self.closed = True
        if upload is not None:
            upload.abort()

    def __exit__(self, exc_type: Any, *args: Any) -> None:
        if exc_type is not None and "r" not in self.mode:
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:
        # an unclosed writer was abandoned (an exception, a lost reference): never commit it
        if not getattr(self, "_closed", True) and "r" not in self.mode:
            self.discard()


class CloudDriveFileSystem(AbstractFileSystem):
    """What the three drives share: paths, the file class, listing and info shapes.

    Entries are {"name": path, "size": bytes, "type": "file" | "directory"}."""

    protocol: ClassVar[str | tuple[str, ...]] = ""
    root_marker = ""
    cachable = False  # one instance per user's tokens: never shared through fsspec's cache

    def __init__(self, client: TokenClient, **kwargs: Any):
        super().__init__(**kwargs)
        self.client = client

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path)
        if "://" in text:
            text = text.split("://", 1)[1]
        return text.strip("/")

    def _entry(self, path: str, size: int, is_folder: bool) -> dict[str, Any]:
        return {"name": path, "size": size, "type": "directory" if is_folder else "file"}

    def _join(self, folder: str, name: str) -> str:
        return f"{folder}/{name}" if folder else name

    def _missing(self, path: str) -> FileNotFoundError:
        return FileNotFoundError(f"{self.client.name}: {path or '/'} does not exist")

    def _failed(self, what: str, response: httpx.Response) -> DestinationError:
        return DestinationError(
            f"{self.client.name} could not {what}: HTTP {response.status_code} "
            f"({provider_text(response)})"
        )

    # the provider's part
    def _list(self, path: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _stat(self, path: str) -> dict[str, Any]:
        raise NotImplementedError

    def _read_range(self, path: str, start: int, end: int) -> bytes:
        raise NotImplementedError

    def _begin_upload(self, path: str) -> Upload:
        raise NotImplementedError

    def _delete(self, path: str) -> None:
        raise NotImplementedError

    def _make_folder(self, path: str) -> None:
        raise NotImplementedError

    def _move(self, source: str, target: str) -> None:
        """Rename `source` to `target` (whose folder exists), replacing a file there."""
        raise NotImplementedError

    # fsspec's API on top
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        info = self.info(path)
        entries = self._list(path) if info["type"] == "directory" else [info]
        entries.sort(key=lambda entry: entry["name"])
        return entries if detail else [entry["name"] for entry in entries]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if not path:
            return self._entry("", 0, True)
        return self._stat(path)

    def exists(self, path: str, **kwargs: Any) -> bool:
        # only "not there" is False: a refused credential or an outage must not read as absent
        try:
            self.info(path)
        except FileNotFoundError:
            return False
        return True

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> _CloudDriveFile:
        if mode not in ("rb", "wb"):
            raise NotImplementedError(f"{self.client.name} files open as 'rb' or 'wb' only")
        return _CloudDriveFile(
            self,
            self._strip_protocol(path),
            mode,
            block_size=block_size or settings.cloud_drive_chunk_bytes(),
            autocommit=autocommit,
            cache_type="readahead" if mode == "rb" else "none",
            cache_options=cache_options,
            **kwargs,
        )

    def rm_file(self, path: str) -> None:
        self._delete(self._strip_protocol(path))

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rmdir(self, path: str) -> None:
        path = self._strip_protocol(path)
        if self._list(path):
            raise OSError(f"{self.client.name}: {path} is not empty")
        self._delete(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        # a folder and everything in it is one delete on all three providers
        paths = [path] if isinstance(path, str) else list(path)
        for one in paths:
            one = self._strip_protocol(one)
            if not recursive and self.info(one)["type"] == "directory":
                raise IsADirectoryError(f"{self.client.name}: {one} is a folder (recursive=True)")
            self._delete(one)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.makedirs(path, exist_ok=True)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        if not path:
            return
        if self.exists(path):
            if not exist_ok or self.info(path)["type"] != "directory":
                raise FileExistsError(f"{self.client.name}: {path} exists")
            return
        self._make_folder(path)

    def mv(self, path1: Any, path2: Any, recursive: bool = False, **kwargs: Any) -> None:
        """A rename on the provider (a file or a whole folder), never a copy: a file
        uploaded under a temporary name and moved into place appears there whole."""
        source, target = self._strip_protocol(path1), self._strip_protocol(path2)
        if source == target:
            return
        self.info(source)  # FileNotFoundError when there is nothing to move
        parent = target.rpartition("/")[0]
        if parent:
            self.makedirs(parent, exist_ok=True)
        self._move(source, target)

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        with self.open(path1, "rb") as source, self.open(path2, "wb") as target:
            while chunk := source.read(settings.cloud_drive_chunk_bytes()):
                target.write(chunk)
