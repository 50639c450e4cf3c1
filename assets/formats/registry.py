"""The file formats goalport writes and reads: one entry per format, and every caller's lookup.

Each `ExportFormat` says what a format is called (the name `goalport export --format` and
`DataExportJob.format` use), the file extension and media type of its files, its renderer
and its reader. Exports, downloads, completeness checks, import detection, backups and the
bench all look formats up here, so adding one is one entry (and its module).

Every renderer takes `tables` (app table name -> `pa.Table` with exactly APP_ARROW_SCHEMAS;
a missing table counts as empty) and the keyword options `user_id`, `exported_at` and
`filters`, and is pure: no I/O, no Dagster, the same input gives the same bytes. Every
reader is its exact inverse: the bytes of one file in, the user's tables out, rows sorted
by id; malformed input raises ValueError naming the file or sheet, the row and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import pyarrow as pa

from assets.formats.common import Renderer
from assets.formats.csv import read_csv_zip, render_csv_excel_zip, render_csv_zip
from assets.formats.json import read_json_export, read_json_exports, render_json
from assets.formats.parquet import read_parquet_zip, render_parquet_zip
from assets.formats.report import render_report_html
from assets.formats.xlsx import read_xlsx_export, render_xlsx
from assets.formats.xml import read_xml_export, render_xml

Reader = Callable[[bytes], dict[str, pa.Table]]
ManyReader = Callable[[Sequence[bytes]], list[dict[str, pa.Table]]]


@dataclass(frozen=True)
class ExportFormat:
    """One file format: its name, how its files are named and served, how they are made and
    read back."""

    name: str
    extension: str  # without the leading dot: "csv.zip"
    media_type: str
    render: Renderer
    # None: the file is for people to read (the HTML report), and its data travels in the
    # other formats; nothing reads it back.
    read: Reader | None
    # Reads several files at once, the same result as `read` on each, faster (the
    # completeness check reads a worker's whole share of a batch); None: one by one.
    read_many: ManyReader | None = None
    # Whether an export can be asked for in this format (`goalport export --format`, export
    # requests).
    requestable: bool = True


class UnknownFormatError(KeyError):
    """A format name that is not in the registry; the message names the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


_ZIP = "application/zip"
_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

FORMATS: Mapping[str, ExportFormat] = MappingProxyType(
    {
        f.name: f
        for f in (
            ExportFormat(
                name="json",
                extension="json",
                media_type="application/json",
                render=render_json,
                read=read_json_export,
                read_many=read_json_exports,
            ),
            # The CSV people download and open in a spreadsheet: the Excel-safe flavour (no
            # value runs as a formula). Programs that want the plain RFC 4180 files ask for
            # "csv-machine" by name; its data package says what it is for.
            ExportFormat(
                name="csv",
                extension="csv.zip",
                media_type=_ZIP,
                render=render_csv_excel_zip,
                read=read_csv_zip,  # one reader for both flavours: the data package says which
            ),
            ExportFormat(
                name="csv-machine",
                extension="machine.csv.zip",
                media_type=_ZIP,
                render=render_csv_zip,
                read=read_csv_zip,
            ),
            ExportFormat(
                name="xlsx",
                extension="xlsx",
                media_type=_XLSX,
                render=render_xlsx,
                read=read_xlsx_export,
            ),
            ExportFormat(
                name="parquet",
                extension="parquet.zip",
                media_type=_ZIP,
                render=render_parquet_zip,
                read=read_parquet_zip,
            ),
            ExportFormat(
                name="xml",
                extension="xml",
                media_type="application/xml",
                render=render_xml,
                read=read_xml_export,
            ),
            ExportFormat(
                name="report",
                extension="report.html",
                media_type="text/html",
                render=render_report_html,
                read=None,
            ),
        )
    }
)

# The names an export can be requested in, in the order help texts and errors list them.
REQUESTABLE_FORMATS: tuple[str, ...] = tuple(n for n, f in FORMATS.items() if f.requestable)

# The formats whose files goalport reads back (import, restore, completeness).
READABLE_FORMATS: tuple[str, ...] = tuple(n for n, f in FORMATS.items() if f.read is not None)

# The requestable formats that carry the data and are read back, i.e. all but the report:
# what a backup can be made in and restored from.
DATA_FORMATS: tuple[str, ...] = tuple(n for n in REQUESTABLE_FORMATS if n in READABLE_FORMATS)


def export_format(name: str) -> ExportFormat:
    """The format called `name`; UnknownFormatError naming it and the known ones if none."""
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormatError(
            f"unknown file format {name!r}: goalport knows {', '.join(FORMATS)}"
        ) from None


def reader_of(name: str) -> Reader:
    """The reader of the format called `name`; UnknownFormatError if goalport does not read
    that format back (or knows no such format)."""
    read = export_format(name).read
    if read is None:
        raise UnknownFormatError(
            f"{name} files are not read back: goalport reads {', '.join(READABLE_FORMATS)}"
        )
    return read


def media_type_of(file_name: str) -> str:
    """The media type of a file goalport wrote, by its extension (else a byte stream)."""
    for f in FORMATS.values():
        if file_name.endswith("." + f.extension):
            return f.media_type
    return "application/octet-stream"
