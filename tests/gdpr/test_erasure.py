"""Erasure removes every trace of one user and nothing of anyone else: after erasing one user
among many, no table holds a row (or a text value) naming them, nothing is left under their
storage prefixes (nor in their own backup destination), every other user's rows and files are
byte-for-byte unchanged, and the receipt in the audit log holds no personal data. Also: the
grace period and cancellation, the sensor and job, resuming an interrupted erasure, a failed
verification, SQLite."""

import datetime as dt
import getpass
import hashlib
import json

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from assets.exports.batches import export_users
from assets.formats.registry import FORMATS
from assets.gdpr import erasure, erasure_verify
from assets.gdpr.bulk import export_gdpr_bundles
from assets.gdpr.defs import ErasureRunConfig, due_erasures_sensor, erasure_job
from pipelines.cli.main import main as goalport
from resources import keys, schema
from resources.audit import new_id, record_audit, subject_ref, utc_now
from resources.database import AppDatabase
from resources.keys import KeyVault
from resources.storage import ObjectStorage
from synthetic.seed import seed_database
from tests.gdpr.scan import scan_everywhere

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def dump_database(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table (reflected), in primary-key order, values as text."""
    reflected = sa.MetaData()
    reflected.reflect(bind=engine)
    dump = {}
    with engine.connect() as conn:
        for table in reflected.sorted_tables:
            if table.name == "alembic_version":
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execute(sa.select(table).order_by(*order)).all()
            dump[table.name] = [
                tuple(
                    (c.name, v.hex() if isinstance(v, bytes) else repr(v))
                    for c, v in zip(table.columns, row, strict=True)
                )
                for row in rows
            ]
    return dump


def mentions(row: tuple, needle: str) -> bool:
    return any(needle in value for _name, value in row)


def storage_snapshot(storage: ObjectStorage) -> dict[str, str]:
    return {k: hashlib.sha256(storage.read_bytes(k)).hexdigest() for k in storage.list()}


def add_goalport_records(engine: sa.Engine, user_id: str, destination: str | None = None) -> None:
    """What goalport holds about a user besides the app's rows: one row in each own table."""
    now = utc_now()

    def row(id_prefix: str, owner: str = "userId", **values) -> dict:
        return {"id": new_id(id_prefix), owner: user_id, "createdAt": now, **values}

    import_job = row("imp_", status="applied", sourceApp="todoist", fileName="my tasks.csv")
    rows = [
        (
            schema.data_export_job,
            row(
                "exp_",
                exportType="full",
                format="json",
                status="completed",
                requestedBy=user_id,
                fileUrl=f"file:///s/exports/{user_id}/a.json",
            ),
        ),
        (schema.data_import_job, import_job),
        (
            schema.import_change,
            row(
                "chg_",
                importJobId=import_job["id"],
                tableName="Goal",
                rowId="g1",
                action="create",
                after=json.dumps({"title": "Run"}),
            ),
        ),
        (
            schema.external_ref,
            row(
                "ext_",
                sourceApp="todoist",
                externalId="123",
                tableName="Goal",
                localId="g1",
                updatedAt=now,
            ),
        ),
        (
            schema.backup_config,
            row(
                "bc_",
                enabled=True,
                frequency="weekly",
                destinationUrl=destination,
                encrypt=True,
                updatedAt=now,
            ),
        ),
        (
            schema.notification_outbox,
            row(
                "ntf_",
                kind="export.completed",
                payload=json.dumps({"userId": user_id}),
                status="sent",
            ),
        ),
    ]
    for visibility in ("private", "public"):
        template = row(
            "tpl_",
            owner="authorId",
            templateKey=new_id("key_"),
            version=1,
            name=f"{visibility} plan",
            visibility=visibility,
            content="{}",
            updatedAt=now,
        )
        rows.append((schema.goal_template, template))
    with engine.begin() as conn:
        for table, values in rows:
            conn.execute(table.insert().values(**values))
        record_audit(
            conn,
            user_id=user_id,
            operation="backup_config",
            operation_type="create",
            actor=user_id,
            details={"config": {"destinationUrl": destination}, "changed": ["enabled"]},
        )


@pytest.fixture
def population(pg_url, tmp_path, monkeypatch):
    """Six users with app data, goalport records, keys, and files of every kind in storage."""
    monkeypatch.setenv(keys.MASTER_KEY_ENV, keys.new_master_key())
    seed_database(pg_url, 6, seed=13, heavy_every=0)
    database = AppDatabase(url=pg_url)
    users = database.all_user_ids()
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    destination = ObjectStorage(url=str(tmp_path / "destination"))
    KeyVault(database_url=pg_url).ensure_user_keys(users)
    for user_id in users:
        add_goalport_records(database.engine, user_id, destination.resolved_url)
        storage.write_bytes(
            f"backups/{user_id}/goalport-backup-1.zip.age", b"age..." + user_id.encode()
        )
        storage.write_bytes(f"imports/inbox/{user_id}/todoist.csv", b"Content\r\nRun\r\n")
        destination.write_bytes(f"backups/{user_id}/goalport-backup-2.zip.age", b"elsewhere")
    export_users(database, storage, users, ["json"])
    export_gdpr_bundles(database, storage, users, workers=1)
    return database, storage, destination, users


def test_erasing_one_user_removes_all_of_theirs_and_nothing_else(population):
    database, storage, destination, users = population
    engine = database.engine
    victim = users[2]
    with engine.connect() as conn:
        email = conn.execute(
            sa.select(schema.user.c.email).where(schema.user.c.id == victim)
        ).scalar()
        progress_rows = conn.execute(
            sa.select(sa.func.count()).where(schema.progress.c.userId == victim)
        ).scalar()
    before = dump_database(engine)
    files_before = storage_snapshot(storage)
    elsewhere_before = storage_snapshot(destination)
    assert any(k.startswith(f"gdpr/{victim}/") for k in files_before)

    request = erasure.request_erasure(engine, victim, grace=dt.timedelta(0))
    outcome = erasure.execute_erasure(engine, storage, request.id)

    assert outcome.verified, outcome.receipt["verification"]
    assert outcome.request.status == "completed" and outcome.request.user_id is None
    after = dump_database(engine)
    for table, rows in after.items():
        leftovers = [row for row in rows if mentions(row, victim) or mentions(row, email)]
        assert not leftovers, f"{table} still names the erased user: {leftovers[:2]}"
    for prefix in ("exports", "backups", "gdpr", "imports/inbox", "imports/plans"):
        assert storage.list(f"{prefix}/{victim}") == []
    assert destination.list(f"backups/{victim}") == []

    # every other user's rows, byte for byte (the erased user's pseudonymised audit entries,
    # their anonymised public template, the request and its receipt aside)
    subject = subject_ref(victim)
    for table, rows in before.items():
        others_before = [r for r in rows if not mentions(r, victim)]
        others_after = [
            r
            for r in after[table]
            if not mentions(r, subject)
            and not (table == "GoalTemplate" and ("authorId", "None") in r)
            and table != "ErasureRequest"
            # the erasure's own notification, which names no one (checked just above)
            and not (table == "NotificationOutbox" and ("kind", "'erasure.completed'") in r)
        ]
        if table == "GoalTemplate":
            others_before = [r for r in others_before if ("authorId", "None") not in r]
        assert others_after == others_before, table
    assert {k: v for k, v in files_before.items() if f"/{victim}/" not in k} == storage_snapshot(
        storage
    )
    assert {
        k: v for k, v in elsewhere_before.items() if f"/{victim}/" not in k
    } == storage_snapshot(destination)

    receipt = outcome.receipt
    assert receipt["rowsDeleted"]["Progress"] == progress_rows
    assert receipt["rowsDeleted"]["User"] == 1 and receipt["keyDestroyed"]
    assert receipt["templatesDeleted"] == 1 and receipt["templatesAnonymised"] == 1
    assert receipt["storageObjectsDeleted"] == {
        "exports": 1,
        "backups": 1,
        "gdpr": 1,
        "imports/inbox": 1,
        "imports/plans": 0,
        "imports/uploads": 0,
        "recordedLocations": 0,
        "otherStorages": 1,
    }
    assert (
        receipt["verification"]["rowsFound"] == [] and receipt["verification"]["objectsFound"] == 0
    )
    assert KeyVault(database_url=database.resolved_url).recipient(victim) is None
    with engine.connect() as conn:
        logged = conn.execute(
            sa.select(schema.data_audit_log).where(schema.data_audit_log.c.subjectRef == subject)
        ).all()
    receipts = [r for r in logged if r.operation == "erase"]
    assert len(receipts) == 1 and receipts[0].userId is None
    assert json.loads(receipts[0].details)["requestId"] == request.id
    assert {r.operation for r in logged} >= {"export", "backup_config", "erase"}
    for row in logged:  # the pseudonymised history keeps what was done, never about whom
        text = json.dumps([str(v) for v in row])
        assert victim not in text and email not in text and destination.resolved_url not in text


def test_mentions_in_other_users_audit_entries_are_scrubbed(pg_url, tmp_path):
    seed_database(pg_url, 3, seed=4, heavy_every=0)
    database = AppDatabase(url=pg_url)
    victim, other, _ = database.all_user_ids()
    with database.engine.begin() as conn:
        record_audit(
            conn,
            user_id=other,
            operation="template",
            actor=victim,
            details={"sharedWith": [victim], "note": f"asked by {victim}"},
        )
    request = erasure.request_erasure(database.engine, victim, grace=dt.timedelta(0))
    outcome = erasure.execute_erasure(database.engine, ObjectStorage(url=str(tmp_path)), request.id)
    assert outcome.verified
    with database.engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.data_audit_log).where(schema.data_audit_log.c.userId == other)
        ).one()
    assert row.actor == erasure.ERASED
    assert json.loads(row.details) == {"sharedWith": ["[erased]"], "note": "asked by [erased]"}


