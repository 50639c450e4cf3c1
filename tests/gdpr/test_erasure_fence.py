"""Erasure that holds (issue 14): work in flight cannot write after it (the fence), copies
outside the main storage are found through `FileLocation`, every per-user folder of the
storage layout is covered, erasing twice and retrying a failed erasure both complete. After
each, `tests/gdpr/scan.py` searches every table, every storage place the test used and the
Dagster instance where the test used one (runs, event logs, compute logs,
materializations, check evaluations, ticks, cursors) for the user id, their e-mail and a
text of theirs, and must find nothing."""

from __future__ import annotations

import datetime as dt
import inspect
import socket
import time
import uuid
from dataclasses import dataclass

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from assets.exports.claims import claim_pending_exports
from assets.exports.progress import process_claimed_batch
from assets.exports.queue import request_export
from assets.gdpr import erasure, erasure_verify
from pipelines.cli.main import main as goalport
from resources import schema, storage_layout
from resources.database import AppDatabase
from resources.erasure_fence import erased_users, fence_users
from resources.storage import ObjectStorage
from synthetic.seed import seed_database
from tests.gdpr.scan import personal_needles, scan_everywhere, scan_storage

# A text only the erased user wrote, as messy as real ones.
MARKER = 'Lauf "Kyōto-Marathon" <b>unter 4h</b> ☃ 🏃\u200d♀️ '


@dataclass
class World:
    database: AppDatabase
    storage: ObjectStorage
    victim: str
    other: str
    needles: list[str]

    @property
    def engine(self) -> sa.Engine:
        return self.database.engine


@pytest.fixture
def world(pg_url, tmp_path, monkeypatch) -> World:
    seed_database(pg_url, 3, seed=41, heavy_every=0)
    database = AppDatabase(url=pg_url)
    victim, other, _third = database.all_user_ids()
    marker = MARKER + uuid.uuid4().hex
    goal = schema.goal
    with database.engine.begin() as conn:
        goal_id = conn.execute(
            sa.select(goal.c.id).where(goal.c.userId == victim).order_by(goal.c.id).limit(1)
        ).scalar_one()
        conn.execute(goal.update().where(goal.c.id == goal_id).values(title=marker))
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", storage.resolved_url)
    monkeypatch.setenv("GOALPORT_ERASURE_RETRY_SECONDS", "0.5")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    yield World(database, storage, victim, other, personal_needles(database.engine, victim, marker))
    database.engine.dispose()


def erase_now(world: World) -> erasure.ErasureOutcome:
    request = erasure.request_erasure(world.engine, world.victim, grace=dt.timedelta(0))
    return erasure.execute_erasure(world.engine, world.storage, request.id)


def _sample_arguments(parameters) -> dict:
    samples = {
        "user_id": None,  # set per call
        "extension": "json",
        "exported_at": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "created_at": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "job_id": "job1",
        "suffix": "x",
        "encrypted": True,
        "file_name": "upload.csv",
    }
    return {name: samples[name] for name in parameters if name != "area"}


def test_every_per_user_place_of_the_storage_layout_is_erased(world):
    """Every function of resources/storage_layout.py that names a place of one user is
    called, a file written there, and the erasure must take each away: a prefix added
    later is covered (or this test fails) without anyone remembering erasure."""
    layout = storage_layout
    prefixes = {v for k, v in vars(layout).items() if k.endswith("_PREFIX")}
    assert prefixes - {layout.CATALOG_PREFIX} == set(layout.USER_AREAS)
    keys = [f"{area}/{world.victim}/left-over.bin" for area in layout.USER_AREAS]
    for name, function in vars(layout).items():
        if not inspect.isfunction(function) or function.__module__ != layout.__name__:
            continue
        parameters = inspect.signature(function).parameters
        if "user_id" not in parameters or name == "user_folder":
            continue
        args = _sample_arguments(parameters)
        args["user_id"] = world.victim
        result = function(**args)
        places = list(result.values()) if isinstance(result, dict) else result
        for place in [places] if isinstance(places, str) else places:
            keys.append(place if "." in place.rsplit("/", 1)[-1] else f"{place}/file.bin")
    assert len(keys) >= 12
    for key in keys:
        world.storage.write_bytes(key, b"a file of theirs")
    world.storage.write_bytes(f"exports/{world.other}/theirs.json", b"another user's")

    outcome = erase_now(world)

    assert outcome.verified, outcome.receipt["verification"]
    assert scan_everywhere(world.engine, [world.storage], world.needles) == []
    assert world.storage.list(f"exports/{world.other}") == [f"exports/{world.other}/theirs.json"]


