"""Fault injection against real servers: the app's PostgreSQL restarted in the middle of an
export run, the S3 endpoint down for a while (within botocore's own retries, and longer
than them: then the step's RetryPolicy), the storage folder full.

Each export run is a real `dagster job execute` of `export_job` in a subprocess, on an
instance of its own (DAGSTER_HOME in a temporary folder), with a one-second first back-off
(GOALPORT_RETRY_DELAY_SECONDS) so that its RetryPolicy waits through the outage. The test
reads that instance's event log to strike at a known step. Whatever the run's outcome, no
row is left `processing`, and in the end every request has exactly one file.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.exports.claims import claim_pending_exports
from assets.exports.defs import export_run_request
from assets.exports.progress import process_pending_exports, requeue_dead_claims
from assets.exports.queue import request_export, retry_exports
from resources import schema
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from synthetic.seed import seed_database

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
jobs = schema.data_export_job
STALE_AFTER = 3
RUN_TIMEOUT = 120  # a run's start alone took 30 s on this machine under load

pytestmark = pytest.mark.slow


def run_environment(tmp_path: Path, database_url: str, storage_url: str, **extra: str) -> dict:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").touch()
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DAGSTER_HOME": str(home),
        "GOALPORT_DATABASE_URL": database_url,
        "GOALPORT_STORAGE_URL": storage_url,
        "GOALPORT_RETRY_DELAY_SECONDS": "1",
        "GOALPORT_STALE_AFTER": str(STALE_AFTER),
        **extra,
    }


def launch_export_run(database: AppDatabase, env: dict, tmp_path: Path) -> subprocess.Popen:
    """Claim the pending rows as the sensor does and run their one batch with `dagster job
    execute` (the in-process executor: both steps in that process)."""
    (batch,) = claim_pending_exports(database.engine, claimant="sensor")
    config = tmp_path / "run_config.json"
    config.write_text(json.dumps(export_run_request(batch).run_config))
    command = [str(BIN / "dagster"), "job", "execute", "-m", "pipelines.definitions", "-a", "defs"]
    return subprocess.Popen(
        [*command, "-j", "export_job", "-c", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


class RunEvents:
    """The event log of the one run on the subprocess's instance, read as it happens."""

    def __init__(self, env: dict):
        self.instance = dg.DagsterInstance.local_temp(tempdir=env["DAGSTER_HOME"])

    def events(self) -> list[tuple[str, str | None]]:
        runs = self.instance.get_runs(limit=1)
        if not runs:
            return []
        return [
            (entry.dagster_event.event_type_value, entry.step_key)
            for entry in self.instance.all_logs(runs[0].run_id)
            if entry.dagster_event is not None
        ]

    def wait_for(self, seen: Callable[[list], bool], process: subprocess.Popen) -> bool:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            if seen(self.events()):
                return True
            if process.poll() is not None:
                return seen(self.events())
            time.sleep(0.05)
        raise AssertionError("the export run did not get there in time")


def step_event(kind: str, step: str | None = None) -> Callable[[list], bool]:
    return lambda events: any(e == kind and (step is None or s == step) for e, s in events)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=RUN_TIMEOUT)
    return process.returncode, output


def statuses(database: AppDatabase) -> dict[str, dict]:
    with database.engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.select(jobs)).mappings()}


def settle(database: AppDatabase, storage: ObjectStorage, monkeypatch) -> dict[str, dict]:
    """What happens after a failed run: its rows are failed with the reason (or, if the
    database was away when it tried, left to the next claimer, who requeues them once their
    heartbeat is STALE_AFTER old). Never `processing` for good."""
    monkeypatch.setenv("GOALPORT_STALE_AFTER", str(STALE_AFTER))
    if any(row["status"] == "processing" for row in statuses(database).values()):
        time.sleep(STALE_AFTER + 0.5)
        requeue_dead_claims(database, storage)
    rows = statuses(database)
    assert {row["status"] for row in rows.values()} <= {"completed", "failed", "pending"}, rows
    return rows


def export_everything_left(database: AppDatabase, storage: ObjectStorage) -> None:
    """Rows the outage failed or requeued, asked for again and exported here."""
    failed = [job_id for job_id, row in statuses(database).items() if row["status"] == "failed"]
    if failed:
        retry_exports(database.engine, failed)
    process_pending_exports(database, storage, workers=1)


def assert_each_export_exactly_once(database: AppDatabase, storage: ObjectStorage) -> None:
    rows = statuses(database)
    assert {row["status"] for row in rows.values()} == {"completed"}, rows
    keys = {storage.key_of(row["fileUrl"]) for row in rows.values()}
    assert len(keys) == len(rows) and None not in keys  # one file per request, its own
    # nothing else: no second copy, no temporary file or unfinished upload
    assert set(storage.list_including_unfinished()) == keys
    for row in rows.values():
        assert storage.info(storage.key_of(row["fileUrl"]))["size"] == row["fileSizeBytes"]