@pytest.mark.slow
def test_grace_period_cancel_and_the_cli(pg_url, tmp_path, monkeypatch):
    seed_database(pg_url, 3, seed=6, heavy_every=0)
    database = AppDatabase(url=pg_url)
    user_id = database.all_user_ids()[0]
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path))
    cli = CliRunner()

    result = cli.invoke(goalport, ["gdpr", "erase", user_id, "--grace-days", "7"])
    assert result.exit_code == 0, result.output
    assert "gdpr cancel" in result.output
    (request,) = erasure.erasure_requests(database.engine, user_id)
    assert request.status == "pending"
    assert erasure.due_erasure_requests(database.engine) == []
    with pytest.raises(erasure.ErasureError, match="grace period"):
        erasure.execute_erasure(database.engine, ObjectStorage(url=str(tmp_path)), request.id)

    result = cli.invoke(goalport, ["gdpr", "cancel", user_id, "--by", "support agent 7"])
    assert result.exit_code == 0 and "cancelled" in result.output
    result = cli.invoke(goalport, ["gdpr", "cancel", user_id])
    assert result.exit_code == 1 and "no pending erasure" in result.output
    assert database.existing_user_ids([user_id]) == {user_id}

    result = cli.invoke(goalport, ["gdpr", "erase", user_id, "--now"])
    assert result.exit_code == 0, result.output
    assert "verified:" in result.output
    result = cli.invoke(goalport, ["gdpr", "status", user_id])
    assert result.exit_code == 0, result.output
    assert "not in the database" in result.output
    assert (
        "cancelled" in result.output
        and "completed" in result.output
        and "verified: yes" in result.output
    )
    result = cli.invoke(goalport, ["gdpr", "erase", "nobody"])  # accepted: files may remain
    assert result.exit_code == 0 and "no table row names nobody" in result.output

    # who asked and who cancelled stay in the audit log, under the pseudonym only
    with database.engine.connect() as conn:
        entries = conn.execute(
            sa.select(schema.data_audit_log)
            .where(schema.data_audit_log.c.subjectRef == request.subject_ref)
            .where(schema.data_audit_log.c.operation.like("erasure-%"))
            .order_by(schema.data_audit_log.c.createdAt)
        ).all()
    assert [(e.operation, e.actor) for e in entries] == [
        ("erasure-request", f"operator {getpass.getuser()} (goalport CLI)"),
        ("erasure-cancel", "support agent 7"),
        ("erasure-request", f"operator {getpass.getuser()} (goalport CLI)"),
    ]
    assert {e.userId for e in entries} == {None}
    assert all(json.loads(e.details)["requestId"].startswith("era_") for e in entries)


