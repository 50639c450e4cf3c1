"""Detecting the source app from content, and refusing what is no supported app's export."""

from __future__ import annotations

import json
import random

import pytest
from parser_checks import NOW, foreign_exports, zip_bytes

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import SOURCE_APPS, UNKNOWN, detect_source, parse_foreign_export


@pytest.mark.parametrize("app", SOURCE_APPS)
def test_every_app_is_detected_from_content_whatever_the_file_is_called(app):
    data = foreign_exports()[app]
    assert detect_source(data) == app
    assert detect_source(data, "upload.bin") == app
    assert detect_source(data, "Habits.csv" if app != "loop_habits" else "Tasks.json") == app
    parsed = parse_foreign_export(data, file_name="upload.bin", now=NOW)
    assert parsed.source_app == app and parsed.tables["Goal"].num_rows > 0


GOALPORT_JSON = json.dumps(
    {
        "format": "goalport.export",
        "version": 1,
        "exportedAt": "2024-03-01T08:30:00.250Z",
        "user": {"id": "u1", "email": "someone@example.invalid"},
        "tables": {
            "Goal": [{"id": "g1", "userId": "u1", "title": "Run", "priority": 3}],
            "Progress": [],
            "Module": [],
        },
    }
).encode()
GOALPORT_CSV_ZIP = zip_bytes(
    {
        "datapackage.json": json.dumps({"name": "goalport-export", "resources": []}),
        "Goal.csv": "id,userId,moduleId,parentGoalId,title,description,priority\r\ng1,u1,,,Run,,3\r\n",
        "Progress.csv": "id,userId,goalId,value,maxValue,notes,recordedAt\r\n",
    }
)
XLSX_LIKE = zip_bytes({"[Content_Types].xml": "<Types/>", "xl/workbook.xml": "<workbook/>"})


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(GOALPORT_JSON, id="goalport-json"),
        pytest.param(GOALPORT_CSV_ZIP, id="goalport-csv-zip"),
        pytest.param(XLSX_LIKE, id="xlsx"),
        pytest.param(random.Random(8).randbytes(4096), id="random-bytes"),
        pytest.param(b"age-encryption.org/v1\n-> X25519 abc\n", id="age"),
        pytest.param(b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n", id="age-armor"),
        pytest.param(b"just some words\nin a text file\n", id="text"),
        pytest.param(b"name,amount\r\nrent,900\r\n", id="other-csv"),
        pytest.param(b'{"tasks": "none", "lists": 3}', id="other-json"),
        pytest.param(b"[1, 2, 3]", id="json-array"),
        pytest.param(b"{not json", id="broken-json"),
        pytest.param(b"", id="empty"),
    ],
)
def test_goalport_exports_and_other_files_are_not_foreign_apps(data):
    assert detect_source(data, "export.bin") == UNKNOWN


def test_a_file_name_alone_does_not_make_a_notion_csv():
    name = "Tasks 0123456789abcdef0123456789abcdef_all.csv"
    assert detect_source(b"name,amount\nrent,900\n", name) == UNKNOWN
    assert detect_source(b"\xef\xbb\xbfName,Done\r\nRent,Yes\r\n", name) == "notion"


def test_parse_foreign_export_refuses_unknown_and_empty_files():
    with pytest.raises(ImportFormatError) as caught:
        parse_foreign_export(GOALPORT_JSON, file_name="me.json")
    assert str(caught.value).startswith("me.json: not an export of a supported app (todoist,")
    with pytest.raises(ImportFormatError, match="empty.csv: the file is empty"):
        parse_foreign_export(b"  \r\n", file_name="empty.csv")


def test_an_unsafe_archive_is_an_error_not_a_guess():
    evil = zip_bytes({"../../etc/cron.d/job": "* * * * * root true", "Habits.csv": "x"})
    with pytest.raises(
        ImportFormatError,
        match=r"evil.zip, member '../../etc/cron.d/job': "
        r"has an unsafe path",
    ):
        detect_source(evil, "evil.zip")
