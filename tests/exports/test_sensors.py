"""The export request sensors and the expiry schedule, evaluated against a real Dagster
instance and a real PostgreSQL: run requests, run keys and cursor of the batching sensor,
the runs they launch completing their rows, stranded claims re-queued, failed runs failing
their rows (ready for a retry), runs launched by hand tracked too, the daily cleanup."""

import datetime as dt
import json
import tempfile

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.exports.defs import (
    BATCH_TAG,
    ExportConfig,
    expire_exports_schedule,
    export_request_sensor,
    export_run_failure_sensor,
)
from assets.exports.expiry import storage_key_of
from assets.exports.queue import get_export, request_export, retry_exports
from pipelines.definitions import defs
from resources import schema
from resources.storage import ObjectStorage
from synthetic.seed import seed_database

jobs_table = schema.data_export_job


@pytest.fixture
def pg_url(pg_url):
    """The test's database, seeded with four users."""
    seed_database(pg_url, 4, seed=8, heavy_every=0)
    return pg_url


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def tick(instance, database, cursor=None):
    # storage is only touched to delete a dead claim's files: none in these tests
    unused_storage = ObjectStorage(url=tempfile.mkdtemp(prefix="goalport-sensor-"))
    resources = {"database": database, "storage": unused_storage}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return export_request_sensor(context)


def execute(run_request_or_config, instance, database, storage, **kwargs):
    if isinstance(run_request_or_config, dg.RunRequest):
        run_config, tags = run_request_or_config.run_config, run_request_or_config.tags
    else:
        run_config, tags = run_request_or_config, {}
    return defs.resolve_job_def("export_job").execute_in_process(
        run_config=run_config,
        instance=instance,
        tags=tags,
        resources={"database": database, "storage": storage},
        **kwargs,
    )


def batch_config(run_request: dg.RunRequest) -> dict:
    """The typed ExportConfig of a run request, as the run will receive it."""
    return run_request.run_config["ops"]["extracted_batch"]["config"]


def rows(database):
    with database.engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.select(jobs_table)).mappings()}


def test_sensor_claims_batches_with_the_batch_id_as_run_key_and_a_watermark_cursor(
    instance, database
):
    assert isinstance(tick(instance, database), dg.SkipReason)
    u1, u2, u3, _ = database.all_user_ids()
    json_jobs = [request_export(database.engine, u, "json") for u in (u1, u2, u3)]
    bible = request_export(database.engine, u1, "csv", modules=["bible"], since="2024-01-01")

    result = tick(instance, database)
    assert isinstance(result, dg.SensorResult)
    by_format = {r.tags["goalport/format"]: r for r in result.run_requests}
    assert sorted(by_format) == ["csv", "json"]
    claimed = rows(database)
    for run_request in result.run_requests:
        config = batch_config(run_request)
        assert ExportConfig(**config)  # the run's typed config, valid as launched
        assert run_request.run_key == config["batch_id"] == run_request.tags[BATCH_TAG]
        assert run_request.run_key.startswith("sb_")
        assert {claimed[j]["batchId"] for j in config["job_ids"]} == {run_request.run_key}
        assert {claimed[j]["status"] for j in config["job_ids"]} == {"processing"}
        # the run finds its users through the request rows; its Dagster record names none
        assert config["user_ids"] == []
        launched = json.dumps([run_request.run_config, run_request.tags, run_request.run_key])
        assert not any(claimed[j]["userId"] in launched for j in config["job_ids"])
    json_config = batch_config(by_format["json"])
    assert sorted(json_config["job_ids"]) == sorted(json_jobs) and json_config["formats"] == [
        "json"
    ]
    csv_config = batch_config(by_format["csv"])
    assert csv_config["job_ids"] == [bible]
    assert (csv_config["modules"], csv_config["since"], csv_config.get("until")) == (
        ["bible"],
        "2024-01-01",
        None,
    )

    newest = max((claimed[j]["createdAt"], j) for j in claimed)
    cursor = json.loads(result.cursor)
    assert (dt.datetime.fromisoformat(cursor["createdAt"]), cursor["id"]) == newest

    again = tick(instance, database, cursor=result.cursor)
    assert isinstance(again, dg.SkipReason)  # nothing pending: nothing claimed twice
    later = request_export(database.engine, u2, "json")
    third = tick(instance, database, cursor=result.cursor)
    (run_request,) = third.run_requests
    assert batch_config(run_request)["job_ids"] == [later]
    assert run_request.run_key not in {r.run_key for r in result.run_requests}
    assert json.loads(third.cursor)["id"] == later


