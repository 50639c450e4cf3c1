"""The export request queue, against a real PostgreSQL (and SQLite, and S3 on loopback):
requests are claimed by exactly one claimer however many run at once, every row ends
completed with its file, size, checksum and expiry (or failed with the reason), every export
leaves one audit row, download links work until they expire, the cleanup deletes the file
and marks the row, and completion notifications reach a signed webhook."""

import base64
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from assets.exports import defs as export_defs
from assets.exports.batches import ExportRequestError
from assets.exports.claims import ClaimedBatch, claim_pending_exports, group_into_batches
from assets.exports.defs import export_request_sensor
from assets.exports.downloads import (
    DownloadError,
    export_download_link,
    make_download_server,
    make_download_token,
    open_download,
)
from assets.exports.expiry import expire_exports, storage_key_of
from assets.exports.notifications import Backoff, deliver_notifications
from assets.exports.progress import process_claimed_batch, process_pending_exports
from assets.exports.queue import get_export, list_exports, request_export, retry_exports
from pipelines.cli.main import main as goalport_main
from pipelines.definitions import defs
from resources import schema
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from synthetic.seed import seed_database

SECRET = b"test-download-secret"
jobs_table = schema.data_export_job


@pytest.fixture
def pg_url(pg_url):
    """The test's database, seeded with six users."""
    seed_database(pg_url, 6, seed=21, heavy_every=0)
    return pg_url


def users(database: AppDatabase) -> list[str]:
    return database.all_user_ids()


def job_rows(engine: sa.Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(sa.select(jobs_table)).mappings()}


def audit_rows(engine: sa.Engine, operation: str = "export") -> list[dict]:
    table = schema.data_audit_log
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.operation == operation)).mappings()
        return [dict(r) for r in rows]


def claim_and_process(database, storage, **kwargs):
    return process_pending_exports(database, storage, workers=1, **kwargs)


# ---------------------------------------------------------------- requesting


def test_a_request_is_a_pending_row_and_bad_requests_say_what_is_wrong(database):
    user = users(database)[0]
    plain = request_export(database.engine, user, "json", requested_by="app")
    chosen = request_export(
        database.engine, user, "xlsx", modules=["bible", "work"], since="2024-01-01"
    )
    rows = job_rows(database.engine)
    assert rows[plain]["status"] == "pending" and rows[plain]["exportType"] == "full"
    assert rows[plain]["requestedBy"] == "app" and rows[plain]["attempts"] == 0
    assert rows[chosen]["exportType"] == "selective"
    assert json.loads(rows[chosen]["filters"]) == {
        "modules": ["bible", "work"],
        "since": "2024-01-01",
        "until": None,
    }
    with pytest.raises(ExportRequestError, match="unknown user id: nobody"):
        request_export(database.engine, "nobody", "json")
    with pytest.raises(ExportRequestError, match="unknown export format pdf"):
        request_export(database.engine, user, "pdf")
    with pytest.raises(ExportRequestError, match="is after --until"):
        request_export(database.engine, user, "json", since="2025-02-01", until="2025-01-01")
    with pytest.raises(ExportRequestError, match="unknown export type"):
        request_export(database.engine, user, "json", export_type="weekly")
    assert len(job_rows(database.engine)) == 2


def test_batches_group_same_format_and_filters_cap_size_and_never_repeat_a_user():
    rows = [
        {"id": f"j{i}", "userId": user, "format": fmt, "filters": filters}
        for i, (user, fmt, filters) in enumerate(
            [
                ("u1", "json", "{}"),
                ("u2", "json", "{}"),
                ("u1", "json", "{}"),  # same user again: next batch
                ("u3", "csv", "{}"),
                ("u3", "json", '{"modules": ["bible"]}'),
                ("u4", "json", "{}"),
                ("u5", "json", "{}"),
            ]
        )
    ]
    batches = group_into_batches(rows, batch_size=3)
    shapes = [(b.format, b.filters, b.job_ids) for b in batches]
    assert shapes == [
        ("json", {}, ("j0", "j1", "j5")),
        ("json", {}, ("j2", "j6")),
        ("csv", {}, ("j3",)),
        ("json", {"modules": ["bible"]}, ("j4",)),
    ]
    assert len({b.batch_id for b in batches}) == len(batches)
    for batch in batches:
        assert len(set(batch.user_ids)) == len(batch.user_ids) <= 3