def test_an_export_paused_after_extraction_writes_nothing_once_the_user_is_erased(world):
    """A batch of two users is extracted, then paused (the `after_extraction` hook) while
    the erasure of one of them completes; when the run goes on it writes no file, row,
    audit entry or notification of the erased user, and the other user's export completes."""
    victim_job = request_export(world.engine, world.victim, "json")
    other_job = request_export(world.engine, world.other, "json")
    (batch,) = claim_pending_exports(world.engine)
    assert set(batch.job_ids) == {victim_job, other_job}
    erased: list[erasure.ErasureOutcome] = []

    outcome = process_claimed_batch(
        world.database,
        world.storage,
        batch,
        workers=1,
        after_extraction=lambda: erased.append(erase_now(world)),
    )

    (during,) = erased
    assert during.verified and during.receipt["jobsInFlightCancelled"] == 1
    assert outcome.completed == [other_job], outcome
    assert world.storage.list(f"exports/{world.other}")
    assert scan_everywhere(world.engine, [world.storage], world.needles) == []


def test_a_file_published_just_before_the_erasure_is_deleted_by_its_writer(world, tmp_path):
    """The erasure lands between a file's publication (in a storage the erasure does not
    know of yet) and the row's completion: the writer's final transaction meets the
    tombstone, writes no row and deletes the file itself."""
    from assets.exports.batches import write_batch
    from assets.exports.progress import ExportBatchProgress
    from resources.audit import utc_now

    elsewhere = ObjectStorage(url=str(tmp_path / "elsewhere"))
    request_export(world.engine, world.victim, "json")
    (batch,) = claim_pending_exports(world.engine)
    progress = ExportBatchProgress.load(world.engine, batch.job_ids, batch_id=batch.batch_id)
    extracted = world.database.extract([world.victim])
    progress.started(extracted)
    published = []

    def erase_then_complete(user_id, files):
        published.extend(f.stored.key for f in files if elsewhere.exists(f.stored.key))
        assert erase_now(world).verified
        progress.user_done(user_id, files)

    write_batch(
        extracted,
        elsewhere,
        ["json"],
        exported_at=utc_now(),
        on_user_done=erase_then_complete,
        workers=1,
        key_suffix=progress.key_suffix,
    )

    assert published and progress.outcome.completed == []
    assert scan_everywhere(world.engine, [world.storage, elsewhere], world.needles) == []


def test_the_final_transaction_of_a_writer_refuses_an_erased_user(world):
    """The fence inside a transaction: an erased user's audit row, key row or import job is
    refused even when the writer asked nothing before."""
    from assets.imports.jobs import create_import_job
    from resources.audit import UserErasedError, record_audit
    from resources.keys import KeyVault, new_master_key

    assert erase_now(world).verified
    assert erased_users(world.engine, [world.victim, world.other]) == {world.victim}
    with world.engine.begin() as conn:
        assert fence_users(conn, [world.victim, world.other]) == {world.victim}
    with pytest.raises(UserErasedError), world.engine.begin() as conn:
        record_audit(conn, user_id=world.victim, operation="export")
    with pytest.raises(UserErasedError):
        create_import_job(world.engine, user_id=world.victim, file_name="late.csv")
    vault = KeyVault(database_url=world.database.resolved_url, master_key=new_master_key())
    assert vault.ensure_user_keys([world.victim, world.other]).keys() == {world.other}
    assert scan_everywhere(world.engine, [world.storage], world.needles) == []


