"""Google Drive as an fsspec filesystem, over the Drive API v3 (see cloud_drives.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from resources.destinations.cloud_drive_base import (
    ChunkedUpload,
    CloudDriveFileSystem,
    TokenClient,
    Upload,
)
from resources.destinations.errors import DestinationError

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

    def __init__(self, client: TokenClient, **kwargs: Any):
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
            raise self._failed("read a file", response)
        return response.content if response.status_code == 206 else response.content[start:end]

    def _begin_upload(self, path: str) -> Upload:
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
            raise self._failed("start an upload", response)
        return _DriveResumableUpload(self, path, response.headers["location"])

    def _delete(self, path: str) -> None:
        file_id = self._existing(path)["id"]
        response = self._api("DELETE", f"files/{quote(file_id)}")
        if response.status_code == 404:
            raise self._missing(path)
        if response.status_code not in (200, 204):
            raise self._failed("delete", response)
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
            raise self._failed("create a folder", response)
        self._folder_ids[path] = response.json()["id"]

    def _move(self, source: str, target: str) -> None:
        # files.update with addParents/removeParents and the new name; a file already at the
        # target (Drive allows two of one name) is deleted only once the new one is there
        moving = self._existing(source)
        replaced = self._find(target)
        old_parent = self._folder_id(source.rpartition("/")[0])
        new_parent = self._folder_id(target.rpartition("/")[0])
        response = self._api(
            "PATCH",
            f"files/{quote(moving['id'])}",
            params={"addParents": new_parent, "removeParents": old_parent, "fields": _DRIVE_FIELDS},
            json={"name": target.rpartition("/")[2]},
        )
        if response.status_code != 200:
            raise self._failed("move a file", response)
        if moving["mimeType"] == _FOLDER_TYPE:
            self._folder_ids = {"": "root"}  # paths below it changed
        if replaced is not None and replaced["id"] != moving["id"]:
            gone = self._api("DELETE", f"files/{quote(replaced['id'])}")
            if gone.status_code not in (200, 204, 404):
                raise self._failed("replace a file", gone)


class _DriveResumableUpload(ChunkedUpload):
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
            raise self.fs._failed("upload a file", response)
        if response.headers.get("range") != f"bytes=0-{last}":
            raise DestinationError(
                f"Google Drive kept {response.headers.get('range') or 'nothing'} of the file, "
                f"not bytes=0-{last}: the upload was not completed"
            )

    def send_last(self, piece: bytes, offset: int) -> None:
        total = offset + len(piece)
        content_range = f"bytes {offset}-{total - 1}/{total}" if piece else f"bytes */{total}"
        response = self._put(piece, content_range)
        if response.status_code not in (200, 201):
            raise self.fs._failed("finish an upload", response)
