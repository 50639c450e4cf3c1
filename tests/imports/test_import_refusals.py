"""Hostile and broken files end their import job `failed` with one clear line on the job
row (never a traceback, never left `pending`), through the Dagster staging job fed by the
inbox on a real S3 endpoint and through the CLI's preview; nothing is written. A non-UTF-8
export imports, with the guessed encoding in its mapping report."""

from __future__ import annotations

import functools
import io
import json
import zipfile

import pytest
from import_support import dump, import_file, populate
from test_import_dagster import evaluate, run_job

from assets.imports.defs import import_inbox_sensor
from assets.imports.jobs import ImportJobError, create_import_job, get_import_job
from assets.imports.parsers.base import ImportFormatError
from assets.imports.preview import job_failed_on_error, preview_import
from resources.database import AppDatabase
from resources.storage import ObjectStorage


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@functools.cache
def hostile(name: str) -> tuple[bytes, str]:
    """The file, and what its job's error must say."""
    return {
        "deep.json": lambda: (
            b"[" * 200_000 + b"]" * 200_000,
            "JSON nested deeper than 1024 levels",
        ),
        # a thousand 1 MiB members of zeros: 1 MB zipped, 1 GiB inflated
        "bomb.zip": lambda: (
            zip_of({f"Takeout/Tasks/{i}.json": bytes(1024 * 1024) for i in range(1000)}),
            "compressed suspiciously well (a zip bomb?)",
        ),
        "noise.csv": lambda: (bytes(range(256)) * 64, "not an export of a supported app"),
    }[name]()


HOSTILE = ("deep.json", "bomb.zip", "noise.csv")


def assert_failed_with_one_line(job: dict, expected: str) -> None:
    assert job["status"] == "failed"
    message = job["errorMessage"]
    assert expected in message and "\n" not in message and "Traceback" not in message


@pytest.mark.slow
@pytest.mark.parametrize("name", ["deep.json", "bomb.zip"])
def test_hostile_inbox_file_fails_its_job_with_one_line(pg_url, s3_url, name):
    database, storage = AppDatabase(url=pg_url), ObjectStorage(url=s3_url)
    user_id = populate(database.engine, 1, 93)[0]
    before = dump(database.engine)
    data, expected = hostile(name)
    storage.write_bytes(f"imports/inbox/{user_id}/{name}", data)
    requests, _ = evaluate(import_inbox_sensor, database, storage)
    result = run_job("import_staging_job", requests[0], database, storage)
    assert not result.success
    job = get_import_job(database.engine, requests[0].tags["goalport/import_job"])
    assert_failed_with_one_line(job, expected)
    assert dump(database.engine) == before
    database.engine.dispose()


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_file_fails_its_preview_with_one_line(database, storage, name):
    user_id = populate(database.engine, 1, 94)[0]
    before = dump(database.engine)
    data, expected = hostile(name)
    job_id = create_import_job(database.engine, user_id=user_id, file_name=name)
    with pytest.raises(ImportFormatError):
        preview_import(database, storage, job_id, data)
    assert_failed_with_one_line(get_import_job(database.engine, job_id), expected)
    assert dump(database.engine) == before


def test_any_error_while_staging_ends_the_job_failed(database):
    user_id = populate(database.engine, 1, 95)[0]
    job_id = create_import_job(database.engine, user_id=user_id, file_name="x.json")
    with pytest.raises(ImportJobError) as caught, job_failed_on_error(database.engine, job_id):
        json.loads("[" * 1_000_000)  # the standard library's parser recurses until it fails
    job = get_import_job(database.engine, job_id)
    assert_failed_with_one_line(job, "the file is nested too deeply to read")
    assert str(caught.value) == job["errorMessage"]


def test_a_cp1251_export_imports_with_its_encoding_in_the_report(database, storage):
    user_id = populate(database.engine, 1, 96)[0]
    text = (
        "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE\r\n"
        "task,Купить молоко,Два литра,1,1,Саша (1),,,ru,Europe/Moscow\r\n"
        "task,Позвонить маме,,4,2,Саша (1),,,ru,Europe/Moscow\r\n"
    )
    job_id, plan = import_file(
        database, storage, user_id, text.encode("cp1251"), file_name="Дом [77].csv"
    )
    created = sorted(e["row"]["title"] for e in plan.changes["Goal"] if e["action"] == "create")
    assert "Купить молоко" in created and "Позвонить маме" in created
    preview = json.loads(get_import_job(database.engine, job_id)["previewData"])
    assert preview["file"]["mapping"]["decoded"] == [
        "not UTF-8 text: read as cp1251 (the encoding guessed from its bytes)"
    ]