@pytest.mark.slow
def test_the_sensor_launches_due_erasures_and_the_job_carries_them_out(pg_url, tmp_path):
    seed_database(pg_url, 4, seed=8, heavy_every=0)
    database = AppDatabase(url=pg_url)
    first, second, later, _ = database.all_user_ids()
    for user_id in (first, second):
        erasure.request_erasure(database.engine, user_id, grace=dt.timedelta(0))
    erasure.request_erasure(database.engine, later, grace=dt.timedelta(days=3))
    resources = {"database": database, "storage": ObjectStorage(url=str(tmp_path))}

    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            run_request = due_erasures_sensor(context)
        assert isinstance(run_request, dg.RunRequest)
        config = run_request.run_config["ops"]["erase_users"]["config"]
        assert len(config["request_ids"]) == 2
        result = erasure_job.execute_in_process(
            run_config=dg.RunConfig(ops={"erase_users": ErasureRunConfig(**config)}),
            resources=resources,
            instance=instance,
        )
        assert result.success
        assert result.output_for_node("erase_users") == 2
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            assert isinstance(due_erasures_sensor(context), dg.SkipReason)
    assert database.existing_user_ids([first, second, later]) == {later}


def test_an_interrupted_erasure_resumes_and_cleans_the_remembered_destination(population):
    database, storage, destination, users = population
    victim = users[0]
    request = erasure.request_erasure(database.engine, victim, grace=dt.timedelta(0))
    erasure._delete_rows(database.engine, request, utc_now())  # then the process died
    assert erasure.get_erasure_request(database.engine, request.id).status == "erasing"
    assert destination.list(f"backups/{victim}")
    assert erasure.due_erasure_requests(database.engine) == []  # it may still be running
    later = utc_now() + erasure.RESUME_AFTER + dt.timedelta(minutes=1)
    (due,) = erasure.due_erasure_requests(database.engine, now=later)

    (outcome,) = erasure.execute_due_erasures(database.engine, storage, [due.id])

    assert outcome.request.id == request.id and outcome.verified
    assert destination.list(f"backups/{victim}") == [] and storage.list(f"gdpr/{victim}") == []
    receipt = erasure.get_erasure_request(database.engine, request.id).receipt
    assert "destinations" not in receipt and receipt["rowsDeleted"]["User"] == 1


