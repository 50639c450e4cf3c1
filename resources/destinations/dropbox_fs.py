"""Dropbox as an fsspec filesystem, over the Dropbox API v2 (see cloud_drives.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from resources.destinations.cloud_drive_base import (
    ChunkedUpload,
    CloudDriveFileSystem,
    Upload,
    provider_text,
)

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
        if response.status_code == 409 and "not_found" in provider_text(response):
            raise self._missing(path)
        if response.status_code != 200:
            raise self._failed(what, response)
        result: dict[str, Any] = response.json()
        return result

    def _dropbox_entry(self, path: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
        # named as the caller spelled the folder: Dropbox paths ignore case, and an existing
        # "/Goalport" must still list as "goalport/..." to whoever asked for "goalport"
        is_folder = metadata[".tag"] == "folder"
        return self._entry(path, 0 if is_folder else int(metadata.get("size", 0)), is_folder)

    def _list(self, path: str) -> list[dict[str, Any]]:
        # files/list_folder, then files/list_folder/continue while has_more
        body = self._check(
            self._rpc("files/list_folder", {"path": f"/{path}" if path else "", "limit": 2000}),
            path,
            "list a folder",
        )
        entries = [self._dropbox_entry(self._join(path, e["name"]), e) for e in body["entries"]]
        while body.get("has_more"):
            body = self._check(
                self._rpc("files/list_folder/continue", {"cursor": body["cursor"]}),
                path,
                "list a folder",
            )
            entries += [
                self._dropbox_entry(self._join(path, e["name"]), e) for e in body["entries"]
            ]
        return entries

    def _stat(self, path: str) -> dict[str, Any]:
        response = self._rpc("files/get_metadata", {"path": f"/{path}"})
        return self._dropbox_entry(path, self._check(response, path, "look up a file"))

    def _read_range(self, path: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        response = self._content(
            "files/download", {"path": f"/{path}"}, None, Range=f"bytes={start}-{end - 1}"
        )
        if response.status_code == 409 and "not_found" in provider_text(response):
            raise self._missing(path)
        if response.status_code not in (200, 206):
            raise self._failed("read a file", response)
        data = response.content
        return data if response.status_code == 206 else data[start:end]

    def _begin_upload(self, path: str) -> Upload:
        return _DropboxUpload(self, path)

    def _delete(self, path: str) -> None:
        self._check(self._rpc("files/delete_v2", {"path": f"/{path}"}), path, "delete")

    def _make_folder(self, path: str) -> None:
        response = self._rpc("files/create_folder_v2", {"path": f"/{path}", "autorename": False})
        self._check(response, path, "create a folder")

    def _move(self, source: str, target: str) -> None:
        # files/move_v2 refuses an existing target (409 to/conflict): the old one goes first
        arg = {"from_path": f"/{source}", "to_path": f"/{target}", "autorename": False}
        response = self._rpc("files/move_v2", arg)
        if response.status_code == 409 and "to/conflict" in provider_text(response):
            self._delete(target)
            response = self._rpc("files/move_v2", arg)
        self._check(response, source, "move a file")


class _DropboxUpload(ChunkedUpload):
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
        self.fs._check(response, self.path, "upload a file")

    def send_last(self, piece: bytes, offset: int) -> None:
        if self.session_id is None:
            response = self.fs._content("files/upload", self._commit(), piece)
        else:
            cursor = {"session_id": self.session_id, "offset": offset}
            response = self.fs._content(
                "files/upload_session/finish", {"cursor": cursor, "commit": self._commit()}, piece
            )
        self.fs._check(response, self.path, "upload a file")
