"""Backups at users' own destinations end to end, through the `goalport` CLI, against a real
server on loopback for each kind (S3, Azure Blob, GCS, WebDAV, SFTP): configure (the secret
given once on stdin, tested before saving) -> backup -> list -> restore drill -> retention ->
erasure, and a credential that stops working: the backup fails with the reason on its job
row and a notification, and nothing that looks like a complete backup is left."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from pipelines.cli.main import main
from resources import keys, schema
from resources.audit import subject_ref
from resources.database import AppDatabase
from resources.destinations.storage import open_destination
from synthetic.load import load_population
from synthetic.population import generate_population
from tests.destinations.servers import free_port

SERVERS = ["s3_auth_server", "azurite_server", "gcs_server", "webdav_server", "ssh_server"]


@pytest.fixture(params=SERVERS)
def server(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def master(monkeypatch) -> str:
    key = keys.new_master_key()
    monkeypatch.setenv(keys.MASTER_KEY_ENV, key)
    return key


@pytest.fixture
def users(pg_url, tmp_path, monkeypatch, master) -> list[str]:
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    load_population(engine, generate_population(2, seed=5, heavy_every=0))
    engine.dispose()
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "store"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    database = AppDatabase(url=pg_url)
    yield database.all_user_ids()
    database.engine.dispose()


def goalport(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def ok(*args: str, input: str | None = None) -> str:
    result = goalport(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def configure(user: str, url: str, secrets: dict, *more: str) -> str:
    result = goalport(
        "backup", "config", user, "--destination", url, "--credentials-stdin", *more,
        input=json.dumps(secrets),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "destination tested" in result.stderr
    return result.output


def backed_up(user: str) -> str:
    (line,) = ok("backup", "run", user).strip().splitlines()
    _user, state, _records, _size, url = line.split("\t")
    assert state == "verified"
    return url


def rows(pg_url: str, table: sa.Table, *where) -> list[sa.Row]:
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        found = conn.execute(sa.select(table).where(*where)).all()
    engine.dispose()
    return found


def place_of(pg_url: str, user: str, url: str):
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    store = open_destination(engine, keys.KeyVault(), user, url)
    return store, engine


def test_backup_list_restore_retention_revocation_erasure(server, users, pg_url):
    """Two users at their own places on one server: backups, listing, the restore drill and
    retention for the first; the second's credential is revoked and a backup run of both
    fails only theirs (reason on the row, a notification); erasing the first empties their
    place and forgets their credentials."""
    user, other = users
    url, secrets = server.new_place()
    configure(user, url, secrets, "--keep-last", "1")
    stored = rows(pg_url, schema.destination_credential)
    assert len(stored) == 1 and stored[0].subjectRef == subject_ref(user)
    assert all(v.encode() not in bytes(stored[0].wrappedSecrets) for v in secrets.values())

    first = backed_up(user)
    second = backed_up(user)
    base = url.partition("?")[0]
    assert first.startswith(f"{base}/backups/{user}/goalport-backup-")
    assert first.partition("?")[0].endswith(".zip.age")
    listed = ok("backup", "list", user)
    assert second in listed and first not in listed  # retention kept the last one
    assert "verified" in ok("backup", "restore", second, "--user", user, "--verify-only")
    jobs = {r.fileUrl: r.status for r in rows(pg_url, schema.data_export_job)}
    assert jobs == {first: "expired", second: "completed"}

    other_url, other_secrets = server.new_place()
    configure(other, other_url, other_secrets)
    server.revoke(other_url)
    result = goalport("backup", "run", user, other)
    assert result.exit_code == 1
    assert f"{other}\tFAILED\t" in result.stderr
    assert "refused goalport's credentials" in result.stderr
    assert all(v not in result.output for v in other_secrets.values())
    (failed,) = rows(pg_url, schema.data_export_job, schema.data_export_job.c.status == "failed")
    assert failed.userId == other and "reconnect the destination" in failed.errorMessage
    (note,) = rows(pg_url, schema.notification_outbox)
    payload = json.loads(note.payload)
    assert note.kind == "backup.destination_failed" and payload["jobId"] == failed.id
    assert "refused goalport's credentials" in payload["error"]
    listed = goalport("backup", "list", other)
    assert "UNREACHABLE" in listed.stderr and "refused" in listed.stderr
    newest = ok("backup", "list", user)  # the first user's backup of that run went through
    assert second not in newest and f"{base}/backups/{user}/" in newest

    store, engine = place_of(pg_url, user, url)
    result = goalport("gdpr", "erase", user, "--now")
    assert result.exit_code == 0, result.output
    assert store.list_including_unfinished(f"backups/{user}") == []
    (left,) = rows(pg_url, schema.destination_credential)
    assert left.subjectRef == subject_ref(other)
    assert {r.storageUrl for r in rows(pg_url, schema.file_location)} <= {other_url}
    engine.dispose()


def test_a_changed_destination_is_remembered_until_retention_empties_it(
    webdav_server, ssh_server, users, pg_url
):
    user = users[0]
    old_url, old_secrets = webdav_server.new_place()
    configure(user, old_url, old_secrets, "--keep-last", "2")
    at_old = backed_up(user)
    new_url, new_secrets = ssh_server.new_place()
    output = configure(user, new_url, new_secrets)
    assert re.search(r"SSH host key SHA256:\S+ trusted", output)
    at_new = backed_up(user)
    listed = ok("backup", "list", user)
    assert at_old in listed and at_new in listed  # both places, newest first
    assert listed.index(at_new) < listed.index(at_old)
    assert "verified" in ok("backup", "restore", at_old, "--user", user, "--verify-only")
    assert len(rows(pg_url, schema.destination_credential)) == 2

    newest = backed_up(user)  # keep the last 2: the one at the old place goes
    listed = ok("backup", "list", user)
    assert at_old not in listed and at_new in listed and newest in listed
    (credential,) = rows(pg_url, schema.destination_credential)
    assert credential.destinationUrl == new_url  # the emptied place is forgotten
    assert {r.storageUrl for r in rows(pg_url, schema.file_location)} == {new_url}


def test_credentials_revoked_during_the_upload_leave_no_complete_looking_backup(
    webdav_server, users, pg_url
):
    user = users[0]
    url, secrets = webdav_server.new_place()
    configure(user, url, secrets)
    webdav_server.revoke_after_put = True
    try:
        result = goalport("backup", "run", user)
    finally:
        webdav_server.revoke_after_put = False
    assert result.exit_code == 1 and "refused goalport's credentials" in result.stderr
    (job,) = rows(pg_url, schema.data_export_job)
    assert job.status == "failed" and job.fileUrl is None
    folder = webdav_server.root / url.split(str(webdav_server.port), 1)[1].strip("/")
    left = [p.name for p in folder.rglob("*") if p.is_file()]
    assert left and all(name.startswith(".tmp-") for name in left)  # the PUT, never renamed


def test_a_destination_that_fails_its_test_is_not_saved(webdav_server, users, pg_url):
    user = users[0]
    url, _secrets = webdav_server.new_place()
    result = goalport(
        "backup", "config", user, "--destination", url, "--credentials-stdin",
        input=json.dumps({"password": "wrong-password-123"}),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "the destination test failed, nothing was saved" in result.stderr
    assert "wrong-password-123" not in result.output
    assert rows(pg_url, schema.destination_credential) == []
    assert rows(pg_url, schema.backup_config) == []
    closed = f"webdav+http://me@127.0.0.1:{free_port()}/x"
    result = goalport("backup", "config", user, "--destination", closed, "--credentials-stdin",
                      input='{"password": "p"}')  # fmt: skip
    assert result.exit_code == 1 and "ConnectError" in result.stderr
    for bad, says in [
        ("/srv/backups", "local path"),
        ("webdav+http://me@cloud.example.org/x", "loopback only"),
    ]:
        result = goalport("backup", "config", user, "--destination", bad, "--credentials-stdin",
                          input="{}")  # fmt: skip
        assert result.exit_code == 1 and says in result.stderr, result.output


def test_a_wrong_sftp_host_key_fingerprint_is_refused(ssh_server, users, pg_url):
    user = users[0]
    url, secrets = ssh_server.new_place()
    result = goalport(
        "backup", "config", user, "--destination", url, "--credentials-stdin",
        "--host-key-fingerprint", "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        input=json.dumps(secrets),
    )  # fmt: skip
    assert result.exit_code == 1 and "not trusted, nothing was saved" in result.stderr
    assert rows(pg_url, schema.destination_credential) == []
