"""The format registry is the one place a format is defined, and its lookups say what is wrong.

Exports, downloads, completeness checks, import detection and backups all ask the registry,
so these tests hold what they rely on: the names a person can request (the CLI's choices),
file names that never collide, media types, errors that name the known formats, and
format modules that stay pure (no Dagster).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from assets.formats.registry import (
    DATA_FORMATS,
    FORMATS,
    READABLE_FORMATS,
    REQUESTABLE_FORMATS,
    UnknownFormatError,
    export_format,
    media_type_of,
    reader_of,
)
from resources.storage_layout import export_key

EXPORTED_AT = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
ROOT = Path(__file__).parents[2]
FORMATS_PACKAGE = ROOT / "assets" / "formats"


def test_each_entry_is_filed_under_its_own_name():
    assert all(name == f.name for name, f in FORMATS.items())


def test_the_requestable_formats_are_the_cli_choices_in_their_order():
    assert REQUESTABLE_FORMATS == ("json", "csv", "csv-machine", "xlsx", "parquet", "xml", "report")


def test_every_format_but_the_report_is_read_back():
    assert READABLE_FORMATS == ("json", "csv", "csv-machine", "xlsx", "parquet", "xml")
    assert FORMATS["report"].read is None
    assert DATA_FORMATS == ("json", "csv", "csv-machine", "xlsx", "parquet", "xml")


def test_files_of_different_requestable_formats_never_share_a_name():
    keys = [export_key("u1", FORMATS[fmt].extension, EXPORTED_AT) for fmt in REQUESTABLE_FORMATS]
    assert len(set(keys)) == len(keys)
    assert keys[1] == "exports/u1/20261101T120000000000Z.csv.zip"


@pytest.mark.parametrize("fmt", REQUESTABLE_FORMATS)
def test_a_stored_export_is_served_with_its_formats_media_type(fmt):
    assert (
        media_type_of(export_key("u1", FORMATS[fmt].extension, EXPORTED_AT))
        == FORMATS[fmt].media_type
    )


def test_other_files_are_served_as_bytes():
    assert media_type_of("exports/u1/notes.txt") == "application/octet-stream"


def test_an_unknown_format_is_named_with_the_known_ones():
    with pytest.raises(UnknownFormatError) as caught:
        export_format("pdf")
    assert str(caught.value) == (
        "unknown file format 'pdf': goalport knows json, csv, csv-machine, xlsx, parquet, xml, report"
    )
    assert isinstance(caught.value, KeyError)


def test_asking_for_the_reader_of_a_format_that_is_not_read_back_says_which_are():
    with pytest.raises(UnknownFormatError, match="report files are not read back: goalport "):
        reader_of("report")
    assert reader_of("csv-machine") is reader_of("csv")


def test_format_modules_import_neither_dagster_nor_a_database_driver():
    modules = sorted(
        f"assets.formats.{path.stem}"
        for path in FORMATS_PACKAGE.glob("*.py")
        if path.stem != "__init__"
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in ('dagster', 'psycopg', 'psycopg2') if m in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"