def test_claim_takes_only_pending_rows_in_known_formats(database):
    user = users(database)[0]
    first = request_export(database.engine, user, "json")
    with database.engine.begin() as conn:  # a format another area processes
        conn.execute(
            jobs_table.insert().values(
                id="exp_gdpr_bundle",
                userId=user,
                exportType="gdpr",
                format="gdpr-bundle",
                status="pending",
                recordsProcessed=0,
                attempts=0,
                createdAt=dt.datetime.now(dt.UTC),
            )
        )
    batches = claim_pending_exports(database.engine)
    assert [b.job_ids for b in batches] == [(first,)]
    assert claim_pending_exports(database.engine) == []
    rows = job_rows(database.engine)
    assert rows[first]["status"] == "processing" and rows[first]["attempts"] == 1
    assert rows[first]["batchId"] == batches[0].batch_id and rows[first]["startedAt"]
    assert rows["exp_gdpr_bundle"]["status"] == "pending"


# ---------------------------------------------------------------- processing


@pytest.mark.slow
def test_processed_requests_record_file_size_checksum_progress_expiry_and_audit(database, storage):
    alice, bob = users(database)[:2]
    full = request_export(database.engine, alice, "json", requested_by="app:alice")
    bible = request_export(database.engine, bob, "json", modules=["bible"], since="2024-01-01")
    report = request_export(database.engine, alice, "report")
    outcomes = claim_and_process(database, storage)
    assert sorted(j for o in outcomes for j in o.completed) == sorted([full, bible, report])

    for job_id in (full, bible, report):
        job = get_export(database.engine, job_id)
        assert job.status == "completed" and job.error_message is None
        key = storage_key_of(storage, job.file_url)
        data = storage.read_bytes(key)
        assert key.startswith(f"exports/{job.user_id}/") and job.id in key
        assert job.file_size_bytes == len(data)
        assert job.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
        expected = database.extract([job.user_id], job.extract_filter).row_counts()
        assert job.records_processed == job.records_total == sum(expected.values())
        assert job.expires_at - job.completed_at == dt.timedelta(days=7)
        assert job.completeness["passed"] and job.completeness["sha256"] in job.checksum
    assert get_export(database.engine, report).file_url.endswith(".report.html")
    selective = get_export(database.engine, bible)
    assert selective.records_total < sum(database.extract([bob]).row_counts().values())

    audits = {json.loads(a["details"])["jobId"]: a for a in audit_rows(database.engine)}
    assert set(audits) == {full, bible, report}
    first = audits[full]
    assert first["userId"] == alice and first["subjectRef"].startswith("subj_")
    assert first["operationType"] == "full" and first["actor"] == "app:alice"
    assert first["recordCount"] == get_export(database.engine, full).records_total
    assert "Goal" in json.loads(first["dataTypes"])
    with database.engine.connect() as conn:
        email = conn.execute(sa.text('SELECT email FROM "User" WHERE id = :u'), {"u": alice})
        email = email.scalar()
    assert email not in json.dumps([dict(a) for a in audits.values()], default=str)

    history = list_exports(database.engine, alice)
    assert [j.id for j in history] == [report, full]