# ---------------------------------------------------------------------------------------
# PostgreSQL restarted during a run


def test_a_postgresql_restart_during_a_run_is_waited_out_by_the_retry_policy(
    private_cluster, tmp_path, monkeypatch
):
    seed_database(private_cluster.url, 5, seed=23, heavy_every=0)
    database = AppDatabase(url=private_cluster.url)
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    try:
        for user_id in sorted(database.all_user_ids()):
            request_export(database.engine, user_id, "json")
        env = run_environment(tmp_path, private_cluster.url, storage.root)
        events = RunEvents(env)
        process = launch_export_run(database, env, tmp_path)
        database.engine.dispose()

        started = events.wait_for(step_event("STEP_START", "extracted_batch"), process)
        assert started, finish(process)[1][-3000:]
        private_cluster.stop()
        outage_started = time.monotonic()
        # the run meets the outage: a step fails and is retried after a back-off
        hit = events.wait_for(step_event("STEP_UP_FOR_RETRY"), process)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - outage_started)))
        private_cluster.start()
        returncode, output = finish(process)
        assert hit, output[-3000:]

        rows = settle(database, storage, monkeypatch)
        if returncode == 0:  # the retries outlasted the outage: the whole batch is done
            assert {row["status"] for row in rows.values()} == {"completed"}, output[-3000:]
        export_everything_left(database, storage)
        assert_each_export_exactly_once(database, storage)
    finally:
        database.engine.dispose()


# ---------------------------------------------------------------------------------------
# The S3 endpoint down for a while