def test_a_trace_left_elsewhere_fails_verification_and_says_where(pg_url, tmp_path):
    seed_database(pg_url, 3, seed=9, heavy_every=0)
    database = AppDatabase(url=pg_url)
    victim, other, _ = database.all_user_ids()
    with database.engine.begin() as conn:
        conn.execute(
            schema.goal.update()
            .where(schema.goal.c.userId == other)
            .values(description=f"shared with {victim}")
        )
    request = erasure.request_erasure(database.engine, victim, grace=dt.timedelta(0))
    outcome = erasure.execute_erasure(database.engine, ObjectStorage(url=str(tmp_path)), request.id)
    assert not outcome.verified
    assert outcome.request.status == "failed"
    assert "Goal.description" in outcome.request.error_message
    assert victim not in outcome.request.error_message
    assert database.existing_user_ids([victim]) == set()


@pytest.mark.slow
def test_a_declined_import_preview_is_erased_with_the_user(pg_url, tmp_path, monkeypatch):
    """The plan a preview stores (imports/plans/<user>/) waits there when the person says
    no; erasing the user removes it, and verification looks there too."""
    seed_database(pg_url, 3, seed=21, heavy_every=0)
    database = AppDatabase(url=pg_url)
    victim, other, _ = database.all_user_ids()
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", storage.resolved_url)
    for user_id in (victim, other):
        tables = database.extract([user_id]).per_user()[user_id]
        path = tmp_path / f"{user_id}.json"
        path.write_bytes(FORMATS["json"].render(tables, user_id=user_id, exported_at=NOW))
        with database.engine.begin() as conn:  # so that the file brings something back
            conn.execute(schema.progress.delete().where(schema.progress.c.userId == user_id))
        declined = CliRunner().invoke(
            goalport, ["import", str(path), "--user", user_id], input="n\n"
        )
        assert declined.exit_code == 0 and "not applied" in declined.output, declined.output
    (plan,) = storage.list(f"imports/plans/{victim}")
    assert plan.endswith(".plan") and storage.list(f"imports/plans/{other}")
    with database.engine.connect() as conn:
        email = conn.execute(
            sa.select(schema.user.c.email).where(schema.user.c.id == victim)
        ).scalar_one()

    request = erasure.request_erasure(database.engine, victim, grace=dt.timedelta(0))
    outcome = erasure.execute_erasure(database.engine, storage, request.id)

    assert outcome.verified, outcome.receipt["verification"]
    assert scan_everywhere(database.engine, [storage], [victim, email]) == []
    assert storage.list(f"imports/plans/{victim}") == []
    assert storage.list(f"imports/plans/{other}"), "another user's plan was deleted"
    assert outcome.receipt["storageObjectsDeleted"]["imports/plans"] == 1
    assert outcome.receipt["verification"]["storagePrefixesChecked"] == 6

    storage.write_bytes(plan, b"left behind")
    again = erasure_verify.verify_erased(database.engine, storage, victim)
    assert not again["passed"] and again["objectsFound"] == 1