def test_bad_data_and_vanished_users_fail_their_rows_with_the_reason(database, storage):
    alice, bob, carol = users(database)[:3]
    doomed = request_export(database.engine, alice, "json")
    bad_data = request_export(database.engine, bob, "json")
    kept = request_export(database.engine, carol, "json")
    with database.engine.begin() as conn:
        conn.execute(sa.text('DELETE FROM "User" WHERE id = :u'), {"u": alice})
        conn.execute(
            sa.text('UPDATE "Goal" SET priority = 9 WHERE id = (SELECT min(id) FROM "Goal" '
                    'WHERE "userId" = :u)'),
            {"u": bob},
        )  # fmt: skip
    claim_and_process(database, storage)
    gone = get_export(database.engine, doomed)
    assert gone.status == "failed" and gone.error_message == f"no user with id {alice!r}"
    stopped = get_export(database.engine, bad_data)
    assert stopped.status == "failed" and "priority" in stopped.error_message
    assert stopped.file_url is None and storage.list(f"exports/{bob}") == []
    assert get_export(database.engine, kept).status == "completed"
    assert len(audit_rows(database.engine)) == 1
    kinds = sorted(row["kind"] for row in outbox(database.engine))
    assert kinds == ["export.completed", "export.failed", "export.failed"]


@pytest.mark.slow
def test_a_batch_that_raises_fails_its_rows_and_retry_requeues_them(database, tmp_path):
    user = users(database)[0]
    job_id = request_export(database.engine, user, "csv")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the storage folder should be")
    (outcome,) = claim_and_process(database, ObjectStorage(url=str(blocker)))
    failed = get_export(database.engine, job_id)
    assert failed.status == "failed" and "cannot write" in failed.error_message
    assert outcome.failed == {job_id: failed.error_message}

    with pytest.raises(ExportRequestError, match="only failed or expired"):
        retry_exports(database.engine, [request_export(database.engine, user, "json")])
    (again,) = retry_exports(database.engine, [job_id])
    assert again.status == "pending" and again.error_message is None and again.attempts == 1
    claim_and_process(database, ObjectStorage(url=str(tmp_path / "store")))
    done = get_export(database.engine, job_id)
    assert done.status == "completed" and done.attempts == 2


@pytest.mark.slow
def test_requests_inserted_while_claimers_and_the_sensor_run_are_exported_exactly_once(
    database, storage, monkeypatch
):
    """Four threads insert 32 requests while two in-process claimers and the sensor tick
    concurrently; the sensor's runs then execute. Every request is exported once."""
    # A small cap per tick keeps the number of Dagster runs (seconds each) down.
    monkeypatch.setattr(export_defs, "MAX_REQUESTS_PER_TICK", 5)
    user_ids = users(database)
    inserted: list[str] = []
    inserting = threading.Event()
    inserting.set()
    errors: list[BaseException] = []
    sensor_runs: list[dg.RunRequest] = []

    def insert(worker: int) -> None:
        try:
            for i in range(8):
                user = user_ids[(worker * 5 + i) % len(user_ids)]
                inserted.append(request_export(database.engine, user, "json"))
                time.sleep(0.02)
        except BaseException as exc:
            errors.append(exc)

    def pending() -> int:
        with database.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).where(jobs_table.c.status == "pending")
            ).scalar()

    def claim_locally() -> None:
        try:
            while inserting.is_set() or pending():
                for batch in claim_pending_exports(database.engine):
                    process_claimed_batch(database, storage, batch, workers=1)
                time.sleep(0.3)
        except BaseException as exc:
            errors.append(exc)

    def tick_sensor(instance) -> None:
        # Ticks until it has claimed twice: each batch it claims costs a Dagster run below.
        try:
            cursor, productive = None, 0
            while productive < 2 and (inserting.is_set() or pending()):
                with dg.build_sensor_context(
                    instance=instance,
                    cursor=cursor,
                    resources={"database": database, "storage": storage},
                ) as context:
                    result = export_request_sensor(context)
                if isinstance(result, dg.SensorResult):
                    sensor_runs.extend(result.run_requests)
                    cursor, productive = result.cursor, productive + 1
                time.sleep(0.3)
        except BaseException as exc:
            errors.append(exc)

    with dg.DagsterInstance.ephemeral() as instance:
        inserters = [threading.Thread(target=insert, args=(w,)) for w in range(4)]
        claimers = [threading.Thread(target=claim_locally) for _ in range(2)]
        claimers.append(threading.Thread(target=tick_sensor, args=(instance,)))
        for thread in claimers + inserters:
            thread.start()
        for thread in inserters:
            thread.join()
        inserting.clear()
        for thread in claimers:
            thread.join(timeout=120)
        assert not errors, errors

        export_job = defs.resolve_job_def("export_job")
        for run_request in sensor_runs:
            result = export_job.execute_in_process(
                run_config=run_request.run_config,
                instance=instance,
                tags=run_request.tags,
                resources={"database": database, "storage": storage},
            )
            assert result.success

    rows = job_rows(database.engine)
    assert sorted(rows) == sorted(inserted) and len(inserted) == 32
    assert {r["status"] for r in rows.values()} == {"completed"}
    assert {r["attempts"] for r in rows.values()} == {1}
    by_sensor = [r for r in rows.values() if r["batchId"].startswith("sb_")]
    assert by_sensor and len(by_sensor) < len(rows), "both kinds of claimer took requests"
    assert {r.run_key for r in sensor_runs} == {r["batchId"] for r in by_sensor}
    assert all(r["runId"] for r in by_sensor)

    audited = [json.loads(a["details"])["jobId"] for a in audit_rows(database.engine)]
    assert sorted(audited) == sorted(inserted), "one audit row per export, no more"
    files = storage.list("exports")
    assert len(files) == len(inserted)
    assert sorted(k.rsplit("-", 1)[1].split(".")[0] for k in files) == sorted(inserted)


