"""An import apply run that dies (`kill -9` of the process running it, in the middle of
its transaction) leaves the user's data unchanged; once its run is failed (run monitoring
does that in production; here the test reports it, as the monitor would), the import's
run-failure sensor fails the job with the reason, and confirming it again launches a new
apply run that applies it. A run that fails on its own is recorded the same way."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from import_support import corrupt_user_rows, dump, export_user, populate

from assets.imports.defs import confirmed_imports_sensor, import_run_failure_sensor
from assets.imports.jobs import apply_is_due, create_import_job, get_import_job, update_job
from assets.imports.preview import preview_import
from pipelines.definitions import defs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def confirmed(database, storage):
    """A seeded user whose data was damaged after an export, the export previewed as a
    replace import and confirmed in the app."""
    user_id = sorted(populate(database.engine, 2, 43))[0]
    before = dump(database.engine)
    exported = export_user(database, user_id, "json")
    corrupt_user_rows(database.engine, user_id, touch_updated_at=False)
    job_id = create_import_job(
        database.engine,
        user_id=user_id,
        file_name="export.json",
        mode="replace",
        conflict_policy="take-incoming",
    )
    preview_import(database, storage, job_id, exported)
    update_job(database.engine, job_id, status="confirmed")
    return job_id, before, dump(database.engine)


def apply_requests(instance, database) -> list[dg.RunRequest]:
    with dg.build_sensor_context(instance=instance, resources={"database": database}) as context:
        return list(confirmed_imports_sensor(context) or [])


def run_failure_sensor(instance, database, run, event) -> None:
    with dg.build_run_status_sensor_context(
        sensor_name=import_run_failure_sensor.name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=event,
        resources={"database": database},
    ) as context:
        import_run_failure_sensor(context.for_run_failure())


@pytest.mark.slow
def test_kill_9_during_an_apply_run_then_confirming_again_applies_it(
    database, storage, confirmed, pg_url, tmp_path
):
    job_id, before, damaged = confirmed
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        (request,) = apply_requests(instance, database)
        assert request.run_key == f"apply:{job_id}:0"
        script = f"""
import dagster as dg
from pipelines.definitions import defs
from resources.database import AppDatabase
from resources.storage import ObjectStorage
instance = dg.DagsterInstance.from_config({str(dagster_home)!r})
defs.resolve_job_def("import_apply_job").execute_in_process(
    run_config={request.run_config!r}, tags={dict(request.tags)!r}, instance=instance,
    resources={{"database": AppDatabase(url={pg_url!r}),
               "storage": ObjectStorage(url={storage.url!r})}})
"""
        database_name = sa.make_url(pg_url).database
        blocker = database.engine.connect()
        blocker_tx = blocker.begin()
        # writes to the user's goals wait for this lock: the apply stops mid-transaction
        blocker.execute(sa.text('LOCK TABLE "Goal" IN EXCLUSIVE MODE'))
        worker = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert worker.poll() is None, "the apply run ended before it wrote"
                assert time.monotonic() < deadline, "the apply run never reached its writes"
                with database.engine.connect() as conn:
                    waiting = conn.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = :d "
                            "AND wait_event_type = 'Lock' AND backend_xid IS NOT NULL"
                        ),
                        {"d": database_name},
                    ).scalar()
                if waiting:
                    break
                time.sleep(0.2)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
            blocker_tx.rollback()
            blocker.close()
        assert worker.returncode == -signal.SIGKILL
        assert dump(database.engine) == damaged
        assert get_import_job(database.engine, job_id)["status"] == "confirmed"
        assert apply_requests(instance, database) == []  # its run is still "started"

        (run,) = instance.get_runs(filters=dg.RunsFilter(job_name="import_apply_job"))
        assert run.status == dg.DagsterRunStatus.STARTED
        instance.report_run_failed(run)  # what run monitoring does to a run that died
        failure = (
            instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            .records[0]
            .event_log_entry.dagster_event
        )
        run_failure_sensor(instance, database, instance.get_run_by_id(run.run_id), failure)
        job = get_import_job(database.engine, job_id)
        assert job["status"] == "failed"
        assert f"(run {run.run_id})" in job["errorMessage"]
        assert "Nothing was written" in job["errorMessage"]
        assert apply_requests(instance, database) == []

        update_job(database.engine, job_id, status="confirmed")  # the user confirms again
        (again,) = apply_requests(instance, database)
        assert again.run_key == f"apply:{job_id}:1"
        result = defs.resolve_job_def("import_apply_job").execute_in_process(
            run_config=again.run_config,
            tags=again.tags,
            instance=instance,
            resources={"database": database, "storage": storage},
        )
        assert result.success
    assert dump(database.engine) == before
    assert get_import_job(database.engine, job_id)["status"] == "applied"


@pytest.mark.slow
def test_a_failed_apply_run_is_recorded_and_can_be_confirmed_again(
    database, storage, confirmed, tmp_path
):
    job_id, before, damaged = confirmed
    apply_job = defs.resolve_job_def("import_apply_job")
    with dg.instance_for_test() as instance:
        (request,) = apply_requests(instance, database)
        empty = type(storage)(url=str(tmp_path / "elsewhere"))  # the stored plan is missing
        failed = apply_job.execute_in_process(
            run_config=request.run_config,
            tags=request.tags,
            instance=instance,
            resources={"database": database, "storage": empty},
            raise_on_error=False,
        )
        assert not failed.success
        assert dump(database.engine) == damaged
        run_failure_sensor(instance, database, failed.dagster_run, failed.get_run_failure_event())
        job = get_import_job(database.engine, job_id)
        assert job["status"] == "failed" and "no stored plan" in job["errorMessage"]
        assert f"(run {failed.run_id})" in job["errorMessage"]

        update_job(database.engine, job_id, status="confirmed")
        (again,) = apply_requests(instance, database)
        assert again.run_key == f"apply:{job_id}:1"
        assert apply_job.execute_in_process(
            run_config=again.run_config,
            tags=again.tags,
            instance=instance,
            resources={"database": database, "storage": storage},
        ).success
    assert dump(database.engine) == before


def test_an_apply_is_due_once_per_confirmation():
    assert apply_is_due(None, None)
    assert not apply_is_due(None, "run-1")  # its run failed, not yet on the row
    assert apply_is_due("the run failed (run run-1): boom", "run-1")
    assert not apply_is_due("the run failed (run run-1): boom", "run-2")