def test_erasure_on_sqlite(sqlite_url, tmp_path):
    seed_database(sqlite_url, 3, seed=3, heavy_every=0)
    database = AppDatabase(url=sqlite_url)
    victim = database.all_user_ids()[1]
    storage = ObjectStorage(url=str(tmp_path / "s"))
    add_goalport_records(database.engine, victim)
    export_gdpr_bundles(database, storage, database.all_user_ids(), workers=1)
    request = erasure.request_erasure(database.engine, victim, grace=dt.timedelta(0), now=NOW)
    outcome = erasure.execute_erasure(database.engine, storage, request.id)
    assert outcome.verified, outcome.receipt
    assert outcome.receipt["storageObjectsDeleted"]["gdpr"] == 1
    assert len(storage.list("gdpr")) == 2


@pytest.mark.slow
def test_erasure_deletes_the_dagster_runs_that_name_the_user_and_only_those(pg_url, tmp_path):
    from assets.exports.defs import ExportConfig, export_request_sensor
    from assets.exports.queue import request_export
    from assets.gdpr.defs import DagsterRunHistory
    from pipelines.definitions import defs

    seed_database(pg_url, 3, seed=21, heavy_every=0)
    database = AppDatabase(url=pg_url)
    victim, other, third = database.all_user_ids()
    resources = {"database": database, "storage": ObjectStorage(url=str(tmp_path))}
    export_job = defs.resolve_job_def("export_job")

    with dg.instance_for_test() as instance:

        def export(run_config: dict) -> str:
            result = export_job.execute_in_process(
                run_config=run_config, resources=resources, instance=instance
            )
            assert result.success
            return result.run_id

        def by_hand(*user_ids: str) -> str:
            config = ExportConfig(user_ids=list(user_ids), formats=["json"])
            return export(dg.RunConfig(ops={"extracted_batch": config}))

        named = by_hand(victim, other)  # launched naming the victim: must go
        others_only = by_hand(other)
        for user_id in (victim, third):  # a request batch, launched by the sensor
            request_export(database.engine, user_id, "json")
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            (batch_request,) = export_request_sensor(context).run_requests
        from_requests = export(batch_request.run_config)
        history = DagsterRunHistory(instance)
        assert history.runs_mentioning(victim) == [named]
        assert sorted(history.runs_mentioning(other)) == sorted([named, others_only])

        request = erasure.request_erasure(database.engine, victim, grace=dt.timedelta(0))
        erased = erasure_job.execute_in_process(
            run_config=dg.RunConfig(
                ops={"erase_users": ErasureRunConfig(request_ids=[request.id])}
            ),
            resources=resources,
            instance=instance,
        )
        assert erased.success
        remaining = {record.dagster_run.run_id for record in instance.get_run_records()}
        assert remaining == {others_only, from_requests, erased.run_id}
        assert history.runs_mentioning(victim) == []
        assert instance.all_logs(named) == []  # its events went with it

    receipt = erasure.get_erasure_request(database.engine, request.id).receipt
    dagster = receipt["dagsterRecords"]
    assert (dagster["scope"], dagster["runsDeleted"], dagster["runsStillNamingUser"]) == (
        "the user's runs",
        1,
        0,
    )
    # the run naming them and the request batch's run; not the others' run nor the erasure's
    assert dagster["runsSearched"] == 2 and "event log" in dagster["recordKinds"]
    assert "runsDeleted" not in receipt and "dagsterRunIds" not in receipt
    assert receipt["verification"]["runHistorySearched"]
    assert receipt["verification"]["runsFound"] == 0 and receipt["verification"]["passed"]
    assert victim not in json.dumps(receipt)


