"""Backup actions over HTTP, against a real uvicorn, PostgreSQL, storage and a Dagster
instance: "back up now" queues a row that `backup_request_sensor` turns into a real
`backup_job` run (never work in the request); the backup restores through the import
preview (decrypted with the user's key), is confirmed, applied and undone; the user's own
key, handed out only after the e-mail address is typed again, opens the backup with the
standard `age` command line, without goalport. Another user gets 404 for all of it."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.backups.defs import backup_job, backup_request_sensor
from assets.exports.expiry import storage_key_of
from assets.imports.apply import apply_import
from assets.imports.preview import preview_job_file
from pipelines.definitions import defs
from resources import keys, schema
from resources.keys import KeyVault

SCOPES = ("backups", "imports")


@pytest.fixture
def master_key(monkeypatch) -> str:
    key = keys.new_master_key()
    monkeypatch.setenv(keys.MASTER_KEY_ENV, key)
    return key


def _email(database, user_id: str) -> str:
    with database.engine.connect() as conn:
        return conn.scalar(sa.select(schema.user.c.email).where(schema.user.c.id == user_id))


def _goal_titles(database, user_id: str) -> dict[str, str]:
    goal = schema.goal
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(goal.c.id, goal.c.title).where(goal.c.userId == user_id))
        return dict(rows.all())


def _run_requested_backups(database, storage, pg_url, instance) -> list[dg.RunRequest]:
    """One tick of `backup_request_sensor`, then each run it asks for, in process."""
    vault = KeyVault(database_url=pg_url)
    with dg.build_sensor_context(
        instance=instance, resources={"database": database, "keys": vault}
    ) as context:
        result = backup_request_sensor(context)
    requests = result if isinstance(result, list) else []
    job = defs.resolve_job_def(backup_job.name)
    for request in requests:
        run = job.execute_in_process(
            run_config=request.run_config,
            resources={"database": database, "storage": storage, "keys": vault},
            instance=instance,
            tags=request.tags,
        )
        assert run.success
    vault.close()
    return requests


def test_back_up_now_restore_through_the_preview_and_the_key_opens_it_with_age(
    api, user_ids, make_token, database, storage, pg_url, master_key, tmp_path
):
    alice, bob = user_ids[0], user_ids[1]
    with api.client(make_token(alice, scopes=SCOPES)) as client:
        queued = client.post("/api/v1/backups/run")
        assert queued.status_code == 202, queued.text
        body = queued.json()
        assert body["status"] == "pending" and body["queued"] is True
        job_id = body["jobId"]
        again = client.post("/api/v1/backups/run").json()
        assert again == {"jobId": job_id, "status": "pending", "queued": False}
        listed = client.get("/api/v1/backups").json()
        assert listed["items"] == []
        assert [(r["jobId"], r["status"]) for r in listed["requests"]] == [(job_id, "pending")]

        with dg.DagsterInstance.ephemeral() as instance:
            requests = _run_requested_backups(database, storage, pg_url, instance)
            assert len(requests) == 1
            # Dagster's records name the request rows and the batch, never the user
            recorded = json.dumps([requests[0].run_config, requests[0].tags, requests[0].run_key])
            assert job_id in recorded and alice not in recorded
            assert _run_requested_backups(database, storage, pg_url, instance) == []

        listed = client.get("/api/v1/backups").json()
        assert [(r["jobId"], r["status"]) for r in listed["requests"]] == [(job_id, "completed")]
        (backup,) = listed["items"]
        assert backup["id"] == job_id and backup["verified"] and backup["encrypted"]
        with database.engine.connect() as conn:
            file_url = conn.scalar(
                sa.select(schema.data_export_job.c.fileUrl).where(
                    schema.data_export_job.c.id == job_id
                )
            )
        encrypted = storage.read_bytes(storage_key_of(storage, file_url))
        assert encrypted.startswith(b"age-encryption.org/v1")

        # Bob sees none of it and cannot restore alice's backup.
        with api.client(make_token(bob, scopes=SCOPES)) as other:
            assert other.get("/api/v1/backups").json() == {"items": [], "requests": []}
            assert other.post(f"/api/v1/backups/{job_id}/restore").status_code == 404
            refused = other.post(
                "/api/v1/backups/key", json={"confirmEmail": _email(database, alice)}
            )
            assert refused.status_code == 422 and refused.json()["error"]["field"] == "confirmEmail"

        # Change alice's data after the backup: the restore brings the titles back.
        before = _goal_titles(database, alice)
        changed_id = sorted(before)[0]
        with database.engine.begin() as conn:
            conn.execute(
                schema.goal.update()
                .where(schema.goal.c.id == changed_id)
                .values(title="renamed after the backup")
            )
        restore = client.post(f"/api/v1/backups/{job_id}/restore", json={"mode": "merge"})
        assert restore.status_code == 202, restore.text
        import_id = restore.json()["jobId"]
        assert client.get(f"/api/v1/data/import/{import_id}").json()["status"] == "pending"
        preview_job_file(database, storage, import_id)  # what uploaded_imports_sensor's run does
        preview = client.get(f"/api/v1/data/import/{import_id}").json()
        assert preview["status"] == "previewed", preview["errorMessage"]
        assert preview["detectedSource"]["encrypted"] is True
        assert preview["counts"]["Goal"]["update"] == 1
        changes = client.get(f"/api/v1/data/import/{import_id}/changes").json()["items"]
        goal_changes = [c for c in changes if c["table"] == "Goal" and c["action"] == "update"]
        assert [c["id"] for c in goal_changes] == [changed_id]
        assert goal_changes[0]["fields"]["title"] == [
            "renamed after the backup",
            before[changed_id],
        ]
        assert client.post(f"/api/v1/data/import/{import_id}/confirm").status_code == 200
        apply_import(database, storage, import_id, actor="dagster")  # confirmed_imports_sensor's
        assert _goal_titles(database, alice) == before
        assert client.post(f"/api/v1/data/import/{import_id}/undo").json()["status"] == "undone"
        assert _goal_titles(database, alice)[changed_id] == "renamed after the backup"
        bad_mode = client.post(f"/api/v1/backups/{job_id}/restore", json={"mode": "overwrite"})
        assert bad_mode.status_code == 422 and bad_mode.json()["error"]["field"] == "mode"
        assert client.post("/api/v1/backups/exp_nope/restore").status_code == 404

        # The key: only after the e-mail address is typed again.
        wrong = client.post("/api/v1/backups/key", json={"confirmEmail": "someone@else.example"})
        assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "confirmEmail"
        assert client.post("/api/v1/backups/key", json={}).status_code == 422
        handed = client.post(
            "/api/v1/backups/key", json={"confirmEmail": "  " + _email(database, alice).upper()}
        )
        assert handed.status_code == 200, handed.text
        assert handed.headers["cache-control"] == "no-store"
        key = handed.json()
        assert (
            key["identity"].startswith("AGE-SECRET-KEY-1")
            and key["identity"] in key["identityFile"]
        )
        assert key["recipient"].startswith("age1") and "erase" in key["warning"]

    # The standard age tool opens the backup with the identity alone.
    assert shutil.which("age"), "the age command line is installed by `make test` (system-deps)"
    (tmp_path / "key.txt").write_text(key["identityFile"])
    (tmp_path / "backup.age").write_bytes(encrypted)
    opened = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "key.txt"), str(tmp_path / "backup.age")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr
    with zipfile.ZipFile(io.BytesIO(opened.stdout)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["userId"] == alice
    # Another user's key does not open it.
    bob_vault = KeyVault(database_url=pg_url)
    bob_vault.ensure_user_key(bob)
    (tmp_path / "bob.txt").write_text(bob_vault.identity_file(bob))
    bob_vault.close()
    not_bob = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "bob.txt"), str(tmp_path / "backup.age")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert not_bob.returncode != 0

    # Audited, and the secret is in no audit row.
    audit = schema.data_audit_log
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(audit).where(audit.c.userId == alice)).mappings().all()
    operations = {r["operation"] for r in rows}
    assert {"backup-request", "backup-restore-request", "backup-key-export"} <= operations
    assert "backup-key-refused" in operations
    assert not any(key["identity"] in json.dumps(dict(r), default=str) for r in rows)
