"""Dropbox, Google Drive and OneDrive as fsspec filesystems, over their documented HTTP APIs.

`cloud_drive_filesystem("dropbox://…" | "gdrive://…" | "onedrive://…", secrets, save_secrets)`
gives a filesystem whose paths are the URL's without its scheme ("dropbox://goalport/x.age"
is the file x.age in the user's folder "goalport"), like s3fs's.

Why our own small filesystems rather than dropboxdrivefs, gdrive-fsspec or msgraphfs: those
build on SDKs whose hosts are fixed HTTPS names and which refresh tokens on their own,
so neither could goalport point them at the loopback fakes its tests run, nor learn of a
refreshed token to store it wrapped (`save_secrets`), nor tell a revoked grant from a
passing failure. The three APIs used are a few documented calls each; the doc pages are
cited where they are used, and the tests' fake providers (tests/destinations/fake_clouds.py)
follow the same pages.

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

import json
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from resources import settings
from resources.destinations.errors import DestinationCredentialError, DestinationError

__all__ = [
    "CLOUD_DRIVE_SCHEMES",
    "CloudDriveFileSystem",
    "DropboxFileSystem",
    "GoogleDriveFileSystem",
    "OneDriveFileSystem",
    "cloud_drive_filesystem",
    "provider_name",
]

PROVIDER_NAMES = {"dropbox": "Dropbox", "gdrive": "Google Drive", "onedrive": "OneDrive"}
CLOUD_DRIVE_SCHEMES = tuple(PROVIDER_NAMES)
_REFRESH_MARGIN_SECONDS = 60  # refresh a token that would expire within a minute
_MAX_PROVIDER_TEXT = 200  # how much of a provider's error text goes into our messages

SaveSecrets = Callable[[dict[str, str]], None]


def provider_name(provider: str) -> str:
    """The provider's name as users know it ("Google Drive" for gdrive)."""
    return PROVIDER_NAMES[provider]


def cloud_drive_filesystem(
    url: str, secrets: Mapping[str, str], save_secrets: SaveSecrets
) -> CloudDriveFileSystem:
    """The filesystem for a `dropbox://`, `gdrive://` or `onedrive://` destination URL."""
    scheme = url.split("://", 1)[0].lower()
    classes: dict[str, type[CloudDriveFileSystem]] = {
        "dropbox": DropboxFileSystem,
        "gdrive": GoogleDriveFileSystem,
        "onedrive": OneDriveFileSystem,
    }
    if scheme not in classes:
        raise DestinationError(f"{scheme}:// is not a cloud drive goalport knows")
    if not secrets.get("access_token") and not secrets.get("refresh_token"):
        raise DestinationCredentialError(
            f"{provider_name(scheme)} is not connected: connect it first "
            f"(`goalport backup connect USER {scheme}` or the API's OAuth start)"
        )
    return classes[scheme](_TokenClient(scheme, secrets, save_secrets))


def _provider_text(response: httpx.Response) -> str:
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


class _TokenClient:
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
        expires_at = self._secrets.get("expires_at", "")
        if not self._secrets.get("access_token"):
            return True
        return bool(expires_at) and float(expires_at) - _REFRESH_MARGIN_SECONDS < time.time()

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
                f"{self.name} refused goalport's access ({_provider_text(response)}): it was "
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
        refused once. A second refusal is a DestinationCredentialError."""
        if authorised and self._expired():
            self.refresh()
        extra_headers = kwargs.pop("headers", None) or {}
        for attempt in (1, 2):
            headers = dict(extra_headers)
            if authorised:
                headers["Authorization"] = f"Bearer {self._secrets['access_token']}"
            try:
                response = self.http.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError as error:
                raise DestinationError(
                    f"{self.name} could not be reached ({type(error).__name__})"
                ) from None
            if response.status_code != 401 or not authorised:
                return response
            if attempt == 1:
                self.refresh()
        raise DestinationCredentialError(
            f"{self.name} refuses goalport's access ({_provider_text(response)}): connect "
            f"{self.name} again"
        )


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


class _Upload:
    """A streamed upload: `write` bytes as they come, then `finish` (commits) or `abort`."""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Forget the upload; nothing has become visible."""


