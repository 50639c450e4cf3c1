"""Encrypted export requests over HTTP, against a real uvicorn, PostgreSQL and storage:

- to a recipient (the user's own age public key, made with `age-keygen`): the downloaded
  file opens with the `age` command line and the user's identity, and holds their export;
- with a passphrase, through the Dagster sensor and run: goalport's age decrypts it with the
  passphrase, and so does the `age` command line (given the passphrase on a terminal, a
  pseudo-terminal here); the passphrase is stored only wrapped, wiped when the job ends, and
  appears nowhere: not in a `pg_dump` of the database, nor in a log line, nor in Dagster's
  records; a retried job, its passphrase gone, fails instead of exporting in clear.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pty
import select
import subprocess
import time

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.exports.defs import export_request_sensor
from assets.exports.progress import process_pending_exports
from assets.exports.queue import retry_exports
from pipelines.definitions import defs
from resources import age, keys, schema
from resources.storage import ObjectStorage

PASSPHRASE = "tangerine orbit 7741 quasar"


def _goal_count(database, user_id: str) -> int:
    goal = schema.goal
    with database.engine.connect() as conn:
        return conn.scalar(sa.select(sa.func.count()).where(goal.c.userId == user_id))


def _check_export(plaintext: bytes, database, user_id: str) -> None:
    document = json.loads(plaintext)
    assert document["format"] == "goalport.export" and document["userId"] == user_id
    assert len(document["goals"]) + len(document.get("unattachedGoals", [])) >= 1
    assert _goal_count(database, user_id) >= 1


def _finished(client, job_id: str) -> dict:
    status = client.get("/api/v1/data/export", params={"jobId": job_id}).json()
    assert status["status"] == "completed", status["errorMessage"]
    return status


def test_export_encrypted_to_the_users_recipient_opens_with_the_age_cli(
    api, user_ids, make_token, database, tmp_path
):
    alice = user_ids[0]
    made = subprocess.run(
        ["age-keygen", "-o", str(tmp_path / "key.txt")], capture_output=True, text=True, check=True
    )
    recipient = made.stderr.strip().rsplit(" ", 1)[-1]
    assert recipient.startswith("age1")
    with api.client(make_token(alice)) as client:
        for bad, field in (
            ({"recipient": "age1notakey"}, "encryption.recipient"),
            ({"recipient": "ssh-rsa AAAAB3Nza"}, "encryption.recipient"),
            ({}, "encryption"),
            ({"recipient": recipient, "passphrase": PASSPHRASE}, "encryption"),
        ):
            refused = client.post(
                "/api/v1/data/export",
                json={"exportType": "full", "format": "json", "encryption": bad},
            )
            assert refused.status_code == 422, bad
            assert refused.json()["error"]["field"] == field
        asked = client.post(
            "/api/v1/data/export",
            json={"exportType": "full", "format": "json", "encryption": {"recipient": recipient}},
        )
        assert asked.status_code == 202, asked.text
        job_id = asked.json()["jobId"]
        plain_id = client.post(
            "/api/v1/data/export", json={"exportType": "full", "format": "json"}
        ).json()["jobId"]
        # only the encrypted request is sealed
        outcomes = process_pending_exports(database, api.config.storage, workers=1)
        assert sorted(j for o in outcomes for j in o.completed) == sorted([job_id, plain_id])
        status = _finished(client, job_id)
        data = client.get(status["fileUrl"]).content
        plain = client.get(_finished(client, plain_id)["fileUrl"]).content
    assert data.startswith(b"age-encryption.org/v1\n-> X25519 ")
    assert plain.startswith(b"{") and b"age-encryption" not in plain
    with database.engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.data_export_job).where(schema.data_export_job.c.id == job_id)
        ).one()
    assert row.fileUrl.endswith(f"-{job_id}.json.age")
    assert row.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
    assert json.loads(row.completeness)["passed"] is True
    (tmp_path / "export.age").write_bytes(data)
    opened = subprocess.run(
        ["age", "-d", "-i", str(tmp_path / "key.txt"), str(tmp_path / "export.age")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr
    _check_export(opened.stdout, database, alice)
    assert json.loads(opened.stdout)["goals"] == json.loads(plain)["goals"]


def _age_decrypt_on_a_terminal(path, passphrase: str, timeout: float = 60.0) -> bytes:
    """`age -d FILE` reading the passphrase from its terminal, as a person types it."""
    out = f"{path}.out"
    pid, fd = pty.fork()
    if pid == 0:  # the child: age, with the pseudo-terminal as its terminal
        os.execvp("age", ["age", "-d", "-o", out, str(path)])
    seen, typed = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
                if not typed and b"passphrase" in seen.lower():
                    os.write(fd, passphrase.encode() + b"\r")
                    typed = True
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert typed and os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")
    with open(out, "rb") as handle:
        return handle.read()


def _libpq_url(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)


@pytest.fixture
def master_key(monkeypatch) -> str:
    key = keys.new_master_key()
    monkeypatch.setenv(keys.MASTER_KEY_ENV, key)
    return key


def test_passphrase_export_through_the_sensor_stored_only_wrapped_and_wiped(
    api, user_ids, make_token, database, pg_url, tmp_path, master_key, caplog, monkeypatch
):
    caplog.set_level(logging.DEBUG)
    alice = user_ids[0]
    storage = api.config.storage
    with api.client(make_token(alice)) as client:
        monkeypatch.delenv(keys.MASTER_KEY_ENV)
        no_key = client.post(
            "/api/v1/data/export",
            json={"exportType": "full", "format": "json", "encryption": {"passphrase": PASSPHRASE}},
        )
        assert no_key.status_code == 422 and no_key.json()["error"]["field"] == (
            "encryption.passphrase"
        )
        assert "master key" in no_key.json()["error"]["message"]
        monkeypatch.setenv(keys.MASTER_KEY_ENV, master_key)
        short = client.post(
            "/api/v1/data/export",
            json={"exportType": "full", "format": "json", "encryption": {"passphrase": "short"}},
        )
        assert short.status_code == 422 and short.json()["error"]["field"] == (
            "encryption.passphrase"
        )
        asked = client.post(
            "/api/v1/data/export",
            json={"exportType": "full", "format": "json", "encryption": {"passphrase": PASSPHRASE}},
        )
        assert asked.status_code == 202, asked.text
        job_id = asked.json()["jobId"]
        table = schema.export_encryption
        with database.engine.connect() as conn:
            (row,) = conn.execute(sa.select(table)).all()
        assert (row.jobId, row.kind, row.recipient) == (job_id, "passphrase", None)
        assert row.wrappedPassphrase and PASSPHRASE.encode() not in bytes(row.wrappedPassphrase)

        with dg.instance_for_test() as instance:
            resources = {"database": database, "storage": ObjectStorage(url=str(tmp_path / "x"))}
            with dg.build_sensor_context(instance=instance, resources=resources) as context:
                result = export_request_sensor(context)
            (request,) = result.run_requests
            run = defs.resolve_job_def("export_job").execute_in_process(
                run_config=request.run_config,
                instance=instance,
                tags=request.tags,
                resources={"database": database, "storage": storage},
            )
            assert run.success
            dagster_records = json.dumps([request.run_config, request.tags]) + "".join(
                dg.serialize_value(e) for e in instance.all_logs(run.run_id)
            )
        assert job_id in dagster_records and PASSPHRASE not in dagster_records

        status = _finished(client, job_id)
        data = client.get(status["fileUrl"]).content
    assert data.startswith(b"age-encryption.org/v1\n-> scrypt ")
    _check_export(age.decrypt(data, passphrase=PASSPHRASE), database, alice)
    with pytest.raises(age.AgeError):
        age.decrypt(data, passphrase=PASSPHRASE + "!")
    (tmp_path / "export.age").write_bytes(data)
    _check_export(_age_decrypt_on_a_terminal(tmp_path / "export.age", PASSPHRASE), database, alice)

    # Wiped when the job completed; in no dump of the database, no log line.
    with database.engine.connect() as conn:
        (row,) = conn.execute(sa.select(schema.export_encryption)).all()
    assert row.wrappedPassphrase is None and row.kind == "passphrase"
    dump = subprocess.run(
        ["pg_dump", "--data-only", _libpq_url(pg_url)], capture_output=True, timeout=120, check=True
    ).stdout
    assert job_id.encode() in dump
    assert PASSPHRASE.encode() not in dump and PASSPHRASE.encode().hex().encode() not in dump
    assert PASSPHRASE not in caplog.text

    # An expired job retried has no passphrase left: it fails, and no file is written.
    with database.engine.begin() as conn:
        conn.execute(
            schema.data_export_job.update()
            .where(schema.data_export_job.c.id == job_id)
            .values(status="expired")
        )
    files_before = set(storage.list(f"exports/{alice}"))
    retry_exports(database.engine, [job_id])
    process_pending_exports(database, storage, workers=1)
    with api.client(make_token(alice)) as client:
        failed = client.get("/api/v1/data/export", params={"jobId": job_id}).json()
    assert failed["status"] == "failed" and "passphrase" in failed["errorMessage"]
    assert set(storage.list(f"exports/{alice}")) == files_before