def test_a_resumed_erasure_in_a_new_process_sweeps_the_runs_found_before_the_rows_went(
    pg_url, tmp_path
):
    """An export run in flight failed with an error quoting the user's storage key; the
    only way to it is the user's export row (its batch id; no audit entry yet). The erasure
    is interrupted right after step 1 (the rows are gone); a new process, with a new
    DagsterRunHistory that cannot find the run through the database any more, resumes it
    from the request's `erasing` state and still deletes that run."""
    from assets.exports.claims import claim_pending_exports
    from assets.exports.defs import BATCH_TAG
    from assets.exports.queue import request_export
    from assets.gdpr.defs import USERS_RUNS, DagsterRunHistory

    seed_database(pg_url, 2, seed=23, heavy_every=0)
    database = AppDatabase(url=pg_url)
    victim, other = database.all_user_ids()
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    request_export(database.engine, victim, "json")
    (batch,) = claim_pending_exports(database.engine)

    @dg.op
    def write_export():
        raise OSError(f"disk full writing exports/{victim}/export.json")

    @dg.job
    def failing_export():
        write_export()

    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        failed = failing_export.execute_in_process(
            instance=instance, tags={BATCH_TAG: batch.batch_id}, raise_on_error=False
        )
        kept = failing_export.execute_in_process(instance=instance, raise_on_error=False)
        assert victim in dg.serialize_value(instance.all_logs(failed.run_id))
        request = erasure.request_erasure(database.engine, victim, grace=dt.timedelta(0))
        first_process = DagsterRunHistory(instance, engine=database.engine)
        run_ids = first_process.remember(victim)
        assert run_ids == [failed.run_id]
        erasure._delete_rows(database.engine, request, utc_now(), run_ids)  # then it died
        interrupted = erasure.get_erasure_request(database.engine, request.id)
        assert interrupted.status == erasure.ERASING
        assert interrupted.receipt["dagsterRunIds"] == [failed.run_id]

        reopened = dg.DagsterInstance.from_ref(instance.get_ref())
        second_process = DagsterRunHistory(reopened, engine=database.engine)
        assert failed.run_id not in second_process.user_run_ids(victim)  # the rows are gone
        outcome = erasure.execute_erasure(
            database.engine, storage, request.id, run_history=second_process
        )

        assert outcome.verified, outcome.receipt
        dagster = outcome.receipt["dagsterRecords"]
        assert (dagster["scope"], dagster["runsSearched"], dagster["runsDeleted"]) == (
            USERS_RUNS,
            1,
            1,
        )
        remaining = {r.dagster_run.run_id for r in instance.get_run_records()}
        assert remaining == {kept.run_id}
        assert (
            "dagsterRunIds" not in erasure.get_erasure_request(database.engine, request.id).receipt
        )
    assert other in database.all_user_ids()
    database.engine.dispose()
