"""Tar archives (`.tar`, `.tgz`, Joplin's `.jex`) opened as safely as base.py opens zips,
and the nested zips of an export read against one shared budget.

A tar is read in one streaming pass through a counting reader: every byte the archive
inflates to (headers, skipped members and PAX records included) counts against the total
size cap and the compression-ratio cap, so a gzip bomb stops as soon as it has inflated past
what an honest export could, whatever its headers declare. Links, devices and paths outside
the archive refuse the whole file: no app exports them.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import io
import lzma
import tarfile
import zlib
from collections.abc import Callable
from typing import Any

from assets.imports.parsers.base import (
    ZIP_LIMITS,
    ImportFormatError,
    ZipLimits,
    is_junk_member,
    is_zip,
    safe_zip_members,
)

_GZIP_MAGIC = b"\x1f\x8b"
# A tar is read in order: reaching a member inflates all before it. Half zip's ratio keeps a
# bomb's cost well under a second; real exports (JSON, Markdown) compress 5 to 20 times.
TAR_MAX_RATIO = 100
_READ_ERRORS = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    OSError,
    lzma.LZMAError,
    ValueError,
)


def is_gzip(data: bytes) -> bool:
    return data[:2] == _GZIP_MAGIC


def is_tar(data: bytes) -> bool:
    """A plain tar (ustar/GNU magic), or a gzip whose first block is a tar header."""
    if is_gzip(data):
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:65536], 1024)
        except zlib.error:
            return False
        return head[257:262] == b"ustar"
    return data[257:262] == b"ustar"


class _BoundedStream:
    """The archive's inflated stream, refused *before* a read or seek would take it past
    the total size or the compression ratio the limits allow."""

    def __init__(self, stream: Any, packed: int, file_name: str, limits: ZipLimits):
        self.stream = stream
        self.packed = max(packed, 1)
        self.file_name = file_name
        self.limits = limits

    def _allow(self, end: int) -> None:
        limits = self.limits
        if end > limits.max_total_bytes:
            raise ImportFormatError(
                self.file_name, None, None, "inflates to more than the import limit"
            )
        ratio = min(limits.max_ratio, TAR_MAX_RATIO)
        if end > limits.ratio_floor_bytes and end > ratio * self.packed:
            raise ImportFormatError(
                self.file_name, None, None, "is compressed suspiciously well (a tar bomb?)"
            )

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.limits.max_total_bytes + 1 - self.stream.tell()
        self._allow(self.stream.tell() + size)
        return bytes(self.stream.read(size))

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.stream.tell() + offset
        if whence not in (0, 1):
            raise OSError("only forward seeks from the start or the current position")
        self._allow(target)
        return int(self.stream.seek(target))

    def tell(self) -> int:
        return int(self.stream.tell())


def safe_tar_members(
    data: bytes,
    *,
    file_name: str,
    select: Callable[[str], bool] | None = None,
    limits: ZipLimits = ZIP_LIMITS,
) -> dict[str, bytes]:
    """The tar's regular files (all, or those `select` accepts) by path, within `limits`.

    Plain, gzip, bzip2 or xz tars. Every member is checked, selected or not: an absolute or
    `..` path, a link or device, too many members, or a member larger than the limits
    raises ImportFormatError; so does inflating past the total or ratio caps.
    """
    members: dict[str, bytes] = {}
    budget = limits.max_total_bytes
    count = 0  # counted while walking: the archive is never listed in full first
    try:
        with _open_stream(data) as stream:
            bounded = _BoundedStream(stream, len(data), file_name, limits)
            with tarfile.open(fileobj=bounded, mode="r:") as archive:  # type: ignore[call-overload]
                for info in archive:
                    count += 1
                    if count > limits.max_members:
                        raise ImportFormatError(
                            file_name,
                            None,
                            None,
                            f"holds more than the {limits.max_members} members an import accepts",
                        )
                    name = info.name.replace("\\", "/").removeprefix("./")
                    _check_member(info, name, file_name)
                    if info.isdir() or is_junk_member(name):
                        continue
                    if info.size > limits.max_member_bytes or info.size > budget:
                        raise ImportFormatError(
                            file_name,
                            f"member '{name}'",
                            None,
                            f"is too large ({info.size} bytes)",
                        )
                    if select is not None and not select(name):
                        continue
                    extracted = archive.extractfile(info)
                    content = extracted.read(info.size) if extracted is not None else b""
                    budget -= len(content)
                    members[name] = content
    except ImportFormatError:
        raise
    except _READ_ERRORS as exc:
        raise ImportFormatError(
            file_name, None, None, f"not a readable tar archive ({exc})"
        ) from None
    return members


def _open_stream(data: bytes) -> io.BufferedIOBase:
    raw = io.BytesIO(data)
    if is_gzip(data):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if data[:3] == b"BZh":
        return bz2.BZ2File(raw, mode="rb")
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw, mode="rb")
    return raw


def _check_member(info: tarfile.TarInfo, name: str, file_name: str) -> None:
    where = f"member '{name}'"
    if info.issym() or info.islnk():
        raise ImportFormatError(file_name, where, None, "is a link; exports hold only files")
    if not (info.isfile() or info.isdir()):
        raise ImportFormatError(file_name, where, None, "is a device or special file")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\x00" in name:
        raise ImportFormatError(file_name, where, None, "has an unsafe path (absolute)")
    if ".." in name.split("/"):
        raise ImportFormatError(file_name, where, None, "has an unsafe path (with '..')")


def archive_members(
    data: bytes,
    *,
    file_name: str,
    select: Callable[[str], bool] | None = None,
    limits: ZipLimits = ZIP_LIMITS,
) -> dict[str, bytes]:
    """A zip's or a tar's members, with the checks of each kind."""
    if is_zip(data):
        return safe_zip_members(data, file_name=file_name, select=select, limits=limits)
    if is_tar(data):
        return safe_tar_members(data, file_name=file_name, select=select, limits=limits)
    raise ImportFormatError(file_name, None, None, "not a zip or tar archive")


def flatten_nested_zips(
    members: dict[str, bytes],
    *,
    file_name: str,
    select: Callable[[str], bool],
    limits: ZipLimits = ZIP_LIMITS,
) -> dict[str, bytes]:
    """`members` with each `.zip` among them replaced by its own selected members, one level
    deep (Notion's `Export-...-Part-N.zip`); all of them share one size budget, so many
    small parts cannot add up to a bomb."""
    files: dict[str, bytes] = {}
    budget = limits.max_total_bytes - sum(len(c) for c in members.values())
    for path, content in members.items():
        if not path.casefold().endswith(".zip"):
            files[path] = content
            continue
        inner = safe_zip_members(
            content,
            file_name=f"{file_name}/{path}",
            select=lambda n: not n.casefold().endswith(".zip") and select(n),
            limits=dataclasses.replace(limits, max_total_bytes=max(budget, 0)),
        )
        budget -= sum(len(c) for c in inner.values())
        files.update(inner)
    return files