def test_out_copies_are_erased_from_where_they_were_written(world, tmp_path, s3_url, monkeypatch):
    """`goalport export --out` (a folder) and `goalport gdpr export --out` (S3) write
    outside the main storage; the erasure, run from the CLI, finds both through their
    recorded locations, and its receipt says what it searched."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    copies = tmp_path / "copies"
    cli = CliRunner()
    result = cli.invoke(goalport, ["export", world.victim, world.other, "--out", str(copies)])
    assert result.exit_code == 0, result.output
    result = cli.invoke(goalport, ["gdpr", "export", world.victim, "--out", s3_url])
    assert result.exit_code == 0, result.output
    assert scan_storage([str(copies), s3_url], world.needles[:1]), "the copies were not written"

    result = cli.invoke(goalport, ["gdpr", "erase", world.victim, "--now"])

    assert result.exit_code == 0, result.output
    assert "other storages (backup destinations, --out and out_url copies): 2" in result.output
    assert "Dagster run history: searched" in result.output
    places = [world.storage, str(copies), s3_url]
    with dg.DagsterInstance.get() as instance:  # DAGSTER_HOME's, which the CLI searched
        assert scan_everywhere(world.engine, places, world.needles, dagster=instance) == []
    assert ObjectStorage(url=str(copies)).list(f"exports/{world.other}"), "another's copy went"


def test_backups_at_a_destination_the_user_left_are_erased(world, s3_url, s3_endpoint, monkeypatch):
    """Backups written to destination A stay there when the user moves to B; erasure finds
    A through the recorded location (and opens it with the user's stored credentials).
    Without DAGSTER_HOME the receipt says the Dagster run history was not searched (it does
    not pretend)."""
    from resources import keys

    monkeypatch.setenv(keys.MASTER_KEY_ENV, keys.new_master_key())  # wraps the credentials
    first, second = f"{s3_url}/dest-a", f"{s3_url}/dest-b"
    secrets = '{"access_key_id": "testing", "secret_access_key": "testing"}'
    cli = CliRunner()
    for args in (
        ["backup", "config", world.victim, "--enable", "--no-encrypt", "--destination",
         f"{first}?endpoint={s3_endpoint}", "--credentials-stdin"],
        ["backup", "run", world.victim],
        ["backup", "config", world.victim, "--destination", f"{second}?endpoint={s3_endpoint}",
         "--credentials-stdin"],
    ):  # fmt: skip
        result = cli.invoke(goalport, args, input=secrets)
        assert result.exit_code == 0, result.output
    assert ObjectStorage(url=first).list(f"backups/{world.victim}")

    result = cli.invoke(goalport, ["gdpr", "erase", world.victim, "--now"])

    assert result.exit_code == 0, result.output
    assert erasure_verify.RUN_HISTORY_NOT_SEARCHED in result.output
    (request,) = erasure.erasure_requests(world.engine, world.victim)
    searched = request.receipt["verification"]["searched"]
    assert erasure_verify.RUN_HISTORY_NOT_SEARCHED in searched
    places = [world.storage, str(first), str(second)]
    assert scan_everywhere(world.engine, places, world.needles) == []


def test_erasing_twice_succeeds_and_reports_nothing_left(world):
    first = erase_now(world)
    assert first.verified and not first.receipt["nothingWasHeld"]
    world.storage.write_bytes(f"gdpr/{world.victim}/late.zip", b"written after the first")

    second = erase_now(world)

    assert second.verified and second.request.id != first.request.id
    assert second.receipt["rowsDeleted"] == {}
    assert second.receipt["storageObjectsDeleted"]["gdpr"] == 1
    third = erase_now(world)
    assert third.verified and third.receipt["nothingWasHeld"]
    assert scan_everywhere(world.engine, [world.storage], world.needles) == []


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_half_failed_erasure_is_retried_by_the_sensor_after_its_back_off(
    world, s3_url, s3_endpoint, monkeypatch
):
    """The S3 endpoint holding a copy is unreachable during the first run: the rows are
    gone, the request fails saying why (the audit log does not name the user) and the
    sensor skips it while it backs off; then it launches a new run (a new run key) that,
    with the endpoint back, completes the erasure."""
    from assets.gdpr.defs import ErasureRunConfig, due_erasures_sensor, erasure_job

    result = CliRunner().invoke(goalport, ["gdpr", "export", world.victim, "--out", s3_url])
    assert result.exit_code == 0, result.output
    erasure.request_erasure(world.engine, world.victim, grace=dt.timedelta(0))
    resources = {"database": world.database, "storage": world.storage}

    with dg.instance_for_test() as instance:

        def tick():
            with dg.build_sensor_context(instance=instance, resources=resources) as context:
                return due_erasures_sensor(context)

        def run(request: dg.RunRequest):
            config = request.run_config["ops"]["erase_users"]["config"]
            return erasure_job.execute_in_process(
                run_config=dg.RunConfig(ops={"erase_users": ErasureRunConfig(**config)}),
                resources=resources,
                instance=instance,
                raise_on_error=False,
            )

        monkeypatch.setenv("GOALPORT_S3_ENDPOINT_URL", _closed_port_url())
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        monkeypatch.setenv("GOALPORT_ERASURE_RETRY_SECONDS", "4")
        first_tick = tick()
        first_run = run(first_tick)
        assert not first_run.success

        (failed,) = erasure.erasure_requests(world.engine, world.victim)
        assert failed.status == erasure.FAILED and failed.attempts == 1
        assert "the erasure stopped" in (failed.error_message or "")
        assert world.victim not in (failed.error_message or "")
        events = instance.all_logs(first_run.run_id)
        assert world.victim not in dg.serialize_value(events), "Dagster's log names the user"
        assert world.database.existing_user_ids([world.victim]) == set()
        assert isinstance(tick(), dg.SkipReason)  # backing off
        with world.engine.connect() as conn:
            audit = schema.data_audit_log
            details = conn.execute(
                sa.select(audit.c.details).where(audit.c.operation == "erase-failed")
            ).scalar_one()
        assert world.victim not in details

        monkeypatch.setenv("GOALPORT_S3_ENDPOINT_URL", s3_endpoint)
        time.sleep(max(0.0, (failed.not_before - dt.datetime.now(dt.UTC)).total_seconds()) + 0.1)
        second_tick = tick()
        assert isinstance(second_tick, dg.RunRequest)
        assert second_tick.run_key != first_tick.run_key
        assert run(second_tick).success

        (done,) = [
            r for r in erasure.erasure_requests(world.engine, world.victim) if r.id == failed.id
        ]
        assert done.status == erasure.COMPLETED and done.receipt["attempts"] == 2
        assert done.receipt["dagsterRecords"]["runsStillNamingUser"] == 0
        places = [world.storage, s3_url]
        assert scan_everywhere(world.engine, places, world.needles, dagster=instance) == []


def test_expiry_removes_gdpr_bundles_orphaned_exports_and_inbox_files(world):
    """GDPR bundles in the main storage expire like exports; an export file whose row
    failed after it was written, and a file left in the inbox, go once past the expiry;
    a completed export's file stays until its own expiry."""
    from assets.exports.expiry import expire_exports
    from assets.exports.progress import process_pending_exports
    from assets.gdpr.bulk import export_gdpr_bundles

    export_gdpr_bundles(world.database, world.storage, [world.victim])
    request_export(world.engine, world.other, "json")
    process_pending_exports(world.database, world.storage, workers=1)
    (kept,) = world.storage.list(f"exports/{world.other}")
    orphan = f"exports/{world.victim}/20250101T000000000000Z-failed.json"
    world.storage.write_bytes(orphan, b"{}")
    world.storage.write_bytes(f"imports/inbox/{world.victim}/tasks.csv", b"a,b\n")
    world.storage.write_bytes(f"imports/uploads/{world.victim}/imp_1/tasks.csv", b"a,b\n")

    soon = expire_exports(world.engine, world.storage)
    assert soon.located_files_deleted == 0 and soon.orphans_deleted == 0

    later = expire_exports(
        world.engine, world.storage, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    )

    assert later.located_files_deleted == 1 and later.orphans_deleted == 3
    assert world.storage.list(f"gdpr/{world.victim}") == []
    assert world.storage.list(f"imports/inbox/{world.victim}") == []
    assert world.storage.list(f"imports/uploads/{world.victim}") == []
    assert world.storage.list(f"exports/{world.victim}") == []
    assert later.files_deleted == 1 and not world.storage.exists(kept)


def test_a_batch_verification_finds_each_leftover_and_names_its_user_only(world):
    """A batch of five users is searched in one pass (Arrow on PostgreSQL); a mention of
    one of them left in another user's text is reported for that user alone, with
    the table, column and row count; the others pass."""
    from assets.gdpr.erasure_verify import ARROW_SCAN_FROM, Subject, verify_erased_many

    assert erase_now(world).verified
    ghosts = [f"ghost-{i}.{uuid.uuid4().hex}" for i in range(ARROW_SCAN_FROM)]
    goal = schema.goal
    with world.engine.begin() as conn:
        conn.execute(
            goal.update()
            .where(goal.c.userId == world.other)
            .values(description=f"shared with {world.victim} (a [regex] ^meta$ test)")
        )
    subjects = [Subject(u) for u in [*ghosts, world.victim]]

    results = verify_erased_many(world.engine, world.storage, subjects)

    assert [r["passed"] for r in results] == [True] * len(ghosts) + [False]
    goals_of_other = results[-1]["rowsFound"]
    assert [(f["table"], f["column"]) for f in goals_of_other] == [("Goal", "description")]
    assert goals_of_other[0]["rows"] >= 1


# A writer of goalport's (`goalport export` in a process of its own) whose write of the
# user's file stalls once the bytes are in the temporary file: the test kills it there.
STALLING_EXPORT = """
import os, sys, time

real_fsync = os.fsync


def stall_on_the_users_file(fd):
    path = os.readlink(f"/proc/self/fd/{fd}")
    if sys.argv[1] in path and os.path.basename(path).startswith(".tmp-"):
        print("stalled", path, flush=True)
        time.sleep(600)
    real_fsync(fd)


os.fsync = stall_on_the_users_file
from pipelines.cli.main import main

main(["export", sys.argv[1], "--format", "json"])
"""


@pytest.mark.slow
def test_a_write_killed_half_way_leaves_nothing_once_the_user_is_erased(world, tmp_path):
    """`goalport export` is killed (SIGKILL) while writing the user's file: its temporary
    file, holding their data, stays in their folder, hidden from listings. The erasure's
    verification sees it (it would not have passed while it was there), the erasure deletes
    it and the folders named after the user, and its receipt says verified."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "stalling_export.py"
    script.write_text(STALLING_EXPORT)
    repo = Path(__file__).parents[2]
    writer = subprocess.Popen(
        [sys.executable, str(script), world.victim],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        line = writer.stdout.readline() if writer.stdout else ""
        assert line.startswith("stalled"), line + (writer.stderr.read() if writer.stderr else "")
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    folder = f"exports/{world.victim}"
    (left,) = world.storage.list_including_unfinished(folder)
    assert os.path.basename(left).startswith(".tmp-") and world.storage.list(folder) == []
    assert any(".tmp-" in hit for hit in scan_storage([world.storage], world.needles))
    before = erasure_verify.verify_erased(world.engine, world.storage, world.victim)
    assert before["objectsFound"] == 1

    outcome = erase_now(world)

    assert outcome.verified, outcome.receipt["verification"]
    assert outcome.receipt["verification"]["objectsFound"] == 0
    assert outcome.receipt["storageObjectsDeleted"]["exports"] == 1
    assert not (Path(world.storage.root) / folder).exists()
    assert scan_everywhere(world.engine, [world.storage], world.needles) == []
