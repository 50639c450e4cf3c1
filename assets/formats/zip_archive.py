"""Zip archives as goalport's formats write and read them.

Writing: the same entries and export time give the same bytes, every time (member times
are the export time, modes fixed), so a re-export of unchanged data is byte-identical and
its checksum proves it. Reading: a declared member size above MAX_ZIP_ENTRY_BYTES is
refused before anything is decompressed, and every failure is a ValueError that names the
file and the member. The CSV and Parquet exports, the XLSX cell reader and the GDPR bundle
use these.
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import zipfile
import zlib

ZipDateTime = tuple[int, int, int, int, int, int]  # year, month, day, hour, minute, second

ZIP_DEFLATE_LEVEL = 1  # a third of level 6's time for a fifth more bytes
# A declared entry size above this is refused before anything is decompressed.
MAX_ZIP_ENTRY_BYTES = 2 * 1024**3


def write_zip(
    entries: list[tuple[str, bytes]], exported_at: dt.datetime, *, deflate: bool
) -> bytes:
    """A zip of the entries, byte-for-byte the same for the same input (times = export time).

    The archive is laid out here, byte for byte what `zipfile` writes for it (tests hold the
    two equal): `zipfile`'s bookkeeping per member costs more than deflating a typical
    member's few kilobytes. Archives big enough to need ZIP64 go through `zipfile` itself."""
    date_time = zip_date_time(exported_at)
    if len(entries) > 0xFFFF or sum(len(data) for _, data in entries) * 1.05 > zipfile.ZIP64_LIMIT:
        return write_zip_with_zipfile(entries, date_time, deflate=deflate)
    dos_time = date_time[3] << 11 | date_time[4] << 5 | date_time[5] // 2
    dos_date = (date_time[0] - 1980) << 9 | date_time[1] << 5 | date_time[2]
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    parts: list[bytes] = []
    directory: list[bytes] = []
    offset = 0
    for name, data in entries:
        encoded, flags = _zip_name(name)
        stored = _deflated(data) if deflate else data
        fields = (flags, method, dos_time, dos_date, zlib.crc32(data), len(stored), len(data))
        header = struct.pack(
            _LOCAL_HEADER, b"PK\x03\x04", _ZIP_VERSION, 0, *fields, len(encoded), 0
        )
        parts += [header, encoded, stored]
        directory.append(
            struct.pack(
                _CENTRAL_HEADER,
                b"PK\x01\x02",
                _ZIP_VERSION,
                _ZIP_SYSTEM,
                _ZIP_VERSION,
                0,
                *fields,
                len(encoded),
                0,  # extra field length
                0,  # comment length
                0,  # disk number
                0,  # internal attributes
                _ZIP_FILE_MODE,
                offset,
            )
            + encoded
        )
        offset += len(header) + len(encoded) + len(stored)
    listing = b"".join(directory)
    count = len(entries)
    end = struct.pack(_END_RECORD, b"PK\x05\x06", 0, 0, count, count, len(listing), offset, 0)
    return b"".join([*parts, listing, end])


# what zipfile writes: version 2.0 to extract and by (zipfile.DEFAULT_VERSION), the system
# it runs on, and the record layouts (zipfile's structFileHeader, structCentralDir, ...)
_ZIP_VERSION = zipfile.ZipInfo("").create_version
_ZIP_SYSTEM = zipfile.ZipInfo("").create_system
_ZIP_FILE_MODE = 0o644 << 16
_LOCAL_HEADER = "<4s2B4HL2L2H"
_CENTRAL_HEADER = "<4s4B4HL2L5H2L"
_END_RECORD = "<4s4H2LH"


def zip_date_time(exported_at: dt.datetime) -> ZipDateTime:
    """The members' time: the export time in UTC (a naive one is taken as UTC), 1980 at
    the earliest (the first time a zip can hold)."""
    stamp = exported_at if exported_at.tzinfo is None else exported_at.astimezone(dt.UTC)
    date_time = (stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second)
    return max(date_time, (1980, 1, 1, 0, 0, 0))


def _zip_name(name: str) -> tuple[bytes, int]:
    """The name's bytes and flags, as zipfile encodes them (bit 11: the name is UTF-8)."""
    try:
        return name.encode("ascii"), 0
    except UnicodeEncodeError:
        return name.encode("utf-8"), 0x800


def _deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(ZIP_DEFLATE_LEVEL, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def write_zip_with_zipfile(
    entries: list[tuple[str, bytes]], date_time: ZipDateTime, *, deflate: bool
) -> bytes:
    """`write_zip` through `zipfile` (ZIP64 when needed)."""
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.external_attr = _ZIP_FILE_MODE
            info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
            archive.writestr(info, data, compresslevel=ZIP_DEFLATE_LEVEL if deflate else None)
    return sink.getvalue()


# ---------------------------------------------------------------- reading


def open_zip(data: bytes, what: str) -> zipfile.ZipFile:
    """The archive, refused (ValueError naming `what`) if it is not a zip or declares a
    member too large to decompress."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{what}: not a zip archive ({exc})") from exc
    for info in archive.infolist():
        if info.file_size > MAX_ZIP_ENTRY_BYTES:
            raise ValueError(f"{what}: {info.filename} is too large ({info.file_size} bytes)")
    return archive


def zip_member(archive: zipfile.ZipFile, name: str, what: str) -> bytes:
    """One member's bytes; a ValueError naming `what` and the member if it is missing or
    damaged."""
    try:
        return archive.read(name)
    except KeyError:
        raise ValueError(f"{what}: {name} is missing") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise ValueError(f"{what}: {name} cannot be read: {exc}") from exc