@pytest.mark.slow
def test_claims_that_never_became_runs_are_requeued(instance, database, storage):
    user = database.all_user_ids()[0]
    stranded = request_export(database.engine, user, "json")
    launched = request_export(database.engine, user, "csv")
    first = tick(instance, database)
    by_format = {r.tags["goalport/format"]: r for r in first.run_requests}
    # The csv batch becomes a run; the json one is lost (the sensor died before launching).
    assert execute(by_format["csv"], instance, database, storage).success
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    with database.engine.begin() as conn:
        conn.execute(jobs_table.update().values(startedAt=old))

    second = tick(instance, database, cursor=first.cursor)
    (rerun,) = second.run_requests
    assert batch_config(rerun)["job_ids"] == [stranded]
    assert rerun.run_key != by_format["json"].run_key
    state = rows(database)
    assert state[stranded]["status"] == "processing" and state[stranded]["attempts"] == 2
    assert state[launched]["status"] == "completed" and state[launched]["attempts"] == 1


@pytest.mark.slow
def test_a_failed_run_fails_its_rows_with_the_reason_and_a_retry_runs_again(
    instance, database, storage
):
    user = database.all_user_ids()[0]
    job_id = request_export(database.engine, user, "json")
    (run_request,) = tick(instance, database).run_requests
    config = batch_config(run_request)
    broken = dg.RunConfig(ops={"extracted_batch": ExportConfig(**{**config, "formats": ["pdf"]})})
    failed_run = execute(broken, instance, database, storage, raise_on_error=False)
    assert not failed_run.success
    assert get_export(database.engine, job_id).status == "processing"  # died before tracking

    with dg.build_run_status_sensor_context(
        sensor_name=export_run_failure_sensor.name,
        dagster_instance=instance,
        dagster_run=failed_run.dagster_run,
        dagster_event=failed_run.get_run_failure_event(),
        resources={"database": database},
    ) as context:
        export_run_failure_sensor(context.for_run_failure())
    failed = get_export(database.engine, job_id)
    assert failed.status == "failed" and failed.run_id == failed_run.run_id
    assert f"export run {failed_run.run_id} failed" in failed.error_message
    assert "unknown export format pdf" in failed.error_message

    retry_exports(database.engine, [job_id])
    (retried,) = tick(instance, database).run_requests
    assert execute(retried, instance, database, storage).success
    done = get_export(database.engine, job_id)
    assert done.status == "completed" and done.attempts == 2


@pytest.mark.slow
def test_a_run_launched_by_hand_records_and_audits_its_own_rows(instance, database, storage):
    user = database.all_user_ids()[0]
    config = ExportConfig(user_ids=[user, "ghost"], formats=["json", "report"])
    result = execute(dg.RunConfig(ops={"extracted_batch": config}), instance, database, storage)
    assert result.success
    recorded = sorted(
        (r["userId"], r["format"], r["status"], r["errorMessage"] or "")
        for r in rows(database).values()
    )
    assert recorded == [
        (user, "json", "completed", ""),
        (user, "report", "completed", ""),
        ("ghost", "json", "failed", "no user with id 'ghost'"),
        ("ghost", "report", "failed", "no user with id 'ghost'"),
    ]
    assert {r["batchId"] for r in rows(database).values()} == {f"rb_{result.run_id}"}
    # the unknown id is the operator's input (run config), never repeated in the run's log
    logged = [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]
    assert logged and not any("ghost" in message for message in logged), logged
    with database.engine.connect() as conn:
        audited = conn.execute(
            sa.select(sa.func.count()).where(schema.data_audit_log.c.operation == "export")
        ).scalar()
    assert audited == 2


@pytest.mark.slow
def test_a_sensor_run_completes_its_rows_and_the_daily_cleanup_expires_them(
    instance, database, storage
):
    dg.Definitions.validate_loadable(defs)
    assert {"export_request_sensor", "export_run_failure_sensor"} <= {s.name for s in defs.sensors}
    assert expire_exports_schedule.cron_schedule == "30 3 * * *"
    with dg.build_schedule_context(instance=instance) as context:
        (scheduled,) = list(expire_exports_schedule.evaluate_tick(context).run_requests)
    assert scheduled is not None

    job_id = request_export(database.engine, database.all_user_ids()[0], "json")
    (run_request,) = tick(instance, database).run_requests
    result = execute(run_request, instance, database, storage)
    assert result.success
    job = get_export(database.engine, job_id)
    assert job.status == "completed" and job.run_id == result.run_id
    assert job.records_processed == job.records_total > 0
    key = storage_key_of(storage, job.file_url)
    assert storage.exists(key)
    materialization = result.asset_materializations_for_node("export_files")[0]
    assert materialization.metadata["requests_completed"].value == 1
    (run,) = instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: run_request.run_key}))
    assert run.run_id == result.run_id

    with database.engine.begin() as conn:
        conn.execute(
            jobs_table.update().values(expiresAt=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
        )
    cleanup = defs.resolve_job_def("expire_exports_job").execute_in_process(
        instance=instance, resources={"database": database, "storage": storage}
    )
    assert cleanup.success and cleanup.output_for_node("expire_old_exports") == 1
    assert not storage.exists(key)
    assert get_export(database.engine, job_id).status == "expired"
