"""The real topology of `make up` (scripts/ops.py) on this machine: moto's S3 server, the
code server, the webserver and the daemon as processes of their own, the instance on
PostgreSQL. Export requests go the daemon's way (sensor tick, queued run, launched run);
the daemon is `kill -9`ed while it works and started again: no request is lost, none is
exported twice. Then `make down` leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
OPS = [sys.executable, str(REPO / "scripts" / "ops.py")]
sys.path.insert(0, str(REPO / "scripts"))
import ops  # noqa: E402


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free right now (held together while chosen)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@pytest.fixture
def topology(tmp_path):
    """`scripts/ops.py up` in a folder, databases and ports of this test's own; down after."""
    prefix = f"gp_ops_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "GOALPORT_OPS_DIR": str(tmp_path / "ops"),
        "GOALPORT_OPS_DB_PREFIX": prefix,
        "GOALPORT_STALE_AFTER": "10",
        "GOALPORT_REQUEST_TICK_SECONDS": "3",
        **{
            f"GOALPORT_OPS_{part}_PORT": str(port)
            for part, port in zip(
                ("S3", "CODE_SERVER", "WEBSERVER", "API"), free_ports(4), strict=True
            )
        },
    }
    try:
        started = subprocess.run([*OPS, "up"], env=env, capture_output=True, text=True, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        os.environ.update({k: env[k] for k in ("GOALPORT_OPS_DIR", "GOALPORT_STALE_AFTER")})
        yield env, ops.environment(ops.load_config())
    finally:
        stopped = subprocess.run([*OPS, "down"], env=env, capture_output=True, text=True)
        for name in ("GOALPORT_OPS_DIR", "GOALPORT_STALE_AFTER"):
            os.environ.pop(name, None)
        admin = sa.create_engine(ops.server_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for suffix in ("app", "dagster"):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{prefix}_{suffix}" WITH (FORCE)'))
        admin.dispose()
    assert stopped.returncode == 0


def goalport(env: dict, *args: str) -> str:
    done = subprocess.run(
        [str(ops.BIN / "goalport"), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.mark.slow
def test_requests_through_the_daemon_survive_a_kill_9_of_the_daemon(topology):
    script_env, env = topology
    folder = Path(script_env["GOALPORT_OPS_DIR"])
    pids = {part: ops.running_pid(part) for part in ops.PARTS}
    assert all(pids[p] for p in ("s3", "code-server", "webserver", "daemon")), pids

    goalport(env, "seed", "--users", "4", "--seed", "9")
    engine = sa.create_engine(env["GOALPORT_DATABASE_URL"], poolclass=sa.NullPool)
    with engine.connect() as conn:
        users = list(conn.execute(sa.text('SELECT id FROM "User" ORDER BY id')).scalars())
    job_ids = [goalport(env, "request", "export", u).strip().splitlines()[-1] for u in users]

    def statuses() -> dict[str, str]:
        with engine.connect() as conn:
            rows = conn.execute(sa.text('SELECT id, status FROM "DataExportJob"')).all()
        return dict(rows)

    deadline = time.monotonic() + 180
    while all(s == "pending" for s in statuses().values()):  # the sensor has not claimed yet
        assert time.monotonic() < deadline, "the daemon's sensor never claimed the requests"
        time.sleep(0.1)
    os.kill(pids["daemon"], signal.SIGKILL)  # while it ticks, queues and launches
    time.sleep(1)
    assert ops.running_pid("daemon") is None
    restarted = subprocess.run([*OPS, "up", "daemon"], env=script_env, capture_output=True)
    assert restarted.returncode == 0, restarted.stderr
    assert ops.running_pid("daemon") not in (None, pids["daemon"])

    deadline = time.monotonic() + 300
    while any(s != "completed" for s in statuses().values()):
        failed = {j: s for j, s in statuses().items() if s == "failed"}
        assert not failed, failed
        assert time.monotonic() < deadline, f"not all exported: {statuses()}"
        time.sleep(0.5)
    assert sorted(statuses()) == sorted(job_ids)

    s3 = boto3.client(
        "s3",
        endpoint_url=env["GOALPORT_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    listed = s3.list_objects_v2(Bucket=ops.BUCKET, Prefix="storage/exports/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    with engine.connect() as conn:
        urls = conn.execute(sa.text('SELECT "fileUrl" FROM "DataExportJob"')).scalars().all()
        audits = conn.execute(
            sa.text("""SELECT count(*) FROM "DataAuditLog" WHERE operation = 'export'""")
        ).scalar()
    assert len(keys) == len(job_ids) == audits  # each exported once, no stray file
    assert sorted(u.split(f"s3://{ops.BUCKET}/", 1)[1] for u in urls) == keys
    engine.dispose()

    # what the parts logged stays under the ops folder; the instance names no user
    assert (folder / "daemon.log").exists() and (folder / "code-server.log").exists()
    config = json.loads((folder / "config.json").read_text())
    dagster_url = sa.make_url(ops.server_url()).set(database=config["dagster_db"])
    dagster_db = sa.create_engine(dagster_url, poolclass=sa.NullPool)
    with dagster_db.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_body FROM runs")).scalars().all()
        events = conn.execute(sa.text("SELECT event FROM event_logs")).scalars().all()
    dagster_db.dispose()
    assert runs
    for user_id in users:
        assert not any(user_id in text for text in [*runs, *events])
