"""The GDPR bundle over HTTP, against a real uvicorn, PostgreSQL, storage and a Dagster
instance: `POST /api/v1/gdpr/export` -> 202 -> `gdpr_request_sensor` claims the request and
its `gdpr_request_job` run writes the bundle -> `GET /api/v1/data/export?jobId=` shows it
completed with a download link -> the link gives a bundle that `goalport verify`'s checker
passes, holding the user's data and no one else's. Dagster's records of the run name no
user, yet an erasure finds the run. The CLI's processing path does the same without Dagster."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import dagster as dg
import sqlalchemy as sa

from assets.exports.notifications import EXPORT_COMPLETED
from assets.gdpr.defs import DagsterRunHistory, gdpr_request_job, gdpr_request_sensor
from assets.gdpr.layout import DATA_JSON
from assets.gdpr.requests import process_pending_gdpr_exports
from assets.gdpr.verify import verify_bundle
from pipelines.definitions import defs
from resources import schema

SCOPES = ("gdpr", "exports")


def _download(client, url: str) -> bytes:
    head = client.head(url)
    assert head.status_code == 200 and head.headers["content-disposition"].startswith("attachment")
    half = int(head.headers["content-length"]) // 2
    first = client.get(url, headers={"Range": f"bytes=0-{half - 1}"})
    rest = client.get(url, headers={"Range": f"bytes={half}-", "If-Range": head.headers["etag"]})
    assert (first.status_code, rest.status_code) == (206, 206)
    return first.content + rest.content


def _check_bundle(data: bytes, owner: str, others: list[str]) -> None:
    report = verify_bundle(data)
    assert report.ok, report.problems
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        manifest = json.loads(bundle.read("manifest.json"))
        assert manifest["userId"] == owner and manifest["completeness"]["complete"]
        document = json.loads(bundle.read(DATA_JSON))
        assert document["userId"] == document["user"]["id"] == owner and document["goals"]
        for name in bundle.namelist():
            text = bundle.read(name)
            assert not any(other.encode() in text for other in others), name


def test_gdpr_bundle_as_an_export_job_made_by_the_sensors_run(
    api, user_ids, make_token, database, storage
):
    alice, bob, carol = user_ids
    with api.client(make_token(alice, scopes=SCOPES), **{"User-Agent": "gdpr-tests/1"}) as client:
        asked = client.post("/api/v1/gdpr/export")
        assert asked.status_code == 202, asked.text
        job_id = asked.json()["jobId"]
        assert asked.json() == {"jobId": job_id, "status": "pending"}
        assert client.post("/api/v1/gdpr/export").json() == asked.json()  # one at a time
        status = client.get("/api/v1/data/export", params={"jobId": job_id}).json()
        assert (status["status"], status["exportType"], status["fileUrl"]) == (
            "pending",
            "gdpr",
            None,
        )

        # The generic export path leaves it to the GDPR sensor.
        from assets.exports.progress import process_pending_exports

        assert process_pending_exports(database, storage, workers=1) == []

        with dg.DagsterInstance.ephemeral() as instance:
            with dg.build_sensor_context(
                instance=instance, resources={"database": database}
            ) as context:
                requests = gdpr_request_sensor(context)
            (request,) = requests
            recorded = json.dumps([request.run_config, request.tags, request.run_key])
            assert job_id in recorded and alice not in recorded
            run = defs.resolve_job_def(gdpr_request_job.name).execute_in_process(
                run_config=request.run_config,
                resources={"database": database, "storage": storage},
                instance=instance,
                tags=request.tags,
            )
            assert run.success
            events = [dg.serialize_value(e) for e in instance.all_logs(run.run_id)]
            assert not any(alice in e for e in events)
            # ... and still an erasure of alice finds the run, through her request row
            history = DagsterRunHistory(instance, engine=database.engine)
            assert run.run_id in history.user_run_ids(alice)
            assert run.run_id not in history.user_run_ids(bob)
            with dg.build_sensor_context(
                instance=instance, resources={"database": database}
            ) as context:
                assert isinstance(gdpr_request_sensor(context), dg.SkipReason)

        status = client.get("/api/v1/data/export", params={"jobId": job_id}).json()
        assert status["status"] == "completed", status["errorMessage"]
        assert status["recordsProcessed"] == status["recordsTotal"] > 0
        assert status["format"] == "gdpr-bundle" and status["expiresAt"]
        assert status["fileUrl"].startswith("/api/v1/data/download/")
        assert "gdpr/" not in status["fileUrl"]
    with api.client(**{"User-Agent": "gdpr-tests/1"}) as anonymous:
        data = _download(anonymous, status["fileUrl"])
    assert len(data) == status["fileSizeBytes"]
    with database.engine.connect() as conn:
        checksum = conn.scalar(
            sa.select(schema.data_export_job.c.checksum).where(
                schema.data_export_job.c.id == job_id
            )
        )
    assert checksum == "sha256:" + hashlib.sha256(data).hexdigest()
    _check_bundle(data, alice, [bob, carol])

    # Bob learns nothing of it.
    with api.client(make_token(bob, scopes=SCOPES)) as other:
        assert other.get("/api/v1/data/export", params={"jobId": job_id}).status_code == 404
        assert other.get("/api/v1/data/export").json()["items"] == []
    with api.client(make_token(alice, scopes=("exports",))) as no_gdpr_scope:
        assert no_gdpr_scope.post("/api/v1/gdpr/export").status_code == 403

    audit, outbox = schema.data_audit_log, schema.notification_outbox
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(audit).where(audit.c.userId == alice)).mappings().all()
        notes = conn.execute(sa.select(outbox).where(outbox.c.userId == alice)).mappings().all()
    by_operation = {(r["operation"], r["operationType"]): r for r in rows}
    asked_row = by_operation["gdpr-export-request", "gdpr"]
    assert (asked_row["ipAddress"], asked_row["userAgent"]) == ("127.0.0.1", "gdpr-tests/1")
    made = by_operation["export", "gdpr"]
    assert json.loads(made["details"])["jobId"] == job_id
    assert ("export-download", "api") in by_operation
    (note,) = [n for n in notes if n["kind"] == EXPORT_COMPLETED]
    payload = json.loads(note["payload"])
    assert (payload["jobId"], payload["exportType"]) == (job_id, "gdpr")


def test_gdpr_requests_without_the_daemon(api, user_ids, make_token, database, storage):
    """`goalport exports process`'s path: several users' requests in one batch, each user's
    own bundle on their own row."""
    jobs = {}
    for user in user_ids:
        with api.client(make_token(user, scopes=SCOPES)) as client:
            jobs[user] = client.post("/api/v1/gdpr/export").json()["jobId"]
    (outcome,) = process_pending_gdpr_exports(database, storage, workers=1)
    assert sorted(outcome.completed) == sorted(jobs.values()) and not outcome.failed
    for user, job_id in jobs.items():
        with api.client(make_token(user, scopes=SCOPES)) as client:
            status = client.get("/api/v1/data/export", params={"jobId": job_id}).json()
            assert status["status"] == "completed"
            data = client.get(status["fileUrl"]).content
        _check_bundle(data, user, [u for u in user_ids if u != user])
    assert process_pending_gdpr_exports(database, storage, workers=1) == []