def test_sqlite_claims_from_many_threads_never_overlap(sqlite_url):
    seed_database(sqlite_url, 3, seed=4, heavy_every=0)
    database = AppDatabase(url=sqlite_url)
    user_ids = database.all_user_ids()
    job_ids = [request_export(database.engine, user_ids[i % 3], "json") for i in range(40)]
    claimed: list[ClaimedBatch] = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            for _ in range(20):
                claimed.extend(claim_pending_exports(database.engine, max_requests=3))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    taken = [job_id for batch in claimed for job_id in batch.job_ids]
    assert sorted(taken) == sorted(job_ids)
    rows = job_rows(database.engine)
    assert {r["status"] for r in rows.values()} == {"processing"}
    database.engine.dispose()


# ---------------------------------------------------------------- downloads and expiry


def test_local_download_token_works_until_expiry_and_cleanup_removes_the_file(database, storage):
    job_id = request_export(database.engine, users(database)[0], "json")
    claim_and_process(database, storage, expires_in=dt.timedelta(hours=1))
    job = get_export(database.engine, job_id)
    key = storage_key_of(storage, job.file_url)

    link = export_download_link(storage, job, secret=SECRET, base_url="http://127.0.0.1:1")
    token = link.url.rsplit("/download/", 1)[1]
    assert link.expires_at == job.expires_at
    download = open_download(token, storage, secret=SECRET)
    assert download.data == storage.read_bytes(key)
    assert download.media_type == "application/json" and download.filename.endswith(".json")

    just_after = job.expires_at + dt.timedelta(seconds=1)
    with pytest.raises(DownloadError, match="expired") as expired:
        open_download(token, storage, secret=SECRET, now=just_after)
    assert expired.value.status == 403
    payload, _, signature = token.partition(".")
    with pytest.raises(DownloadError, match="not valid"):
        open_download(payload + "." + signature[::-1], storage, secret=SECRET)
    with pytest.raises(DownloadError, match="not valid"):
        open_download(token, storage, secret=b"another install's secret")

    assert expire_exports(database.engine, storage).expired == []  # not yet due
    outcome = expire_exports(database.engine, storage, now=just_after)
    assert outcome.expired == [job_id] and outcome.files_deleted == 1
    assert not storage.exists(key)
    assert get_export(database.engine, job_id).status == "expired"
    assert [
        json.loads(a["details"])["jobId"] for a in audit_rows(database.engine, "export_expired")
    ] == [job_id]
    with pytest.raises(DownloadError, match="no longer available") as gone:
        open_download(token, storage, secret=SECRET)
    assert gone.value.status == 404
    with pytest.raises(DownloadError, match="expired: there is nothing"):
        export_download_link(storage, get_export(database.engine, job_id), secret=SECRET)


