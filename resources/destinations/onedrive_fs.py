"""OneDrive as an fsspec filesystem, over Microsoft Graph (see cloud_drives.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from resources import settings
from resources.destinations.cloud_drive_base import (
    CloudDriveFileSystem,
    Upload,
)

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
            body = self._checked(self.client.request("GET", url), path, "list a folder")
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
            raise self._failed("read a file", response)
        return response.content if response.status_code == 206 else response.content[start:end]

    def _begin_upload(self, path: str) -> Upload:
        return _GraphUpload(self, path)

    def _delete(self, path: str) -> None:
        response = self.client.request("DELETE", self._item_url(path))
        if response.status_code == 404:
            raise self._missing(path)
        if response.status_code != 204:
            raise self._failed("delete", response)

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
            raise self._failed("create a folder", response)

    def _move(self, source: str, target: str) -> None:
        # PATCH the item with its new parent (by id) and name; replace what is there
        parent = target.rpartition("/")[0]
        parent_item = self._checked(self.client.request("GET", self._item_url(parent)), parent, "")
        response = self.client.request(
            "PATCH",
            self._item_url(source),
            params={"@microsoft.graph.conflictBehavior": "replace"},
            json={"parentReference": {"id": parent_item["id"]}, "name": target.rpartition("/")[2]},
        )
        self._checked(response, source, "move a file")


class _GraphUpload(Upload):
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
                self.fs._checked(response, self.path, "upload a file")
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
        upload_url = self.fs._checked(response, self.path, "start an upload")["uploadUrl"]
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
                    raise self.fs._failed("upload a file", response)
        except BaseException:
            client.request("DELETE", upload_url, authorised=False)
            raise
