"""Claims that outlive their worker: a claimant beats its rows' heartbeat while it works;
the next claimer requeues rows whose heartbeat stopped, deletes whatever file the dead
claim left, and fails a row whose workers died three times. The fault-injection test
`kill -9`s a real `goalport exports process` in the middle of a batch."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from assets.exports.claims import MAX_STALE_CLAIMS, claim_pending_exports, requeue_stale_claims
from assets.exports.progress import ClaimHeartbeat
from assets.exports.queue import get_export, request_export
from resources import schema
from resources.audit import utc_now
from resources.storage import ObjectStorage
from resources.storage_layout import export_key
from synthetic.seed import seed_database

REPO = Path(__file__).resolve().parents[2]
jobs = schema.data_export_job


@pytest.fixture
def users(pg_url, database):
    seed_database(pg_url, 4, seed=17, heavy_every=0)
    return sorted(database.all_user_ids())


def age_claims(database, seconds: float) -> None:
    """Make every claim look as if its last sign of life was `seconds` ago."""
    then = utc_now() - dt.timedelta(seconds=seconds)
    with database.engine.begin() as conn:
        conn.execute(
            jobs.update()
            .where(jobs.c.status == "processing")
            .values(heartbeatAt=then, startedAt=then)
        )


def test_a_beating_claim_is_kept_and_a_silent_one_is_requeued(database, users):
    job_id = request_export(database.engine, users[0], "json")
    (batch,) = claim_pending_exports(database.engine)
    age_claims(database, 600)
    with ClaimHeartbeat(database.engine, batch.batch_id, interval=0.05):
        time.sleep(0.2)
        kept = requeue_stale_claims(database.engine, older_than=dt.timedelta(seconds=60))
    assert kept.requeued == [] and get_export(database.engine, job_id).status == "processing"

    age_claims(database, 120)
    stale = requeue_stale_claims(database.engine, older_than=dt.timedelta(seconds=60))
    assert stale.requeued == [job_id]
    row = get_export(database.engine, job_id)
    assert row.status == "pending" and row.batch_id is None


def test_a_claim_whose_run_waits_in_the_queue_is_alive(database, users):
    request_export(database.engine, users[0], "json")
    (batch,) = claim_pending_exports(database.engine, claimant="sensor")
    age_claims(database, 600)
    waiting = requeue_stale_claims(
        database.engine,
        older_than=dt.timedelta(seconds=60),
        is_waiting=lambda batch_id: batch_id == batch.batch_id,
    )
    assert waiting.requeued == [] and waiting.failed == []


def test_a_backup_in_flight_is_not_taken_for_a_dead_export_claim(database, users):
    """Backups have their own watch (hours, not the claims' heartbeat): an export claimer
    must leave a long or queued backup's rows alone."""
    from assets.backups.due import queue_backup_now

    queued = queue_backup_now(database.engine, users[:2], requested_by="test")
    age_claims(database, 3600)
    outcome = requeue_stale_claims(database.engine, older_than=dt.timedelta(seconds=60))
    assert outcome.requeued == [] and outcome.failed == []
    assert {get_export(database.engine, j).status for j in queued.job_ids} == {"processing"}


def test_a_row_whose_workers_keep_dying_fails_with_the_reason(database, users):
    job_id = request_export(database.engine, users[0], "json")
    for claim in range(1, MAX_STALE_CLAIMS + 1):
        assert claim_pending_exports(database.engine), f"claim {claim}"
        age_claims(database, 600)
        outcome = requeue_stale_claims(database.engine, older_than=dt.timedelta(seconds=60))
        if claim < MAX_STALE_CLAIMS:
            assert outcome.requeued == [job_id]
    assert outcome.failed == [job_id]
    row = get_export(database.engine, job_id)
    assert row.status == "failed" and row.attempts == MAX_STALE_CLAIMS
    assert "stopped" in row.error_message and "not requeued again" in row.error_message
    assert claim_pending_exports(database.engine) == []


def test_a_dead_claims_files_are_deleted_and_nobody_elses(database, users, storage):
    job_id = request_export(database.engine, users[0], "json")
    other_job = request_export(database.engine, users[1], "json")
    claim_pending_exports(database.engine)
    now = utc_now()
    dead_file = storage.write_bytes(export_key(users[0], "json", now, job_id), b"{}")
    kept_file = storage.write_bytes(export_key(users[0], "json", now, "exp_someone_else"), b"{}")
    partial = Path(storage.path(f"exports/{users[0]}/.tmp-0123456789abcdef"))
    partial.write_bytes(b"half a fi")
    old = time.time() - 600
    os.utime(partial, (old, old))
    age_claims(database, 600)
    with database.engine.begin() as conn:  # the other claim is alive
        conn.execute(jobs.update().where(jobs.c.id == other_job).values(heartbeatAt=utc_now()))
    outcome = requeue_stale_claims(
        database.engine, older_than=dt.timedelta(seconds=60), storage=storage
    )
    assert outcome.requeued == [job_id]
    assert not storage.exists(dead_file.key) and not partial.exists()
    assert storage.exists(kept_file.key)


@pytest.mark.slow
def test_kill_9_of_an_export_worker_mid_batch_then_the_next_claim_exports_once(
    pg_url, database, users, tmp_path
):
    """A real `goalport exports process` pauses (the test hook) after its first user; it is
    killed with SIGKILL. The next processor requeues the dead claim once its heartbeat is
    older than GOALPORT_STALE_AFTER and exports every request exactly once: one file per
    request, one audit row each, no file that no row points at, no partial file."""
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    job_ids = [request_export(database.engine, user_id, "json") for user_id in users[:3]]
    env = {
        **os.environ,
        "GOALPORT_DATABASE_URL": pg_url,
        "GOALPORT_STORAGE_URL": storage.url,
        "GOALPORT_STALE_AFTER": "2",
        "GOALPORT_TEST_PAUSE_AFTER_USERS": "1",
        "GOALPORT_PROFILE": "",
    }
    goalport = [sys.executable, "-m", "pipelines.cli.main", "exports", "process"]
    worker = subprocess.Popen([*goalport, "--once", "--workers", "1"], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 120
        while not any(get_export(database.engine, j).status == "completed" for j in job_ids):
            assert worker.poll() is None, "the worker ended before the pause"
            assert time.monotonic() < deadline, "the worker never exported its first user"
            time.sleep(0.2)
        time.sleep(0.5)  # paused, still beating: a live claim is not taken from it
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == -signal.SIGKILL
    stuck = [j for j in job_ids if get_export(database.engine, j).status == "processing"]
    assert len(stuck) == 2

    # a file the dead claim stored but never recorded: the next claim must not leave it
    orphan = storage.write_bytes(export_key(users[1], "json", utc_now(), stuck[0]), b"{}")
    time.sleep(2.5)  # the heartbeat is older than GOALPORT_STALE_AFTER now
    env.pop("GOALPORT_TEST_PAUSE_AFTER_USERS")
    finished = subprocess.run(
        [*goalport, "--once", "--workers", "1"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr
    assert sorted(
        line.split("\t")[0] for line in finished.stderr.splitlines() if "\trequeued\t" in line
    ) == sorted(stuck)

    rows = [get_export(database.engine, j) for j in job_ids]
    assert [r.status for r in rows] == ["completed"] * 3
    files = storage.list("exports")
    assert sorted(files) == sorted(storage.key_of(r.file_url) for r in rows)
    assert orphan.key not in files
    leftovers = [p for p in (tmp_path / "storage").rglob(".tmp-*")]
    assert leftovers == []
    with database.engine.connect() as conn:
        audits = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.data_audit_log)
            .where(schema.data_audit_log.c.operation == "export")
        ).scalar()
    assert audits == 3


@pytest.mark.slow
def test_the_sensor_requeues_a_dead_runs_rows_fails_the_run_and_exports_them_once(
    database, users, storage, monkeypatch
):
    """A run launched for a batch dies (its process gone, still STARTED in Dagster): the
    next tick requeues its rows, claims them into a new batch, and marks the dead run
    failed; the failure sensor then leaves the requeued rows alone."""
    import dagster as dg

    from assets.exports.defs import export_request_sensor, export_run_failure_sensor
    from pipelines.definitions import defs

    monkeypatch.setenv("GOALPORT_STALE_AFTER", "60")
    resources = {"database": database, "storage": storage}
    job_id = request_export(database.engine, users[0], "json")
    export_job = defs.resolve_job_def("export_job")
    with dg.instance_for_test() as instance:

        def tick():
            with dg.build_sensor_context(instance=instance, resources=resources) as context:
                return export_request_sensor(context)

        (first,) = tick().run_requests
        dead = instance.create_run_for_job(
            export_job,
            run_config=first.run_config,
            tags={**export_job.tags, **first.tags},
            status=dg.DagsterRunStatus.STARTED,
        )
        assert isinstance(tick(), dg.SkipReason)  # alive: the claim is recent
        age_claims(database, 600)
        (second,) = tick().run_requests
        assert second.run_key != first.run_key
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert export_job.execute_in_process(
            run_config=second.run_config, tags=second.tags, instance=instance, resources=resources
        ).success

        failure = (
            instance.get_records_for_run(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            .records[0]
            .event_log_entry.dagster_event
        )
        with dg.build_run_status_sensor_context(
            sensor_name=export_run_failure_sensor.name,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(dead.run_id),
            dagster_event=failure,
            resources={"database": database},
        ) as context:
            export_run_failure_sensor(context.for_run_failure())
    row = get_export(database.engine, job_id)
    assert row.status == "completed" and row.attempts == 2
    assert storage.list("exports") == [storage.key_of(row.file_url)]


def test_a_failed_batch_tells_each_user_nothing_of_the_others(database, users, storage):
    """An error about one user's file names its key; every row of the batch fails with the
    message, and each row's copy (which its user reads through the API and webhooks) has the
    other users of the batch taken out."""
    from assets.exports.progress import process_claimed_batch

    first = request_export(database.engine, users[0], "json")
    second = request_export(database.engine, users[1], "json")
    (batch,) = claim_pending_exports(database.engine)

    def storage_fails_on_the_second_users_file():
        raise OSError(f"cannot write exports/{users[1]}/export.json: No space left on device")

    process_claimed_batch(
        database, storage, batch, after_extraction=storage_fails_on_the_second_users_file
    )
    mine, theirs = get_export(database.engine, first), get_export(database.engine, second)
    assert mine.status == theirs.status == "failed"
    assert "No space left on device" in mine.error_message
    assert users[1] not in mine.error_message and "<another user>" in mine.error_message
    assert users[1] in theirs.error_message  # a user's own key is theirs to see


@pytest.mark.slow
def test_a_run_waiting_for_an_app_database_slot_beats_and_is_not_taken_for_dead(
    database, users, storage, monkeypatch
):
    """The `app_database` pool's one slot is held by another run: the export run starts,
    its extraction waits for the slot longer than GOALPORT_STALE_AFTER, and its claim is
    alive all along (the run's own heartbeat, from its start); once the slot is free the
    run exports the request."""
    import threading

    import dagster as dg

    from assets.exports.defs import export_request_sensor
    from pipelines.definitions import defs
    from resources.run_policy import APP_DATABASE_POOL

    monkeypatch.setenv("GOALPORT_STALE_AFTER", "2")  # a beat every 0.5 s
    resources = {"database": database, "storage": storage}
    job_id = request_export(database.engine, users[0], "json")
    overrides = {"concurrency": {"pools": {"default_limit": 1, "granularity": "op"}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            (request,) = export_request_sensor(context).run_requests
        events = instance.event_log_storage
        events.set_concurrency_slots(APP_DATABASE_POOL, 1)
        assert events.claim_concurrency_slot(
            APP_DATABASE_POOL, "another-run", "its_step"
        ).is_claimed
        outcome = {}
        run = threading.Thread(
            target=lambda: outcome.setdefault(
                "result",
                defs.resolve_job_def("export_job").execute_in_process(
                    run_config=request.run_config,
                    tags=request.tags,
                    instance=instance,
                    resources=resources,
                ),
            )
        )
        run.start()
        time.sleep(4)  # twice GOALPORT_STALE_AFTER, the extraction still waiting
        assert get_export(database.engine, job_id).status == "processing"
        stale = requeue_stale_claims(database.engine, older_than=dt.timedelta(seconds=2))
        assert stale.requeued == [] and stale.failed == [], "a waiting run was taken for dead"
        events.free_concurrency_slot_for_step("another-run", "its_step")
        run.join(timeout=120)
        assert outcome["result"].success
    row = get_export(database.engine, job_id)
    assert row.status == "completed" and row.attempts == 1


def test_a_dead_claim_whose_file_cannot_be_deleted_stays_until_it_can(
    database, users, storage, monkeypatch
):
    """The requeue deletes the dead claim's file before its move commits: with the storage
    endpoint unreachable, the row is left as it was (stale, for the next claimer), never
    requeued with its old file behind; with the storage back, both happen."""
    import socket

    job_id = request_export(database.engine, users[0], "json")
    claim_pending_exports(database.engine)
    dead_file = storage.write_bytes(export_key(users[0], "json", utc_now(), job_id), b"{}")
    age_claims(database, 600)
    with socket.socket() as probe:  # a port nothing listens on: the endpoint is down
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("GOALPORT_S3_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("GOALPORT_S3_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    unreachable = ObjectStorage(url="s3://goalport-down/storage")
    outcome = requeue_stale_claims(
        database.engine, older_than=dt.timedelta(seconds=60), storage=unreachable
    )
    assert outcome.requeued == [] and list(outcome.kept) == [job_id]
    row = get_export(database.engine, job_id)
    assert row.status == "processing" and row.batch_id is not None

    outcome = requeue_stale_claims(
        database.engine, older_than=dt.timedelta(seconds=60), storage=storage
    )
    assert outcome.requeued == [job_id] and outcome.files_deleted == [dead_file.key]
    assert get_export(database.engine, job_id).status == "pending"
    assert not storage.exists(dead_file.key)