@pytest.mark.slow
def test_download_server_serves_a_token_until_it_expires(storage):
    stored = storage.write_bytes("exports/u1/20260101T000000000000Z-exp_x.json", b'{"a": 1}')
    server = make_download_server(storage, "127.0.0.1", 0, secret=SECRET)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}/download/"
    try:
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
        token = make_download_token(stored.key, expires, secret=SECRET)
        with urllib.request.urlopen(base + token, timeout=10) as response:
            assert response.read() == b'{"a": 1}'
            assert response.headers["Content-Type"] == "application/json"
            assert "exp_x.json" in response.headers["Content-Disposition"]
        time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 0.6)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + token, timeout=10)
        assert refused.value.code == 403 and b"expired" in refused.value.read()
    finally:
        server.shutdown()
        server.server_close()


def test_s3_presigned_link_fetches_the_file_then_cleanup_deletes_it(database, s3_url):
    """The presigned URL is fetched over HTTP from the S3 endpoint. moto's server does not
    enforce presigned expiry, so after expiry we check what goalport controls: the URL
    states the export's expiry to S3, and the cleanup deletes the object (the URL 404s)."""
    storage = ObjectStorage(url=s3_url)
    job_id = request_export(database.engine, users(database)[0], "csv")
    claim_and_process(database, storage, expires_in=dt.timedelta(hours=2))
    job = get_export(database.engine, job_id)
    assert job.file_url.startswith(s3_url + "/exports/")

    now = dt.datetime.now(dt.UTC)
    link = export_download_link(storage, job, now=now)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link.url).query)
    if "X-Amz-Expires" in query:  # SigV4
        signed_at = dt.datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        signed_until = signed_at.replace(tzinfo=dt.UTC) + dt.timedelta(
            seconds=int(query["X-Amz-Expires"][0])
        )
    else:  # SigV2
        signed_until = dt.datetime.fromtimestamp(int(query["Expires"][0]), dt.UTC)
    assert abs((signed_until - job.expires_at).total_seconds()) <= 2
    with urllib.request.urlopen(link.url, timeout=10) as response:
        data = response.read()
    assert data == storage.read_bytes(storage_key_of(storage, job.file_url))
    assert "sha256:" + hashlib.sha256(data).hexdigest() == job.checksum

    outcome = expire_exports(database.engine, storage, now=job.expires_at)
    assert outcome.expired == [job_id] and outcome.files_deleted == 1
    assert storage.list("exports") == []
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(link.url, timeout=10)
    assert gone.value.code in (403, 404)  # S3 says 403 for a missing key to some signers
    assert get_export(database.engine, job_id).status == "expired"


# ---------------------------------------------------------------- notifications


class _Webhook:
    """A webhook receiver on loopback that records what it is sent."""

    def __init__(self, status: int = 204):
        self.received: list[tuple[dict, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/goalport"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def outbox(engine):
    table = schema.notification_outbox
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table)).mappings()]


def test_completion_writes_the_outbox_and_posts_a_signed_webhook(database, storage, monkeypatch):
    hook = _Webhook()
    key = b"0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("GOALPORT_WEBHOOK_URL", hook.url)
    monkeypatch.setenv("GOALPORT_WEBHOOK_SECRET", "whsec_" + base64.b64encode(key).decode())
    try:
        job_id = request_export(database.engine, users(database)[0], "json")
        claim_and_process(database, storage)
        assert hook.received == []  # delivered in the background, not by the export step
        deliver_notifications(database.engine)
    finally:
        hook.close()
    (row,) = outbox(database.engine)
    assert row["kind"] == "export.completed" and row["status"] == "sent" and row["sentAt"]
    payload = json.loads(row["payload"])
    job = get_export(database.engine, job_id)
    assert payload["jobId"] == job_id and payload["checksum"] == job.checksum
    assert payload["expiresAt"] == job.expires_at.isoformat()

    ((sent_headers, body),) = hook.received
    headers = {k.lower(): v for k, v in sent_headers.items()}  # names are case-insensitive
    assert json.loads(body) == payload
    signed = f"{row['id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert headers["webhook-id"] == row["id"]
    assert headers["x-goalport-event"] == "export.completed"


