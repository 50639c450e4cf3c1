"""Dagster's records never name a user: every job and sensor of the code location runs on a
real Dagster instance (SQLite storage and local compute logs in a temporary folder) for
two users whose ids, e-mails and goal titles are distinctive strings; they are exported,
backed up, bundled, imported (through the inbox) and erased; then the whole instance is
searched for those strings: run config and tags, run keys, every event record, the
assets' latest materializations, asset check evaluations, sensor cursors and log lines,
and every file under the instance's folder (its SQLite databases and captured logs).

Also: the inbox key parser, and the erasure's scoped search of Dagster's records (it
finds a run launched naming the user, and searches only the user's runs).
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from assets.exports.defs import ExportConfig
from assets.exports.queue import request_export
from assets.gdpr.bulk import user_bucket
from assets.gdpr.defs import USERS_RUNS, DagsterRunHistory, bucket_key
from assets.gdpr.erasure import get_erasure_request, request_erasure
from resources import keys, schema
from resources.database import AppDatabase
from resources.keys import KeyVault
from resources.storage import ObjectStorage
from resources.storage_layout import InboxFile, parse_inbox_key
from synthetic.load import load_population
from synthetic.population import generate_population
from tests.gdpr.scan import scan_dagster

# Two users, with strings found nowhere else.
KESTREL = {
    "id": "usr-Kq7Kestrel-4401",
    "email": "kestrel.kq7@pipit-mail.example",
    "title": "Row across Lake Kq7Kestrel",
}
OSPREY = {
    "id": "usr-Wm4Osprey-5502",
    "email": "osprey.wm4@pipit-mail.example",
    "title": "Climb Wm4Osprey ridge",
}
BROKEN_GOAL_ID = "goal-Bz9Broken-6603"  # a row that fails a data-quality rule
NEEDLES = [
    *(u[k] for u in (KESTREL, OSPREY) for k in ("id", "email", "title")),
    "pipit-mail",
    BROKEN_GOAL_ID,
]


def test_inbox_keys_name_their_owner_and_file():
    assert parse_inbox_key("imports/inbox/u1/backup.json") == InboxFile("u1", "backup.json")
    assert parse_inbox_key("imports/inbox/u1/a/b/notes.csv") == InboxFile("u1", "notes.csv")
    for stray in (
        "imports/inbox/stray.json",
        "imports/inbox//x.json",
        "imports/inbox/u1/",
        "imports/inbox/../x.json",
        "imports/plans/u1/x.plan",
        "imports/inboxed/u1/x.json",
    ):
        assert parse_inbox_key(stray) is None, stray


def _renamed(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The synthetic population with its first two users given the distinctive strings."""
    first, second = tables["User"]["id"].to_pylist()[:2]
    ids = {first: KESTREL["id"], second: OSPREY["id"]}
    emails = {first: KESTREL["email"], second: OSPREY["email"]}

    def replace(table: pa.Table, column: str, mapping: dict) -> pa.Table:
        values = [mapping.get(v, v) for v in table[column].to_pylist()]
        index = table.schema.get_field_index(column)
        return table.set_column(
            index, table.schema.field(index), pa.array(values, table[column].type)
        )

    renamed = {}
    for name, table in tables.items():
        if name == "User":
            owners = table["id"].to_pylist()
            table = replace(
                table,
                "email",
                {
                    e: emails[u]
                    for u, e in zip(owners, table["email"].to_pylist(), strict=True)
                    if u in emails
                },
            )
            table = replace(table, "id", ids)
        elif "userId" in table.column_names:
            table = replace(table, "userId", ids)
        renamed[name] = table
    goals = renamed["Goal"]
    owners = goals["userId"].to_pylist()
    titles = goals["title"].to_pylist()
    for user in (KESTREL, OSPREY):
        titles[owners.index(user["id"])] = user["title"]
    renamed["Goal"] = goals.set_column(
        goals.schema.get_field_index("title"), "title", pa.array(titles, goals["title"].type)
    )
    return renamed


