"""A multipart upload read as it arrives, its file part written straight to storage.

The request body is parsed a chunk at a time (python-multipart's streaming parser); the
file's bytes go to a storage writer (`resources.storage.ObjectStorage.open_writer`) in
1 MiB writes done off the event loop, so the server holds about one chunk per upload (one
S3 part on S3) whatever the file's size. Bytes are counted as they come: one past the cap
and the upload is refused with 413 at once, its partial object aborted. The object
appears only when the whole body has been read and its form fields have been checked by
the caller (`ReceivedUpload.commit`); any failure before that leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from api.errors import ApiError
from resources.storage import ObjectStorage, ObjectWriter, StoredObject

WRITE_BYTES = 1024 * 1024
MAX_FIELD_BYTES = 4096
MAX_PARTS = 16


@dataclass
class _Part:
    name: str = ""
    file_name: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    text: bytearray = field(default_factory=bytearray)


class _Receiver:
    """The parser's callbacks: they only collect (file bytes into `pending`); the async
    loop around the parser does the writing."""

    def __init__(self, file_field: str):
        self.file_field = file_field
        self.parts = 0
        self.part = _Part()
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.fields: dict[str, str] = {}
        self.file_started: _Part | None = None  # the file part, once its headers are read
        self.file_ended = False
        self.pending = bytearray()
        self.error: ApiError | None = None

    def _fail(self, status: int, message: str, name: str | None = None) -> None:
        if self.error is None:
            code = "too_large" if status == 413 else "invalid"
            self.error = ApiError(status, code, message, field=name or None)

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            self._fail(422, f"a form of at most {MAX_PARTS} parts is accepted")
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field, self.header_value = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        self.part.file_name = filename.decode("utf-8", "replace") if filename is not None else None
        if self.part.name == self.file_field:
            if self.file_started is not None:
                self._fail(422, "send one file", self.file_field)
            else:
                self.file_started = self.part

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part is self.file_started:
            self.pending += data[start:end]
        else:
            self.part.text += data[start:end]
            if len(self.part.text) > MAX_FIELD_BYTES:
                self._fail(413, f"a form field has at most {MAX_FIELD_BYTES} bytes", self.part.name)
                self.part.text.clear()

    def on_part_end(self) -> None:
        if self.part is self.file_started:
            self.file_ended = True
        elif self.part.name:
            self.fields[self.part.name] = self.part.text.decode("utf-8", "replace")


@dataclass
class ReceivedUpload:
    """A parsed upload whose file is written but not yet visible: `commit` or `abort`."""

    file_name: str
    fields: dict[str, str]
    writer: ObjectWriter

    @property
    def size(self) -> int:
        return self.writer.size

    async def commit(self) -> StoredObject:
        return await anyio.to_thread.run_sync(self.writer.commit)

    async def abort(self) -> None:
        await anyio.to_thread.run_sync(self.writer.abort)


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary or len(boundary) > 200:
        raise ApiError(422, "invalid", "file: send the file as multipart/form-data", field="file")
    return boundary


async def receive_upload(
    request: Request,
    storage: ObjectStorage,
    key_for: Callable[[str], str],
    max_bytes: int,
    file_field: str = "file",
) -> ReceivedUpload:
    """Read the multipart body of `request`, writing its `file_field` part to storage under
    `key_for(file name)`; 413 as soon as the file passes `max_bytes`, 422 when there is no
    file, it is empty or the body is not multipart (400: a malformed one). Nothing is kept on failure."""
    receiver = _Receiver(file_field)
    parser = MultipartParser(_boundary(request), _callbacks(receiver))
    writer: ObjectWriter | None = None
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if receiver.error is not None:
                raise receiver.error
            started = receiver.file_started
            if started is not None and writer is None:
                name = (started.file_name or "upload")[:200]
                writer = await anyio.to_thread.run_sync(storage.open_writer, key_for(name))
            if writer is not None and len(receiver.pending) + writer.size > max_bytes:
                raise ApiError(
                    413, "too_large", f"an upload takes at most {max_bytes:,} bytes", field="file"
                )
            if writer is not None and (len(receiver.pending) >= WRITE_BYTES or not chunk):
                await _flush(receiver, writer)
        parser.finalize()
        if receiver.error is not None:
            raise receiver.error
        if writer is None or receiver.file_started is None or not receiver.file_ended:
            raise ApiError(422, "invalid", "file: a file part is required", field="file")
        await _flush(receiver, writer)
        if writer.size == 0:
            raise ApiError(422, "invalid", "the file is empty", field="file")
    except ClientDisconnect:
        if writer is not None:
            await anyio.to_thread.run_sync(writer.abort)
        raise
    except BaseException as exc:
        if writer is not None:
            await anyio.to_thread.run_sync(writer.abort)
        if isinstance(exc, FormParserError):
            raise ApiError(400, "bad_request", "the multipart body is malformed") from exc
        raise
    file_name = (receiver.file_started.file_name or "upload")[:200]
    return ReceivedUpload(file_name, receiver.fields, writer)


async def _flush(receiver: _Receiver, writer: ObjectWriter) -> None:
    if receiver.pending:
        data, receiver.pending = bytes(receiver.pending), bytearray()
        await anyio.to_thread.run_sync(writer.write, data)


def _callbacks(receiver: _Receiver) -> Any:  # python-multipart's MultipartCallbacks
    names = (
        "on_part_begin",
        "on_header_field",
        "on_header_value",
        "on_header_end",
        "on_headers_finished",
        "on_part_data",
        "on_part_end",
    )
    return {name: getattr(receiver, name) for name in names}
