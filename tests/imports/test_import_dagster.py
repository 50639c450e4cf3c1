"""Imports in Dagster: the inbox sensor on a real S3 endpoint (cursor, run key = object key
+ ETag, one DataImportJob per file version), the staging job ending in a stored preview,
its blocking check stopping bad files, and confirmed jobs applied by the apply job."""

import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from import_support import dump, erase_user_rows, export_user, populate

from assets.imports.defs import (
    confirmed_imports_sensor,
    import_inbox_sensor,
    inbox_job_id,
)
from assets.imports.defs import (
    defs as import_defs,
)
from assets.imports.jobs import get_import_job
from resources import schema
from resources.database import AppDatabase
from resources.storage import ObjectStorage


@pytest.fixture
def setup(pg_url, s3_url):
    database = AppDatabase(url=pg_url)
    storage = ObjectStorage(url=s3_url)
    user_id = sorted(populate(database.engine, 2, 71))[0]
    before = dump(database.engine)
    exported = export_user(database, user_id, "json")
    erase_user_rows(database.engine, user_id, keep_account=True)
    yield database, storage, user_id, exported, before
    database.engine.dispose()


def evaluate(sensor, database, storage=None, cursor=None):
    resources = (
        {"database": database} if storage is None else {"database": database, "storage": storage}
    )
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context,
    ):
        result = sensor(context)
        if isinstance(result, dg.SensorResult):
            context.update_cursor(result.cursor)
            result = result.run_requests
        return list(result or []), context.cursor


def run_job(name: str, request: dg.RunRequest, database, storage):
    definitions = dg.Definitions.merge(
        import_defs, dg.Definitions(resources={"database": database, "storage": storage})
    )
    with dg.instance_for_test() as instance:
        result = definitions.resolve_job_def(name).execute_in_process(
            run_config=request.run_config, instance=instance, raise_on_error=False
        )
        # the staged data went from step to step in memory, not pickled to the instance
        assert not [p.name for p in Path(instance.root_directory).rglob("staged_import*")]
    return result


@pytest.mark.slow
def test_inbox_file_becomes_a_preview_and_a_confirmed_job_is_applied(setup):
    database, storage, user_id, exported, before = setup
    erased = dump(database.engine)
    key = f"imports/inbox/{user_id}/backup.json"
    storage.write_bytes(key, exported)
    storage.write_bytes("imports/inbox/stray-file.json", b"{}")

    requests, cursor = evaluate(import_inbox_sensor, database, storage)
    assert len(requests) == 1
    etag = storage.info(key)["ETag"].strip('"')
    job_id = inbox_job_id(key, etag)
    # the run key, tags and cursor name the import job and a time, never the user or key
    assert requests[0].run_key == job_id and requests[0].tags == {"goalport/import_job": job_id}
    assert user_id not in repr(requests[0]) and user_id not in cursor
    assert float(cursor) == storage.info(key)["LastModified"].timestamp()
    job = get_import_job(database.engine, job_id)
    assert (job["status"], job["userId"], job["fileName"]) == ("pending", user_id, "backup.json")

    again, cursor_again = evaluate(import_inbox_sensor, database, storage, cursor)
    assert again == [] and cursor_again == cursor

    staged = run_job("import_staging_job", requests[0], database, storage)
    assert staged.success
    job = get_import_job(database.engine, job_id)
    assert job["status"] == "previewed"
    preview = json.loads(job["previewData"])
    assert preview["totals"]["create"] > 0 and preview["totals"]["update"] == 0
    assert dump(database.engine) == erased  # a preview writes no app rows
    checks = staged.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [True]

    assert evaluate(confirmed_imports_sensor, database)[0] == []
    with database.engine.begin() as conn:
        conn.execute(
            schema.data_import_job.update()
            .where(schema.data_import_job.c.id == job_id)
            .values(status="confirmed")
        )
    applies, _ = evaluate(confirmed_imports_sensor, database)
    assert [r.run_key for r in applies] == [f"apply:{job_id}:0"]  # its first apply run
    applied = run_job("import_apply_job", applies[0], database, storage)
    assert applied.success
    assert get_import_job(database.engine, job_id)["status"] == "applied"
    assert dump(database.engine) == before

    # a changed file is a new version: a new job and a new run
    storage.write_bytes(key, exported + b"\n")
    changed, _ = evaluate(import_inbox_sensor, database, storage, cursor)
    assert len(changed) == 1 and changed[0].run_key != requests[0].run_key