@pytest.fixture
def code_location(pg_url, tmp_path, monkeypatch):
    """The real code location, its resources configured from the environment as in
    production, on a fresh database with the two users (and a few others)."""
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "storage"))
    monkeypatch.setenv(keys.MASTER_KEY_ENV, keys.new_master_key())
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    load_population(engine, _renamed(generate_population(4, seed=14, heavy_every=0)))
    with engine.begin() as conn:  # one goal of the Osprey breaks a data-quality rule
        goal = (
            conn.execute(
                sa.select(schema.goal).where(schema.goal.c.userId == OSPREY["id"]).limit(1)
            )
            .one()
            ._asdict()
        )
        goal.update(id=BROKEN_GOAL_ID, priority=42, parentGoalId=None)
        conn.execute(schema.goal.insert().values(**goal))
    engine.dispose()
    from pipelines.definitions import defs

    (tmp_path / "dagster").mkdir()
    yield defs, tmp_path
    AppDatabase(url=pg_url).engine.dispose()


class Driver:
    """Evaluates sensors and schedules like the daemon and executes the runs they ask for
    on one instance, keeping every cursor, run key and run request to be searched."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, pg_url: str):
        self.defs = defs
        self.instance = instance
        self.resources = {
            "database": AppDatabase(),
            "storage": ObjectStorage(),
            "keys": KeyVault(database_url=pg_url),
        }
        self.cursors: dict[str, str | None] = {}
        self.requests: list[dg.RunRequest] = []
        self.results: list[dg.ExecuteInProcessResult] = []

    def sensor(self, name: str) -> list[dg.RunRequest]:
        sensor = self.defs.get_sensor_def(name)
        with dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursors.get(name),
            resources=self.resources,
            definitions=self.defs,
        ) as context:
            result = sensor(context)
            requests = _run_requests(result)  # a generator sensor runs here
            cursor = context.cursor
        if isinstance(result, dg.SensorResult) and result.cursor is not None:
            cursor = result.cursor
        self.cursors[name] = cursor
        return requests

    def failure_sensor(self, name: str, result: dg.ExecuteInProcessResult) -> None:
        sensor = self.defs.get_sensor_def(name)
        with dg.build_run_status_sensor_context(
            sensor_name=name,
            dagster_instance=self.instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            resources={"database": self.resources["database"]},
        ) as context:
            sensor(context.for_run_failure())  # type: ignore[operator]

    def schedule(self, name: str, when: dt.datetime) -> list[dg.RunRequest]:
        schedule = self.defs.get_schedule_def(name)
        with dg.build_schedule_context(
            instance=self.instance, scheduled_execution_time=when, resources=self.resources
        ) as context:
            return list(schedule.evaluate_tick(context).run_requests or [])

    def run(self, job_name: str, request: dg.RunRequest | None = None, **kwargs):
        tags = {}
        run_config = {}
        if request is not None:
            self.requests.append(request)
            tags = dict(request.tags)
            if request.run_key:
                tags["dagster/run_key"] = request.run_key
            run_config = request.run_config
        result = self.defs.resolve_job_def(job_name).execute_in_process(
            run_config=run_config,
            instance=self.instance,
            tags=tags,
            raise_on_error=False,
            **kwargs,
        )
        self.results.append(result)
        return result

    def run_all(self, job_name: str, requests: list[dg.RunRequest]) -> list:
        return [self.run(job_name, r) for r in requests]


def _run_requests(result) -> list[dg.RunRequest]:
    if isinstance(result, dg.SensorResult):
        return list(result.run_requests or [])
    if isinstance(result, dg.RunRequest):
        return [result]
    if isinstance(result, dg.SkipReason) or result is None:
        return []
    return [r for r in result if isinstance(r, dg.RunRequest)]


def _found(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


@pytest.mark.slow
def test_no_job_or_sensor_writes_a_user_into_dagsters_records(
    code_location, pg_url, tmp_path, capfd
):
    defs, root = code_location
    database = AppDatabase()
    storage = ObjectStorage()
    engine = database.engine
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        drive = Driver(defs, instance, pg_url)

        # exports of both (and of a third user), through the request sensor; the Osprey's
        # broken goal makes the quality checks fail for them
        others = [u for u in database.all_user_ids() if u not in (KESTREL["id"], OSPREY["id"])]
        for user_id in (KESTREL["id"], OSPREY["id"], others[0]):
            request_export(engine, user_id, "json")
            request_export(engine, user_id, "csv")
        exports = drive.run_all("export_job", drive.sensor("export_request_sensor"))
        assert exports and all(r.success for r in exports)
        checks = [c for r in exports for c in r.get_asset_check_evaluations()]
        assert any(not c.passed for c in checks), "the broken goal fails a quality check"

        # backups, queued by the hourly schedule
        from assets.backups.config import save_backup_config

        for user_id in (KESTREL["id"], OSPREY["id"]):
            save_backup_config(engine, user_id, enabled=True, frequency="daily", encrypt=True)
        with engine.begin() as conn:
            conn.execute(schema.backup_config.update().values(nextBackupAt=dt.datetime(2020, 1, 1)))
        backups = drive.run_all(
            "backup_job", drive.schedule("backup_schedule", dt.datetime.now(dt.UTC))
        )
        assert backups

        # imports through the inbox: the Kestrel's own export back, a file of the Osprey's
        # that cannot be read, and a stray file named with an e-mail address
        (kestrel_json,) = [
            k for k in storage.list(f"exports/{KESTREL['id']}") if k.endswith(".json")
        ]
        storage.write_bytes(
            f"imports/inbox/{KESTREL['id']}/{KESTREL['title']}.json",
            storage.read_bytes(kestrel_json),
        )
        storage.write_bytes(
            f"imports/inbox/{OSPREY['id']}/notes.json",
            json.dumps({"note": OSPREY["title"], "owner": OSPREY["email"]}).encode(),
        )
        storage.write_bytes(f"imports/inbox/{KESTREL['email']}.json", b"{}")
        staging = drive.run_all("import_staging_job", drive.sensor("import_inbox_sensor"))
        assert sorted(r.success for r in staging) == [False, True]
        assert drive.sensor("import_inbox_sensor") == []  # the cursor holds
        with engine.begin() as conn:
            conn.execute(
                schema.data_import_job.update()
                .where(schema.data_import_job.c.status == "previewed")
                .values(status="confirmed")
            )
        applied = drive.run_all("import_apply_job", drive.sensor("confirmed_imports_sensor"))
        assert [r.success for r in applied] == [True]
        failed_import = next(r for r in staging if not r.success)
        drive.failure_sensor("export_run_failure_sensor", failed_import)
        drive.failure_sensor("backup_run_failure_sensor", failed_import)

        # GDPR bundles of the two users' buckets, the template catalog, the expiry job
        for user_id in (KESTREL["id"], OSPREY["id"]):
            bundles = drive.run("gdpr_bulk_job", partition_key=bucket_key(user_bucket(user_id)))
            assert bundles.success
        drive.run_all("template_catalog_job", drive.sensor("template_catalog_sensor"))
        drive.run_all(
            "expire_exports_job",
            drive.schedule("expire_exports_job_schedule", dt.datetime.now(dt.UTC)),
        )

        # and both erased, through the sensor and the erasure job
        requests = [
            request_erasure(engine, u["id"], grace=dt.timedelta(0)) for u in (KESTREL, OSPREY)
        ]
        (erasure_run,) = drive.run_all("erasure_job", drive.sensor("due_erasures_sensor"))
        assert erasure_run.success
        for request in requests:
            receipt = get_erasure_request(engine, request.id).receipt
            assert receipt is not None and receipt["verification"]["passed"], receipt

        # -- the search: every record kind through Dagster's API, every file of the instance
        leaks: dict[str, list[str]] = {}

        def search(kind: str, text: str) -> None:
            if found := _found(text):
                leaks.setdefault(kind, []).extend(found)

        records = instance.get_run_records()
        if found := scan_dagster(instance, NEEDLES):
            leaks["the Dagster instance"] = found
        search("run requests", repr(drive.requests))
        search("sensor cursors", json.dumps(drive.cursors))
        captured = capfd.readouterr()
        search("log lines (stdout, stderr)", captured.out + captured.err)
        assert not leaks, json.dumps(leaks, indent=1)
        # and the erasure deleted no run: none named them
        assert len(records) == len(drive.results)


@pytest.mark.slow
def test_the_erasure_searches_only_the_users_runs_and_deletes_those_naming_them(
    code_location, pg_url
):
    defs, root = code_location
    database = AppDatabase()
    engine = database.engine
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        drive = Driver(defs, instance, pg_url)
        others = [u for u in database.all_user_ids() if u not in (KESTREL["id"], OSPREY["id"])]
        # launched by hand naming the Kestrel: its config names them (operator input)
        by_hand = drive.run(
            "export_job",
            dg.RunRequest(
                run_config=dg.RunConfig(
                    ops={"extracted_batch": ExportConfig(user_ids=[KESTREL["id"]])}
                )
            ),
        )
        unrelated = drive.run(
            "export_job",
            dg.RunRequest(
                run_config=dg.RunConfig(ops={"extracted_batch": ExportConfig(user_ids=others[:1])})
            ),
        )
        request_export(engine, KESTREL["id"], "json")
        request_export(engine, others[1], "json")
        (batch,) = drive.run_all("export_job", drive.sensor("export_request_sensor"))
        assert by_hand.success and unrelated.success and batch.success

        history = DagsterRunHistory(instance, engine=engine)
        kestrel_runs = history.user_run_ids(KESTREL["id"])
        assert set(kestrel_runs) == {by_hand.run_id, batch.run_id}
        assert history.runs_mentioning(KESTREL["id"]) == [by_hand.run_id]
        compute_logs = Path(instance.root_directory) / "storage"  # the local manager's folder

        def captured(run_id: str) -> list[Path]:
            return [p for p in compute_logs.rglob("*") if run_id in str(p) and p.is_file()]

        assert captured(batch.run_id) and captured(unrelated.run_id)
        request = request_erasure(engine, KESTREL["id"], grace=dt.timedelta(0))
        history.remember(KESTREL["id"])  # as the erasure job does, before the rows go
        from assets.gdpr.erasure import execute_erasure

        outcome = execute_erasure(engine, ObjectStorage(), request.id, run_history=history)
        assert outcome.verified, outcome.receipt
        sweep = history.sweeps[KESTREL["id"]]
        assert (sweep.scope, sweep.runs_searched, sweep.runs_deleted) == (USERS_RUNS, 2, 1)
        assert sweep.compute_logs_deleted == 2 and sweep.runs_still_naming_user == 0
        assert "event log" in sweep.record_kinds and "compute logs" in sweep.record_kinds
        remaining = {r.dagster_run.run_id for r in instance.get_run_records()}
        assert remaining == {unrelated.run_id, batch.run_id}
        # the batch's run stays (it names no one), its captured output is gone
        assert captured(batch.run_id) == [] and captured(unrelated.run_id)


@pytest.mark.parametrize("config", ["dagster.yaml", "deploy/dagster.production.yaml"])
def test_ticks_are_purged_within_a_month(config):
    """Dagster keeps successful sensor and schedule ticks forever unless told otherwise."""
    import yaml

    retention = yaml.safe_load((Path(__file__).parents[2] / config).read_text())["retention"]
    with dg.instance_for_test(overrides={"retention": retention}) as instance:
        settings = instance.get_settings("retention")
    assert settings == retention  # the instance took them (their schema validated)
    for kind in ("sensor", "schedule"):
        days = settings[kind]["purge_after_days"]
        by_status = days if isinstance(days, dict) else dict.fromkeys(TICK_STATUSES, days)
        # a status left out keeps Dagster's default: forever
        assert set(by_status) == set(TICK_STATUSES), (kind, by_status)
        assert all(0 < d <= 31 for d in by_status.values()), (kind, by_status)


TICK_STATUSES = ("skipped", "started", "success", "failure")


DAEMON_INSTANCE = """
storage:
  sqlite:
    base_dir: {home}/storage