@pytest.fixture
def own_s3_endpoint():
    """A moto server this test alone may stop and start again on the same port (moto keeps
    its buckets in the process, so they outlive a restart, as a real endpoint's do)."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    class Endpoint:
        url = f"http://127.0.0.1:{port}"
        server: ThreadedMotoServer | None = None

        def start(self) -> None:
            self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            self.server.start()

        def stop(self) -> None:
            assert self.server is not None
            self.server.stop()
            self.server = None

    endpoint = Endpoint()
    endpoint.start()
    yield endpoint
    if endpoint.server is not None:
        endpoint.stop()


def test_an_s3_outage_during_a_run_leaves_no_partial_object(
    pg_url, database, own_s3_endpoint, tmp_path, monkeypatch
):
    import s3fs

    seed_database(pg_url, 5, seed=29, heavy_every=0)
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for name, value in {**credentials, "GOALPORT_S3_ENDPOINT_URL": own_s3_endpoint.url}.items():
        monkeypatch.setenv(name, value)
    bucket = "gp-outage"
    s3fs.S3FileSystem(
        key="testing", secret="testing", client_kwargs={"endpoint_url": own_s3_endpoint.url}
    ).mkdir(bucket)
    storage = ObjectStorage(url=f"s3://{bucket}/goalport")
    for user_id in sorted(database.all_user_ids()):
        request_export(database.engine, user_id, "csv")
    env = run_environment(
        tmp_path,
        pg_url,
        storage.root,
        GOALPORT_S3_ENDPOINT_URL=own_s3_endpoint.url,
        AWS_MAX_ATTEMPTS="2",
        **credentials,
    )
    events = RunEvents(env)
    process = launch_export_run(database, env, tmp_path)

    started = events.wait_for(step_event("STEP_START", "export_files"), process)
    assert started, finish(process)[1][-3000:]
    own_s3_endpoint.stop()
    time.sleep(3)
    # the writing step could not have finished while the endpoint was away
    assert not step_event("STEP_SUCCESS", "export_files")(events.events())
    own_s3_endpoint.start()
    returncode, output = finish(process)

    rows = settle(database, storage, monkeypatch)
    if returncode == 0:
        assert {row["status"] for row in rows.values()} == {"completed"}, output[-3000:]
    export_everything_left(database, storage)
    assert_each_export_exactly_once(database, storage)


def test_an_s3_outage_longer_than_botocores_retries_is_waited_out_by_the_step_retry_policy(
    pg_url, database, own_s3_endpoint, tmp_path, monkeypatch
):
    """One S3 attempt per call (GOALPORT_S3_MAX_ATTEMPTS=1): botocore gives up at once, the
    `export_files` step fails, and its RetryPolicy (back-off from 1 s) tries again once the
    endpoint is back. The run succeeds, each request has exactly one file."""
    import s3fs

    seed_database(pg_url, 3, seed=37, heavy_every=0)
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    for name, value in {**credentials, "GOALPORT_S3_ENDPOINT_URL": own_s3_endpoint.url}.items():
        monkeypatch.setenv(name, value)
    bucket = "gp-long-outage"
    s3fs.S3FileSystem(
        key="testing", secret="testing", client_kwargs={"endpoint_url": own_s3_endpoint.url}
    ).mkdir(bucket)
    storage = ObjectStorage(url=f"s3://{bucket}/goalport")
    for user_id in sorted(database.all_user_ids()):
        request_export(database.engine, user_id, "csv")
    env = run_environment(
        tmp_path,
        pg_url,
        storage.root,
        GOALPORT_S3_ENDPOINT_URL=own_s3_endpoint.url,
        GOALPORT_S3_MAX_ATTEMPTS="1",
        **credentials,
    )
    events = RunEvents(env)
    own_s3_endpoint.stop()  # down before the run writes anything, until its step gives up
    process = launch_export_run(database, env, tmp_path)
    gave_up = events.wait_for(step_event("STEP_UP_FOR_RETRY", "export_files"), process)
    own_s3_endpoint.start()
    returncode, output = finish(process)
    assert gave_up, output[-3000:]
    assert returncode == 0, output[-3000:]
    seen = events.events()
    assert ("STEP_RESTARTED", "export_files") in seen
    assert ("STEP_SUCCESS", "export_files") in seen
    assert_each_export_exactly_once(database, storage)


# ---------------------------------------------------------------------------------------
# Storage full

# Runs in a mount namespace of its own: a 2 MB tmpfs over the storage folder, then one
# `goalport exports process --once`; what is left on the tmpfs is listed before it goes.
FULL_DISK_SCRIPT = """
mount -t tmpfs -o size=2m,mode=0700 goalport-full "$1" || exit 97
"$2" exports process --once --workers 1
status=$?
cd "$1" && find . -mindepth 1 -printf '%y %P\\t%s\\n' > "$3"
exit $status
"""


def in_private_mount_namespace() -> list[str]:
    """`unshare --mount` as root; an unprivileged user maps itself to root in a user
    namespace first (allowed where unprivileged user namespaces are)."""
    if os.geteuid() == 0:
        return ["unshare", "--mount", "--propagation", "private"]
    return ["unshare", "--map-root-user", "--mount", "--propagation", "private"]


def test_a_full_disk_fails_the_export_that_does_not_fit_and_no_other(pg_url, database, tmp_path):
    seed_database(pg_url, 3, seed=31, heavy_every=3)  # the second user is heavy
    with database.engine.connect() as conn:
        by_rows = (
            conn.execute(
                sa.text('SELECT "userId" FROM "Progress" GROUP BY 1 ORDER BY count(*) DESC')
            )
            .scalars()
            .all()
        )
    heavy, *light = by_rows
    too_big = request_export(database.engine, heavy, "json")
    fitting = {request_export(database.engine, user_id, "csv"): user_id for user_id in light}
    storage_folder = tmp_path / "storage"
    storage_folder.mkdir()
    listing = tmp_path / "left_on_tmpfs.txt"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GOALPORT_DATABASE_URL": pg_url,
        "GOALPORT_STORAGE_URL": str(storage_folder),
    }
    done = subprocess.run(
        [*in_private_mount_namespace(), "sh", "-c", FULL_DISK_SCRIPT, "full-disk",
         str(storage_folder), str(BIN / "goalport"), str(listing)],
        env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=REPO,
    )  # fmt: skip
    assert done.returncode != 97, f"could not mount the tmpfs: {done.stderr}"
    assert done.returncode == 1, done.stdout + done.stderr  # one export failed

    rows = statuses(database)
    failed = rows[too_big]
    assert failed["status"] == "failed" and failed["fileUrl"] is None
    assert "No space left on device" in failed["errorMessage"], failed["errorMessage"]
    # the message names the file it could not write
    assert f"{storage_folder}/" in failed["errorMessage"] and ".json" in failed["errorMessage"]
    for job_id in fitting:
        assert rows[job_id]["status"] == "completed", rows[job_id]

    left = dict(
        line.split("\t") for line in listing.read_text().splitlines() if line.startswith("f ")
    )
    # the files that fit, whole; no temporary file of the one that did not
    expected = {
        "f " + ObjectStorage(url=str(storage_folder)).key_of(rows[j]["fileUrl"]):
        str(rows[j]["fileSizeBytes"])
        for j in fitting
    }  # fmt: skip
    assert left == expected, listing.read_text()
    assert not any(".tmp-" in line for line in listing.read_text().splitlines())
