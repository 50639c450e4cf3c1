"""The production run launcher (`pipelines.warm_launcher`): a request through the real
topology (`scripts/ops.py`: S3 endpoint, code server, daemon on the production instance)
runs in a worker forked from the warm forkserver and is exported; run monitoring's health
check tells a live worker from a dead one (killed with SIGKILL, or its pid reused)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from conftest import dagster_pg_environment

from pipelines.warm_launcher import WORKER_TAG, WarmRunLauncher, worker_identity

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import ops  # noqa: E402

OPS = [sys.executable, str(REPO / "scripts" / "ops.py")]


def a_run(tags: dict[str, str]) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="export_job", run_id=uuid.uuid4().hex, tags=tags)


def test_the_health_check_tells_a_live_worker_from_a_dead_or_replaced_one():
    launcher = WarmRunLauncher()
    assert launcher.supports_check_run_worker_health
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        identity = worker_identity(worker.pid)
        assert identity and identity.startswith(f"{worker.pid}:")
        live = launcher.check_run_worker_health(a_run({WORKER_TAG: identity}))
        assert live.status.value == "RUNNING"
        # the same pid with another start time: a process that took over a dead worker's pid
        reused = launcher.check_run_worker_health(a_run({WORKER_TAG: f"{worker.pid}:1"}))
        assert reused.status.value == "FAILED"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    dead = launcher.check_run_worker_health(a_run({WORKER_TAG: identity}))
    assert dead.status.value == "FAILED" and str(worker.pid) in (dead.msg or "")
    assert launcher.check_run_worker_health(a_run({})).status.value == "UNKNOWN"


@pytest.fixture
def topology(tmp_path):
    """S3 endpoint, code server and daemon of this test's own (scripts/ops.py), the request
    sensor ticking on every daemon loop; down after."""
    prefix = f"gp_warm_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "GOALPORT_OPS_DIR": str(tmp_path / "ops"),
        "GOALPORT_OPS_DB_PREFIX": prefix,
        "GOALPORT_REQUEST_TICK_SECONDS": "1",
        "GOALPORT_REQUEST_WAIT_SECONDS": "4",
        **{f"GOALPORT_OPS_{p}_PORT": str(ops_free_port()) for p in ("S3", "CODE_SERVER")},
    }
    os.environ["GOALPORT_OPS_DIR"] = env["GOALPORT_OPS_DIR"]
    try:
        up = [*OPS, "up", "s3", "code-server", "daemon"]
        started = subprocess.run(up, env=env, capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        yield ops.environment(ops.load_config())
    finally:
        subprocess.run([*OPS, "down"], env=env, capture_output=True)
        os.environ.pop("GOALPORT_OPS_DIR", None)
        admin = sa.create_engine(ops.server_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for suffix in ("app", "dagster"):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{prefix}_{suffix}" WITH (FORCE)'))
        admin.dispose()


def ops_free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_a_request_through_the_daemon_runs_in_a_worker_forked_warm(topology, monkeypatch):
    env = topology
    goalport = str(ops.BIN / "goalport")
    subprocess.run([goalport, "seed", "--users", "2", "--seed", "3"], env=env, check=True,
                   capture_output=True)  # fmt: skip
    engine = sa.create_engine(env["GOALPORT_DATABASE_URL"], poolclass=sa.NullPool)
    with engine.connect() as conn:
        user_id = conn.execute(sa.text('SELECT id FROM "User" ORDER BY id LIMIT 1')).scalar()
    job_id = subprocess.run(
        [goalport, "request", "export", user_id], env=env, check=True, capture_output=True,
        text=True,
    ).stdout.split()[-1]  # fmt: skip
    query = sa.text('SELECT status, "runId", "errorMessage" FROM "DataExportJob" WHERE id = :id')
    deadline = time.monotonic() + 240
    while True:
        with engine.connect() as conn:
            row = conn.execute(query, {"id": job_id}).one()
        if row.status in ("completed", "failed"):
            break
        assert time.monotonic() < deadline, f"request still {row.status}"
        time.sleep(0.2)
    engine.dispose()
    assert row.status == "completed", row.errorMessage

    for name, value in dagster_pg_environment(
        sa.make_url(ops.server_url()).set(database=env["DAGSTER_PG_DB"]).render_as_string(False)
    ).items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        assert type(instance.run_launcher).__name__ == "WarmRunLauncher"
        while not instance.get_run_by_id(row.runId).is_finished:
            time.sleep(0.2)
        run = instance.get_run_by_id(row.runId)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        pid = run.tags[WORKER_TAG].split(":")[0]
        started = [
            e.message
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
            if e.message and e.message.startswith("Started process for run")
        ]
        # the process the launcher forked and tagged is the one that ran the job
        assert started == [f"Started process for run (pid: {pid})."]
    finally:
        instance.dispose()