compute_logs:
  module: dagster.core.storage.local_compute_log_manager
  class: LocalComputeLogManager
  config:
    base_dir: {home}/compute_logs
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 0
telemetry:
  enabled: false
"""
TICKING_SENSORS = ("import_inbox_sensor", "export_request_sensor", "due_erasures_sensor")


@pytest.mark.slow
def test_the_daemons_sensor_ticks_name_no_user(code_location, tmp_path, monkeypatch):
    """The real daemon ticks the sensors (runs stay queued: none may start), and its ticks,
    their cursors, run keys and log lines, and the queued runs name neither user."""
    import os
    import subprocess
    import time

    repo = Path(__file__).parents[2]
    home = tmp_path / "daemon_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAEMON_INSTANCE.format(home=home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("PYTHONPATH", str(repo))
    storage, engine = ObjectStorage(), AppDatabase().engine
    for user in (KESTREL, OSPREY):
        storage.write_bytes(f"imports/inbox/{user['id']}/{user['title']}.json", b"{}")
        request_export(engine, user["id"], "json")
        request_erasure(engine, user["id"], grace=dt.timedelta(0))
    storage.write_bytes(f"imports/inbox/{KESTREL['email']}.json", b"{}")
    dagster = [str(repo / ".venv/bin/dagster"), "sensor", "start", "--start-all"]
    subprocess.run([*dagster, "-w", "workspace.yaml"], cwd=repo, check=True, timeout=300)
    logs = tmp_path / "daemon.log"
    with open(logs, "wb") as out:
        daemon = subprocess.Popen(
            [str(repo / ".venv/bin/dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=repo,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ,
        )
        try:
            with dg.DagsterInstance.from_config(str(home)) as instance:
                deadline = time.monotonic() + 300
                while not _all_ticked(instance) and time.monotonic() < deadline:
                    time.sleep(2)
                assert _all_ticked(instance), logs.read_text()[-3000:]
                leaks: dict[str, list[str]] = {}
                for state in instance.all_instigator_state():
                    found = _found(dg.serialize_value(state))  # the cursor is in it
                    for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id):
                        found += _found(dg.serialize_value(tick))
                    if found:
                        leaks[state.name] = found
                for record in instance.get_run_records():
                    run = record.dagster_run
                    if found := _found(json.dumps([run.run_config, dict(run.tags)])):
                        leaks[f"queued run {run.job_name}"] = found
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
    for path in home.rglob("*"):
        if path.is_file() and (found := _found(path.read_bytes().decode("latin-1"))):
            leaks[f"instance file {path.relative_to(home)}"] = found
    if found := _found(logs.read_text(errors="replace")):
        leaks["daemon output"] = found
    assert not leaks, json.dumps(leaks, indent=1)


def _all_ticked(instance: dg.DagsterInstance) -> bool:
    """Every sensor of TICKING_SENSORS has a finished tick that asked for runs."""
    done = set()
    for state in instance.all_instigator_state():
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
        if any(t.status.value == "SUCCESS" and t.run_keys for t in ticks):
            done.add(state.name)
    return done >= set(TICKING_SENSORS)