class _ChunkedUpload(_Upload):
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
    """Reads by ranges; writes through an `_Upload` that commits only on a clean close."""

    fs: CloudDriveFileSystem
    _upload: _Upload | None = None

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

    def __init__(self, client: _TokenClient, **kwargs: Any):
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
            f"({_provider_text(response)})"
        )

    # the provider's part
    def _list(self, path: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _stat(self, path: str) -> dict[str, Any]:
        raise NotImplementedError

    def _read_range(self, path: str, start: int, end: int) -> bytes:
        raise NotImplementedError

    def _begin_upload(self, path: str) -> _Upload:
        raise NotImplementedError

    def _delete(self, path: str) -> None:
        raise NotImplementedError

    def _make_folder(self, path: str) -> None:
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

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        with self.open(path1, "rb") as source, self.open(path2, "wb") as target:
            while chunk := source.read(settings.cloud_drive_chunk_bytes()):
                target.write(chunk)


# ---------------------------------------------------------------- Dropbox

# https://www.dropbox.com/developers/documentation/http/documentation : RPC endpoints take
# JSON bodies; content endpoints take their JSON argument in the Dropbox-API-Arg header and
# the bytes as the body. Errors about a path are HTTP 409 with an `error_summary` such as
# "path/not_found/..".


def _dropbox_arg(arg: Mapping[str, Any]) -> str:
    # "HTTP header-safe JSON": non-ASCII characters and 0x7F escaped as \uXXXX
    return json.dumps(arg, ensure_ascii=True).replace("\x7f", "\\u007f")


class DropboxFileSystem(CloudDriveFileSystem):
    protocol = "dropbox"

    def _rpc(self, name: str, arg: Mapping[str, Any]) -> httpx.Response:
        return self.client.request("POST", f"{self.client.endpoint('api')}/{name}", json=arg)

    def _content(
        self, name: str, arg: Mapping[str, Any], body: bytes | None, **headers: str
    ) -> httpx.Response:
        headers = {"Dropbox-API-Arg": _dropbox_arg(arg), **headers}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        return self.client.request(
            "POST", f"{self.client.endpoint('content')}/{name}", headers=headers, content=body
        )

    def _check(self, response: httpx.Response, path: str, what: str) -> dict[str, Any]:
        if response.status_code == 409 and "not_found" in _provider_text(response):
            raise self._missing(path)
        if response.status_code != 200:
            raise self._failed(what, response)
        result: dict[str, Any] = response.json()
        return result

    def _dropbox_entry(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        path = self._strip_protocol(metadata["path_display"])
        is_folder = metadata[".tag"] == "folder"
        return self._entry(path, 0 if is_folder else int(metadata.get("size", 0)), is_folder)

    def _list(self, path: str) -> list[dict[str, Any]]:
        # files/list_folder, then files/list_folder/continue while has_more
        body = self._check(
            self._rpc("files/list_folder", {"path": f"/{path}" if path else "", "limit": 2000}),
            path,
            f"list {path or '/'}",
        )
        entries = [self._dropbox_entry(e) for e in body["entries"]]
        while body.get("has_more"):
            body = self._check(
                self._rpc("files/list_folder/continue", {"cursor": body["cursor"]}),
                path,
                f"list {path or '/'}",
            )
            entries += [self._dropbox_entry(e) for e in body["entries"]]
        return [e for e in entries if e["name"] != path]

    def _stat(self, path: str) -> dict[str, Any]:
        response = self._rpc("files/get_metadata", {"path": f"/{path}"})
        return self._dropbox_entry(self._check(response, path, f"look up {path}"))

    def _read_range(self, path: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        response = self._content(
            "files/download", {"path": f"/{path}"}, None, Range=f"bytes={start}-{end - 1}"
        )
        if response.status_code == 409 and "not_found" in _provider_text(response):
            raise self._missing(path)
        if response.status_code not in (200, 206):
            raise self._failed(f"read {path}", response)
        data = response.content
        return data if response.status_code == 206 else data[start:end]

    def _begin_upload(self, path: str) -> _Upload:
        return _DropboxUpload(self, path)

    def _delete(self, path: str) -> None:
        self._check(self._rpc("files/delete_v2", {"path": f"/{path}"}), path, f"delete {path}")

    def _make_folder(self, path: str) -> None:
        response = self._rpc("files/create_folder_v2", {"path": f"/{path}", "autorename": False})
        self._check(response, path, f"create the folder {path}")


class _DropboxUpload(_ChunkedUpload):
    """files/upload_session/start, /append_v2 ..., /finish with the commit; the file exists
    only after finish. A file of one chunk or less is one files/upload. An abandoned
    session is simply never finished (Dropbox drops it after 7 days)."""

    def __init__(self, fs: DropboxFileSystem, path: str):
        super().__init__()
        self.fs, self.path = fs, path
        self.session_id: str | None = None

    def _commit(self) -> dict[str, Any]:
        # overwrite: a new backup of the same name replaces the old one whole
        return {"path": f"/{self.path}", "mode": "overwrite", "autorename": False, "mute": True}

    def send(self, piece: bytes, offset: int) -> None:
        if self.session_id is None:
            response = self.fs._content("files/upload_session/start", {"close": False}, piece)
            self.session_id = self.fs._check(response, self.path, "start an upload")["session_id"]
            return
        cursor = {"session_id": self.session_id, "offset": offset}
        response = self.fs._content(
            "files/upload_session/append_v2", {"cursor": cursor, "close": False}, piece
        )
        self.fs._check(response, self.path, f"upload {self.path}")

    def send_last(self, piece: bytes, offset: int) -> None:
        if self.session_id is None:
            response = self.fs._content("files/upload", self._commit(), piece)
        else:
            cursor = {"session_id": self.session_id, "offset": offset}
            response = self.fs._content(
                "files/upload_session/finish", {"cursor": cursor, "commit": self._commit()}, piece
            )
        self.fs._check(response, self.path, f"upload {self.path}")


# ---------------------------------------------------------------- Google Drive

# https://developers.google.com/workspace/drive/api/reference/rest/v3/files : Drive has no
# paths, only files with names and parent folders ("root" is the user's My Drive), found
# with files.list and a `q` query (https://developers.google.com/workspace/drive/api/guides/search-files).
# Uploads: https://developers.google.com/workspace/drive/api/guides/manage-uploads#resumable

_FOLDER_TYPE = "application/vnd.google-apps.folder"
_DRIVE_FIELDS = "id,name,mimeType,size"
_RESUME_INCOMPLETE = 308


def _drive_query_text(name: str) -> str:
    # string literals in `q` are single-quoted, with \ and ' escaped by a backslash
    return "'" + name.replace("\\", "\\\\").replace("'", "\\'") + "'"


class GoogleDriveFileSystem(CloudDriveFileSystem):
    protocol = "gdrive"

    def __init__(self, client: _TokenClient, **kwargs: Any):
        super().__init__(client, **kwargs)
        self._folder_ids: dict[str, str] = {"": "root"}

    def _api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, f"{self.client.endpoint('api')}/{path}", **kwargs)

    def _children(self, folder_id: str, name: str | None = None) -> Iterator[dict[str, Any]]:
        query = f"{_drive_query_text(folder_id)} in parents and trashed = false"
        if name is not None:
            query = f"name = {_drive_query_text(name)} and {query}"
        params = {"q": query, "fields": f"nextPageToken,files({_DRIVE_FIELDS})", "pageSize": 1000}
        while True:
            response = self._api("GET", "files", params=params)
            if response.status_code != 200:
                raise self._failed("list a folder", response)
            body = response.json()
            yield from body.get("files", [])
            if not body.get("nextPageToken"):
                return
            params["pageToken"] = body["nextPageToken"]

    def _find(self, path: str) -> dict[str, Any] | None:
        """The Drive file at `path`, walking from My Drive; None if any part is missing."""
        if not path:
            return {"id": "root", "name": "", "mimeType": _FOLDER_TYPE}
        parent, _, name = path.rpartition("/")
        parent_id = self._folder_id(parent)
        if parent_id is None:
            return None
        # of several files with one name (Drive allows it), the first found is used
        found = next(self._children(parent_id, name), None)
        if found is not None and found["mimeType"] == _FOLDER_TYPE:
            self._folder_ids[path] = found["id"]
        return found

    def _folder_id(self, path: str) -> str | None:
        if path in self._folder_ids:
            return self._folder_ids[path]
        found = self._find(path)
        return found["id"] if found is not None and found["mimeType"] == _FOLDER_TYPE else None

    def _drive_entry(self, path: str, file: Mapping[str, Any]) -> dict[str, Any]:
        is_folder = file["mimeType"] == _FOLDER_TYPE
        return self._entry(path, 0 if is_folder else int(file.get("size", 0)), is_folder)

    def _existing(self, path: str) -> dict[str, Any]:
        found = self._find(path)
        if found is None:
            raise self._missing(path)
        return found

    def _list(self, path: str) -> list[dict[str, Any]]:
        folder_id = self._folder_id(path)
        if folder_id is None:
            raise self._missing(path)
        return [
            self._drive_entry(self._join(path, f["name"]), f) for f in self._children(folder_id)
        ]

    def _stat(self, path: str) -> dict[str, Any]:
        return self._drive_entry(path, self._existing(path))

    def _read_range(self, path: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        file_id = self._existing(path)["id"]
        response = self._api(
            "GET",
            f"files/{quote(file_id)}",
            params={"alt": "media"},
            headers={"Range": f"bytes={start}-{end - 1}"},
        )
        if response.status_code not in (200, 206):
            raise self._failed(f"read {path}", response)
        return response.content if response.status_code == 206 else response.content[start:end]

    def _begin_upload(self, path: str) -> _Upload:
        parent, _, name = path.rpartition("/")
        if parent:
            self.makedirs(parent, exist_ok=True)
        parent_id = self._folder_id(parent)
        assert parent_id is not None
        existing = next(self._children(parent_id, name), None)
        upload = self.client.endpoint("upload")
        headers = {"X-Upload-Content-Type": "application/octet-stream"}
        if existing is not None:  # new content for the same file: it switches at the end
            response = self.client.request(
                "PATCH",
                f"{upload}/files/{quote(existing['id'])}",
                params={"uploadType": "resumable"},
                headers=headers,
                json={},
            )
        else:
            response = self.client.request(
                "POST",
                f"{upload}/files",
                params={"uploadType": "resumable"},
                headers=headers,
                json={"name": name, "parents": [parent_id]},
            )
        if response.status_code != 200 or "location" not in response.headers:
            raise self._failed(f"start uploading {path}", response)
        return _DriveResumableUpload(self, path, response.headers["location"])

    def _delete(self, path: str) -> None:
        file_id = self._existing(path)["id"]
        response = self._api("DELETE", f"files/{quote(file_id)}")
        if response.status_code == 404:
            raise self._missing(path)
        if response.status_code not in (200, 204):
            raise self._failed(f"delete {path}", response)
        self._folder_ids = {
            p: i for p, i in self._folder_ids.items() if p != path and not p.startswith(path + "/")
        }

    def _make_folder(self, path: str) -> None:
        parent, _, name = path.rpartition("/")
        if parent and self._folder_id(parent) is None:
            self._make_folder(parent)
        parent_id = self._folder_id(parent)
        response = self._api(
            "POST",
            "files",
            params={"fields": _DRIVE_FIELDS},
            json={"name": name, "mimeType": _FOLDER_TYPE, "parents": [parent_id]},
        )
        if response.status_code != 200:
            raise self._failed(f"create the folder {path}", response)
        self._folder_ids[path] = response.json()["id"]


class _DriveResumableUpload(_ChunkedUpload):
    """PUT the session URI chunk by chunk (Content-Range with `*` for the total until the
    last one); 308 Resume Incomplete until then, and the file is created or replaced only by
    the last. The session URI itself authorises the upload (no bearer token is sent)."""

    def __init__(self, fs: GoogleDriveFileSystem, path: str, session_uri: str):
        super().__init__()
        self.fs, self.path, self.session_uri = fs, path, session_uri

    def _put(self, piece: bytes, content_range: str) -> httpx.Response:
        return self.fs.client.request(
            "PUT",
            self.session_uri,
            authorised=False,
            headers={"Content-Range": content_range},
            content=piece,
        )

    def send(self, piece: bytes, offset: int) -> None:
        last = offset + len(piece) - 1
        response = self._put(piece, f"bytes {offset}-{last}/*")
        if response.status_code != _RESUME_INCOMPLETE:
            raise self.fs._failed(f"upload {self.path}", response)
        if response.headers.get("range") != f"bytes=0-{last}":
            raise DestinationError(
                f"Google Drive kept {response.headers.get('range') or 'nothing'} of "
                f"{self.path}, not bytes=0-{last}: the upload was not completed"
            )

    def send_last(self, piece: bytes, offset: int) -> None:
        total = offset + len(piece)
        content_range = f"bytes {offset}-{total - 1}/{total}" if piece else f"bytes */{total}"
        response = self._put(piece, content_range)
        if response.status_code not in (200, 201):
            raise self.fs._failed(f"finish uploading {self.path}", response)


# ---------------------------------------------------------------- OneDrive (Microsoft Graph)

# https://learn.microsoft.com/en-us/graph/api/resources/onedrive : items are addressed by
# path as /me/drive/root:/{path}: ; errors are {"error": {"code": ..., "message": ...}}.
# Uploads: https://learn.microsoft.com/en-us/graph/api/driveitem-createuploadsession


class OneDriveFileSystem(CloudDriveFileSystem):
    protocol = "onedrive"

    def _item_url(self, path: str, suffix: str = "") -> str:
        base = f"{self.client.endpoint('api')}/me/drive/root"
        if not path:
            return base + suffix
        return f"{base}:/{quote(path)}:{suffix}" if suffix else f"{base}:/{quote(path)}"

    def _graph_entry(self, path: str, item: Mapping[str, Any]) -> dict[str, Any]:
        is_folder = "folder" in item
        return self._entry(path, 0 if is_folder else int(item.get("size", 0)), is_folder)

    def _checked(self, response: httpx.Response, path: str, what: str) -> dict[str, Any]:
        if response.status_code == 404:
            raise self._missing(path)
        if response.status_code not in (200, 201):
            raise self._failed(what, response)
        body: dict[str, Any] = response.json()
        return body

    def _list(self, path: str) -> list[dict[str, Any]]:
        url: str | None = self._item_url(path, "/children")
        entries = []
        while url:
            body = self._checked(self.client.request("GET", url), path, f"list {path or '/'}")
            entries += [self._graph_entry(self._join(path, i["name"]), i) for i in body["value"]]
            url = body.get("@odata.nextLink")
        return entries

    def _stat(self, path: str) -> dict[str, Any]:
        item = self._checked(self.client.request("GET", self._item_url(path)), path, "look up")
        return self._graph_entry(path, item)

    def _read_range(self, path: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        headers = {"Range": f"bytes={start}-{end - 1}"}
        response = self.client.request("GET", self._item_url(path, "/content"), headers=headers)
        if response.status_code == 302:
            # a pre-authenticated download URL: no bearer token goes there
            response = self.client.request(
                "GET", response.headers["location"], authorised=False, headers=headers
            )
        if response.status_code == 404:
            raise self._missing(path)
        if response.status_code not in (200, 206):
            raise self._failed(f"read {path}", response)
        return response.content if response.status_code == 206 else response.content[start:end]

    def _begin_upload(self, path: str) -> _Upload:
        return _GraphUpload(self, path)

    def _delete(self, path: str) -> None:
        response = self.client.request("DELETE", self._item_url(path))
        if response.status_code == 404:
            raise self._missing(path)
        if response.status_code != 204:
            raise self._failed(f"delete {path}", response)

    def _make_folder(self, path: str) -> None:
        parent, _, name = path.rpartition("/")
        if parent and not self.exists(parent):
            self._make_folder(parent)
        response = self.client.request(
            "POST",
            self._item_url(parent, "/children"),
            json={"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "fail"},
        )
        if response.status_code != 201:
            raise self._failed(f"create the folder {path}", response)


class _GraphUpload(_Upload):
    """Spooled to local disk, then one upload session: fragments of the chunk size (a
    multiple of 320 KiB) PUT to the session's uploadUrl, 202 until the last, which creates
    or replaces the item. A failed upload's session is deleted. An empty file is one PUT
    to /content (upload sessions take no empty fragment)."""

    def __init__(self, fs: OneDriveFileSystem, path: str):
        self.fs, self.path = fs, path
        self.spool = tempfile.TemporaryFile(prefix="goalport-onedrive-")

    def write(self, data: bytes) -> None:
        self.spool.write(data)

    def abort(self) -> None:
        self.spool.close()

    def finish(self) -> None:
        try:
            total = self.spool.tell()
            self.spool.seek(0)
            if total == 0:
                response = self.fs.client.request(
                    "PUT", self.fs._item_url(self.path, "/content"), content=b""
                )
                self.fs._checked(response, self.path, f"upload {self.path}")
                return
            self._upload_session(total)
        finally:
            self.spool.close()

    def _upload_session(self, total: int) -> None:
        client = self.fs.client
        response = client.request(
            "POST",
            self.fs._item_url(self.path, "/createUploadSession"),
            json={"item": {"@microsoft.graph.conflictBehavior": "replace"}},
        )
        upload_url = self.fs._checked(response, self.path, f"start uploading {self.path}")[
            "uploadUrl"
        ]
        offset, chunk_bytes = 0, settings.cloud_drive_chunk_bytes()
        try:
            while offset < total:
                piece = self.spool.read(chunk_bytes)
                last = offset + len(piece) - 1
                # the upload URL carries its own authorisation: no bearer token (the docs
                # warn that one sent there may be refused)
                response = client.request(
                    "PUT",
                    upload_url,
                    authorised=False,
                    headers={"Content-Range": f"bytes {offset}-{last}/{total}"},
                    content=piece,
                )
                offset += len(piece)
                expected = (200, 201) if offset == total else (202,)
                if response.status_code not in expected:
                    raise self.fs._failed(f"upload {self.path}", response)
        except BaseException:
            client.request("DELETE", upload_url, authorised=False)
            raise
