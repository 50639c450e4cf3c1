"""Request -> downloadable file through the daemon path, as in production: `make up`'s
topology (scripts/ops.py: code server, daemon, webserver, S3 endpoint, instance on
PostgreSQL), one single-user request at a time, each waited for before the next.

Measured once per request-sensor interval in GOALPORT_BENCH_DAEMON_TICKS (default "1",
what `make up` runs: the sensor on every daemon loop, waiting up to
GOALPORT_REQUEST_WAIT_SECONDS=4 for a request; "15,1" compares with the old 15 s tick),
with the production instance (the warm run launcher, the run queue looked at every
second). Each request's time is broken down from the request row and Dagster's records of
its run:
  tick wait      request made -> claimed by the sensor
  queue + launch claimed -> run STARTED (the run queue, the run process starting)
  run boot       run STARTED -> first step started (resources)
  extract+checks the `extracted_batch` step (COPY to Arrow, the data-quality rules: pyarrow
                 for a small batch, great-expectations' import only for a large one)
  render+store   the `export_files` step started -> the request row `completed` (what the
                 user waits for; the step records its success just after)

`run(database_url)` ignores the seeded benchmark database: the topology has its own app
database (a few seeded users) and Dagster database, dropped at the end. Environment:
GOALPORT_BENCH_DAEMON_REQUESTS (default 50), GOALPORT_BENCH_DAEMON_TICKS (default "1").
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
PARTS = ("tick wait", "queue + launch", "run boot", "extract+checks", "render+store")


def run(database_url: str) -> dict:
    requests = int(os.environ.get("GOALPORT_BENCH_DAEMON_REQUESTS", "50"))
    ticks = [int(t) for t in os.environ.get("GOALPORT_BENCH_DAEMON_TICKS", "1").split(",")]
    report = {}
    for tick in ticks:
        samples = _measure(requests, tick)
        report[f"tick_{tick}s"] = summary = _summarise(samples)
        print(
            f"tick {tick:>2} s, {len(samples)} requests: p50 {summary['total']['p50']:.1f} s, "
            f"p95 {summary['total']['p95']:.1f} s; p50 of each part: "
            + ", ".join(f"{p} {summary[p]['p50']:.1f}" for p in PARTS)
        )
    if len(ticks) > 1:
        first, last = (report[f"tick_{t}s"]["total"]["p50"] for t in (ticks[0], ticks[-1]))
        print(f"p50 with a {ticks[-1]} s tick / with {ticks[0]} s: {last / first:.2f}")
    return report


def _measure(requests: int, tick: int) -> list[dict[str, float]]:
    sys.path.insert(0, str(REPO / "scripts"))
    import ops

    folder = tempfile.mkdtemp(prefix="goalport-daemon-bench-")
    prefix = f"gp_bench_daemon_{uuid.uuid4().hex[:6]}"
    script_env = {
        **os.environ,
        "GOALPORT_OPS_DIR": folder,
        "GOALPORT_OPS_DB_PREFIX": prefix,
        "GOALPORT_REQUEST_TICK_SECONDS": str(tick),
        **{f"GOALPORT_OPS_{p}_PORT": str(_free_port()) for p in ("S3", "CODE_SERVER", "WEBSERVER")},
    }
    script = [sys.executable, str(REPO / "scripts" / "ops.py")]
    os.environ["GOALPORT_OPS_DIR"] = folder
    try:
        subprocess.run([*script, "up", "s3", "code-server", "daemon"], env=script_env, check=True)
        env = ops.environment(ops.load_config())
        env["GOALPORT_REQUEST_TICK_SECONDS"] = str(tick)
        goalport = str(ops.BIN / "goalport")
        subprocess.run(
            [goalport, "seed", "--users", "20"], env=env, check=True, capture_output=True
        )
        engine = sa.create_engine(env["GOALPORT_DATABASE_URL"], poolclass=sa.NullPool)
        with engine.connect() as conn:
            users = list(conn.execute(sa.text('SELECT id FROM "User" ORDER BY id')).scalars())
        instance = _instance(env)
        samples = []
        for i in range(requests):
            job_id = subprocess.run(
                [goalport, "request", "export", users[i % len(users)]],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            samples.append(_follow(engine, instance, job_id))
        engine.dispose()
        return samples
    finally:
        subprocess.run([*script, "down"], env=script_env, capture_output=True)
        os.environ.pop("GOALPORT_OPS_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)
        admin = sa.create_engine(ops.server_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for suffix in ("app", "dagster"):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{prefix}_{suffix}" WITH (FORCE)'))
        admin.dispose()


def _instance(env: dict[str, str]):
    import dagster as dg

    for name in ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST"):
        os.environ[name] = env[name]
    os.environ["DAGSTER_PG_PORT"], os.environ["DAGSTER_PG_DB"] = (
        env["DAGSTER_PG_PORT"],
        env["DAGSTER_PG_DB"],
    )
    return dg.DagsterInstance.from_config(env["DAGSTER_HOME"])


def _follow(engine: sa.Engine, instance, job_id: str) -> dict[str, float]:
    """Wait for the request's file, then take its times apart."""
    import dagster as dg

    query = sa.text(
        'SELECT status, "createdAt", "startedAt", "completedAt", "runId" '
        'FROM "DataExportJob" WHERE id = :id'
    )
    deadline = time.monotonic() + 300
    while True:
        with engine.connect() as conn:
            row = conn.execute(query, {"id": job_id}).one()
        if row.status in ("completed", "failed"):
            seen = time.time()
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"request {job_id} still {row.status} after 300 s")
        time.sleep(0.1)
    if row.status == "failed":
        raise RuntimeError(f"request {job_id} failed")
    while not instance.get_run_by_id(row.runId).is_finished:  # its events are all written
        time.sleep(0.2)
    record = instance.get_run_record_by_id(row.runId)
    steps = {}
    for kind in (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS):
        for entry in instance.get_records_for_run(row.runId, of_type=kind).records:
            log = entry.event_log_entry
            steps[(log.step_key, kind)] = log.timestamp
    start = dg.DagsterEventType.STEP_START
    success = dg.DagsterEventType.STEP_SUCCESS
    first_step = min(t for (_, kind), t in steps.items() if kind == start)
    created, claimed = row.createdAt.timestamp(), row.startedAt.timestamp()
    return {
        "tick wait": claimed - created,
        "queue + launch": record.start_time - claimed,
        "run boot": first_step - record.start_time,
        "extract+checks": steps[("extracted_batch", success)] - steps[("extracted_batch", start)],
        "render+store": seen - steps[("export_files", start)],
        "total": seen - created,
    }


def _summarise(samples: list[dict[str, float]]) -> dict:
    def percentile(values: list[float], share: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]

    return {
        part: {
            "p50": statistics.median(s[part] for s in samples),
            "p95": percentile([s[part] for s in samples], 0.95),
        }
        for part in (*PARTS, "total")
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