def test_webhook_failures_stay_in_the_outbox_and_unsigned_hooks_are_never_sent(
    database, storage, monkeypatch
):
    monkeypatch.delenv("GOALPORT_WEBHOOK_URL", raising=False)
    user = users(database)[0]
    request_export(database.engine, user, "json")
    claim_and_process(database, storage)
    (row,) = outbox(database.engine)
    assert row["status"] == "pending" and row["attempts"] == 0  # for the app to read

    broken = _Webhook(status=500)
    try:
        outcome = deliver_notifications(database.engine, url=broken.url, secret="whsec_c2VjcmV0")
        (row,) = outbox(database.engine)
        assert outcome.failed and row["status"] == "pending" and row["attempts"] == 1
        assert "answered 500" in row["lastError"]
        assert not deliver_notifications(
            database.engine, url=broken.url, secret="whsec_c2VjcmV0"
        ).failed  # backing off: the next attempt is stored, 30 s after the failed one
        assert row["nextAttemptAt"] - dt.timedelta(seconds=29) > row["createdAt"]
        outbox_table = schema.notification_outbox
        with database.engine.begin() as conn:  # the back-off is over
            conn.execute(outbox_table.update().values(nextAttemptAt=row["createdAt"]))
        at_once = Backoff(base=dt.timedelta(0))
        unsigned = deliver_notifications(
            database.engine, url=broken.url, secret="", backoff=at_once
        )
        assert "GOALPORT_WEBHOOK_SECRET is not set" in unsigned.failed[row["id"]]
        assert len(broken.received) == 1
    finally:
        broken.close()


# ---------------------------------------------------------------- command line

CLI_DOWNLOAD_SECRET = "cli-secret-of-at-least-32-bytes-long"


def test_cli_requests_processes_lists_shows_and_retries(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("GOALPORT_DOWNLOAD_SECRET", CLI_DOWNLOAD_SECRET)
    monkeypatch.chdir(tmp_path)
    user = AppDatabase(url=pg_url).all_user_ids()[0]
    runner = CliRunner()
    asked = runner.invoke(
        goalport_main, ["request", "export", user, "--format", "report", "--modules", "fitness"]
    )
    assert asked.exit_code == 0, asked.output
    job_id = asked.stdout.strip().splitlines()[-1]
    assert job_id.startswith("exp_")

    processed = runner.invoke(goalport_main, ["exports", "process", "--once", "--workers", "1"])
    assert processed.exit_code == 0, processed.output
    assert f"{job_id}\tcompleted" in processed.stdout

    listed = runner.invoke(goalport_main, ["exports", "list", user])
    assert listed.exit_code == 0
    row = listed.stdout.splitlines()[1].split("\t")
    assert row[:4] == [job_id, "completed", "report", "selective"]

    shown = runner.invoke(goalport_main, ["exports", "show", job_id, "--json"])
    values = json.loads(shown.stdout)
    assert values["status"] == "completed" and values["fileUrl"].endswith(".report.html")
    token = values["downloadUrl"].rsplit("/download/", 1)[1]
    page = open_download(token, ObjectStorage(), secret=CLI_DOWNLOAD_SECRET.encode()).data
    assert page.startswith(b"<!DOCTYPE html>")

    refused = runner.invoke(goalport_main, ["exports", "retry", job_id])
    assert refused.exit_code == 1 and "only failed or expired" in refused.output
    unknown = runner.invoke(goalport_main, ["exports", "show", "exp_nope"])
    assert unknown.exit_code == 1 and "no export job with id 'exp_nope'" in unknown.output
    bad = runner.invoke(goalport_main, ["request", "export", "nobody"])
    assert bad.exit_code == 1 and "unknown user id: nobody" in bad.output
    cleaned = runner.invoke(goalport_main, ["exports", "cleanup"])
    assert cleaned.exit_code == 0 and "0 exports expired" in cleaned.output