@pytest.mark.slow
def test_blocking_check_stops_a_file_with_too_many_bad_rows(setup):
    database, storage, user_id, exported, _ = setup
    erased = dump(database.engine)
    document = json.loads(exported)
    for goal in document["goals"]:
        goal["priority"] = 42
    storage.write_bytes(f"imports/inbox/{user_id}/broken.json", json.dumps(document).encode())
    requests, _ = evaluate(import_inbox_sensor, database, storage)
    result = run_job("import_staging_job", requests[0], database, storage)
    assert not result.success
    checks = result.get_asset_check_evaluations()
    assert [c.passed for c in checks] == [False]
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "import_preview" not in materialized
    job_id = requests[0].tags["goalport/import_job"]
    job = get_import_job(database.engine, job_id)
    assert job["status"] == "failed"
    assert "priority" in job["errorMessage"] and "invalid" in job["errorMessage"]
    assert dump(database.engine) == erased
    with database.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.import_change)).scalar() == 0
        )


def test_definitions_include_the_import_area():
    from pipelines.definitions import defs

    assert defs.resolve_job_def("import_staging_job") is not None
    assert defs.resolve_job_def("import_apply_job") is not None
    assert {s.name for s in defs.sensors} >= {"import_inbox_sensor", "confirmed_imports_sensor"}


@pytest.mark.parametrize(
    "file_url",
    ["/etc/passwd", "file:///etc/passwd", "imports/../../etc/passwd", "http://127.0.0.1:9/x"],
)
@pytest.mark.slow
def test_a_job_row_naming_a_file_outside_the_storage_is_refused(pg_url, tmp_path, file_url):
    """A DataImportJob row is written by the app or the API: its fileUrl must not make a run
    read a local file or a URL; the run fails and the job says which location was refused."""
    from assets.imports.defs import ImportJobConfig
    from assets.imports.jobs import create_import_job

    database = AppDatabase(url=pg_url)
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    user_id = populate(database.engine, 1, 72)[0]
    job_id = create_import_job(
        database.engine, user_id=user_id, file_name="passwd", file_url=file_url
    )
    request = dg.RunRequest(
        run_config=dg.RunConfig(ops={"staged_import": ImportJobConfig(job_id=job_id)})
    )
    result = run_job("import_staging_job", request, database, storage)
    assert not result.success
    job = get_import_job(database.engine, job_id)
    assert job["status"] == "failed"
    assert f"refused to read {file_url}" in job["errorMessage"]
    assert "only objects inside goalport's storage" in job["errorMessage"]
    database.engine.dispose()


def test_a_file_dropped_for_an_erased_user_is_deleted_and_logged_as_a_count(pg_url, s3_url, capfd):
    """The inbox sensor meets an erased user's file (dropped after the erasure): no import
    job, no run, the file deleted, the watermark advanced past it, and the log says only how
    many files went (no user id); another user's file in the same tick becomes a job."""
    import datetime as dt

    from assets.gdpr.erasure import execute_erasure, request_erasure

    database = AppDatabase(url=pg_url)
    storage = ObjectStorage(url=s3_url)
    erased_user, other = sorted(populate(database.engine, 2, 73))
    exported = export_user(database, other, "json")
    request = request_erasure(database.engine, erased_user, grace=dt.timedelta(0))
    assert execute_erasure(database.engine, storage, request.id).verified
    late = f"imports/inbox/{erased_user}/late.json"
    storage.write_bytes(late, b'{"goals": [{"title": "mine"}]}')
    late_modified = storage.info(late)["LastModified"].timestamp()
    storage.write_bytes(f"imports/inbox/{other}/backup.json", exported)

    capfd.readouterr()
    requests, cursor = evaluate(import_inbox_sensor, database, storage)
    sensor_log = [line for line in capfd.readouterr().err.splitlines() if " - dagster - " in line]

    assert len(requests) == 1
    assert get_import_job(database.engine, requests[0].run_key)["userId"] == other
    assert storage.list_including_unfinished(f"imports/inbox/{erased_user}") == []
    with database.engine.connect() as conn:
        job = schema.data_import_job
        assert (
            conn.execute(sa.select(sa.func.count()).where(job.c.userId == erased_user)).scalar_one()
            == 0
        )
    assert float(cursor) >= late_modified
    assert any("1 inbox files of erased users deleted" in line for line in sensor_log)
    assert erased_user not in "".join(sensor_log) and erased_user not in cursor
    assert evaluate(import_inbox_sensor, database, storage, cursor)[0] == []
    database.engine.dispose()
