"""Encrypted, verified backups end to end against a real PostgreSQL, local folders and a real
S3 endpoint: what goalport writes opens with the `age` tool and matches the database;
every kind of damaged or wrongly keyed file is a clear error through `goalport backup
restore` with no plaintext written; crypto-shredding; the master-key requirement; the
restore drill and retention; passphrase exports; key export and rotation.
"""

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import zipfile
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from assets.backups.archive import BackupVerificationError, open_backup
from assets.backups.config import BackupConfigError, Retention, get_backup_config
from assets.backups.retention import backups_to_delete, erase_user_backups
from assets.formats.json import read_json_export
from pipelines.cli.main import main
from resources import age, keys, schema
from resources.database import AppDatabase
from resources.keys import KeyVault
from resources.storage import ObjectStorage
from synthetic.load import load_population
from synthetic.population import generate_population


@pytest.fixture
def master(monkeypatch) -> str:
    key = keys.new_master_key()
    monkeypatch.setenv(keys.MASTER_KEY_ENV, key)
    return key


@pytest.fixture
def env(pg_url, tmp_path, monkeypatch, master) -> dict:
    """A seeded database (3 users) and a storage folder, configured as the CLI reads them."""
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    load_population(engine, generate_population(3, seed=11, heavy_every=0))
    engine.dispose()
    values = {"GOALPORT_DATABASE_URL": pg_url, "GOALPORT_STORAGE_URL": str(tmp_path / "store")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def users(pg_url, env) -> list[str]:
    return AppDatabase(url=pg_url).all_user_ids()


def goalport(*args: str, input: str | None = None):
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    return result


def ok(*args: str, input: str | None = None) -> str:
    result = goalport(*args, input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def backup_url(stdout: str) -> str:
    """The URL that `goalport backup run` printed for its one user."""
    (line,) = stdout.strip().splitlines()
    user, state, _records, _size, url = line.split("\t")
    assert state == "verified"
    return url


def local_path(url: str) -> Path:
    return Path(url.removeprefix("file://"))


def rows(url: str, table: sa.Table, *where) -> list[sa.Row]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        found = conn.execute(sa.select(table).where(*where)).all()
    engine.dispose()
    return found


def age_cli(*argv: str) -> subprocess.CompletedProcess:
    assert shutil.which("age"), "the age command-line tool is required (apt-get install age)"
    return subprocess.run(["age", *argv], capture_output=True, timeout=60)


def test_backup_opens_with_the_age_tool_and_matches_the_database(users, pg_url, tmp_path):
    user = users[0]
    own_identity, own_recipient = age.generate_identity()
    ok("backup", "config", user, "--enable", "--frequency", "weekly", "--recipient", own_recipient)
    url = backup_url(ok("backup", "run", user))
    assert url.startswith(f"file://{tmp_path}/store/backups/{user}/goalport-backup-")
    assert url.endswith(".zip.age")

    identity_file = tmp_path / "key.txt"
    ok("keys", "export", user, "--out", str(identity_file))
    assert oct(identity_file.stat().st_mode & 0o777) == "0o600"
    assert identity_file.read_text().startswith("# created: ")
    decrypted = age_cli("-d", "-i", str(identity_file), str(local_path(url)))
    assert decrypted.returncode == 0, decrypted.stderr
    own_key = tmp_path / "own.txt"
    own_key.write_text(age.format_identity_file(own_identity))
    by_own_key = age_cli("-d", "-i", str(own_key), str(local_path(url)))
    assert by_own_key.returncode == 0 and by_own_key.stdout == decrypted.stdout

    with zipfile.ZipFile(io.BytesIO(decrypted.stdout)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        export = archive.read("data/export.json")
    tables = read_json_export(export)
    from_database = AppDatabase(url=pg_url).extract([user]).per_user()[user]
    assert manifest["userId"] == user and manifest["format"] == "goalport.backup"
    assert manifest["rowCounts"] == {name: t.num_rows for name, t in from_database.items()}
    assert manifest["files"][0]["sha256"] == hashlib.sha256(export).hexdigest()
    assert sum(manifest["rowCounts"].values()) > 10
    for name, table in from_database.items():
        assert tables[name].equals(table), name

    (config,) = rows(pg_url, schema.backup_config, schema.backup_config.c.userId == user)
    assert config.lastVerifiedUrl == url and config.lastVerifiedAt is not None
    assert config.lastBackupAt <= config.lastVerifiedAt < config.nextBackupAt
    local_next = config.nextBackupAt.astimezone(ZoneInfo(config.timezone))
    assert (local_next.weekday(), local_next.hour) == (0, 2)  # weekly: Monday, local 02:00
    (job,) = rows(pg_url, schema.data_export_job, schema.data_export_job.c.userId == user)
    assert (job.exportType, job.format, job.status, job.fileUrl) == (
        "backup",
        "backup-json",
        "completed",
        url,
    )
    assert job.checksum == "sha256:" + hashlib.sha256(local_path(url).read_bytes()).hexdigest()
    audit = rows(pg_url, schema.data_audit_log, schema.data_audit_log.c.operation == "backup")
    assert len(audit) == 1 and json.loads(audit[0].details)["fileUrl"] == url
    listed = ok("backup", "list", user)
    assert f"verified\tage\t{local_path(url).stat().st_size}\t{url}" in listed
    assert "last verified:" in listed and url in listed


def test_restore_verifies_and_every_damage_is_a_clear_error(users, tmp_path, monkeypatch):
    user, other = users[0], users[1]
    url = backup_url(ok("backup", "run", user))
    good = local_path(url).read_bytes()
    out = tmp_path / "restored.zip"

    restored = ok("backup", "restore", url, "--user", user, "--out", str(out), "--verify-only")
    assert f"verified backup of {user}" in restored
    assert zipfile.ZipFile(out).read("manifest.json")
    out.unlink()

    other_key = tmp_path / "other.txt"
    ok("backup", "run", other)
    ok("keys", "export", other, "--out", str(other_key))
    truncated, flipped = tmp_path / "truncated.age", tmp_path / "flipped.age"
    truncated.write_bytes(good[: len(good) - 100])
    middle = len(good) - 40
    flipped.write_bytes(good[:middle] + bytes([good[middle] ^ 0x01]) + good[middle + 1 :])
    monkeypatch.setenv("RIGHT_PASSPHRASE", "correct horse battery")
    monkeypatch.setenv("WRONG_PASSPHRASE", "not the passphrase")
    exported = ok(
        "backup", "export", user, "--passphrase-env", "RIGHT_PASSPHRASE", "--work-factor", "10"
    ).strip()
    cases = [
        ([str(local_path(url)), "--user", user, "--identity", str(other_key)], "wrong key"),
        ([str(local_path(url)), "--user", other], "wrong key"),
        ([str(truncated), "--user", user], "truncated"),
        ([str(flipped), "--user", user], "damaged or was altered"),
        ([url, "--user", user, "--passphrase-env", "WRONG_PASSPHRASE"], "not encrypted to"),
        ([exported, "--user", user, "--passphrase-env", "WRONG_PASSPHRASE"], "wrong passphrase"),
        ([exported, "--user", user], "encrypted with a passphrase; give the passphrase"),
    ]
    for args, message in cases:
        result = goalport("backup", "restore", *args, "--out", str(out))
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1
        assert not out.exists(), args


def test_backups_to_s3(users, s3_url, s3_endpoint, pg_url):
    user = users[2]
    destination = f"{s3_url}/user-backups"
    secrets = json.dumps({"access_key_id": "testing", "secret_access_key": "testing"})
    ok(
        "backup", "config", user, "--destination", f"{destination}?endpoint={s3_endpoint}",
        "--credentials-stdin", "--keep-last", "1", input=secrets,
    )  # fmt: skip
    first = backup_url(ok("backup", "run", user))
    second = backup_url(ok("backup", "run", user))
    assert second.startswith(f"{destination}/backups/{user}/goalport-backup-")
    assert second.endswith(f".age?endpoint={s3_endpoint}")
    remote = ObjectStorage(url=destination)

    def key(url: str) -> str:
        return url.partition("?")[0].removeprefix(destination + "/")

    assert remote.list(f"backups/{user}") == [key(second)]
    assert not remote.exists(key(first))
    assert "verified" in ok("backup", "restore", second, "--user", user, "--verify-only")
    listed = ok("backup", "list", user)
    assert second in listed and first not in listed
    statuses = {
        r.fileUrl: r.status
        for r in rows(pg_url, schema.data_export_job, schema.data_export_job.c.userId == user)
    }
    assert statuses == {first: "expired", second: "completed"}


def test_destroyed_key_leaves_nothing_that_opens_old_backups(users, pg_url, master):
    user = users[0]
    url = backup_url(ok("backup", "run", user))
    for other in users[1:]:
        ok("backup", "run", other)
    vault = KeyVault(database_url=pg_url)
    assert vault.destroy_user_key(user)

    result = goalport("backup", "restore", url, "--user", user)
    assert result.exit_code == 1
    assert f"user {user} has no key" in result.stderr
    held = [vault.identity(other) for other in users[1:]]
    with pytest.raises(age.AgeNoMatchError):
        age.decrypt(local_path(url).read_bytes(), identities=held)
    with pytest.raises(BackupVerificationError, match="wrong key"):
        open_backup(local_path(url).read_bytes(), identities=held)
    with pytest.raises(age.AgeError):
        age.decrypt(local_path(url).read_bytes(), passphrase=master)
    vault.close()

    storage = ObjectStorage(url=os.environ["GOALPORT_STORAGE_URL"])
    assert erase_user_backups(AppDatabase(url=pg_url).engine, storage, user) == 1
    assert storage.list(f"backups/{user}") == [] and storage.list(f"backups/{users[1]}")


def test_encrypted_backups_refuse_to_run_without_the_master_key(users, pg_url, monkeypatch):
    user, plain_user = users[0], users[1]
    ok("backup", "config", plain_user, "--no-encrypt")
    monkeypatch.delenv(keys.MASTER_KEY_ENV)
    result = goalport("backup", "run", user)
    assert result.exit_code == 1
    assert "encrypted backups refuse to run" in result.stderr
    assert "GOALPORT_MASTER_KEY" in result.stderr and "goalport keys new-master" in result.stderr
    (job,) = rows(pg_url, schema.data_export_job, schema.data_export_job.c.userId == user)
    assert job.status == "failed" and "GOALPORT_MASTER_KEY" in job.errorMessage
    assert rows(pg_url, schema.user_key) == []

    url = backup_url(ok("backup", "run", plain_user))
    assert url.endswith(".zip") and zipfile.ZipFile(local_path(url)).read("manifest.json")


def test_backup_job_fails_clearly_without_the_master_key(users, pg_url, tmp_path, monkeypatch):
    import dagster as dg

    from assets.backups.defs import BackupRunConfig, backup_job
    from pipelines.definitions import defs

    monkeypatch.delenv(keys.MASTER_KEY_ENV)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(backup_job.name).execute_in_process(
            run_config=dg.RunConfig(ops={"verified_backups": BackupRunConfig(user_ids=users[:2])}),
            resources={
                "database": AppDatabase(url=pg_url),
                "storage": ObjectStorage(url=str(tmp_path / "s")),
                "keys": KeyVault(database_url=pg_url),
            },
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "GOALPORT_MASTER_KEY" in failure.step_failure_data.error.message
    jobs = rows(pg_url, schema.data_export_job)
    assert len(jobs) == 2 and {j.status for j in jobs} == {"failed"}


def test_retention_keeps_the_newest_verified_and_deletes_only_after_one(users, pg_url, tmp_path):
    user = users[0]
    ok("backup", "config", user, "--keep-last", "2")
    urls = [backup_url(ok("backup", "run", user)) for _ in range(3)]
    store = ObjectStorage(url=str(tmp_path / "store"))
    names = [local_path(u).name for u in urls]
    assert [k.rsplit("/", 1)[1] for k in store.list(f"backups/{user}")] == names[1:]

    # A backup that cannot be written is not verified: nothing older is deleted.
    from assets.backups.config import save_backup_config

    with socket.socket() as s:  # a destination nothing answers at, saved without its test
        s.bind(("127.0.0.1", 0))
        closed = f"s3://bucket-1/x?endpoint=http://127.0.0.1:{s.getsockname()[1]}"
    engine = AppDatabase(url=pg_url).engine
    save_backup_config(engine, user, destination_url=closed, retention={"keep_last": 1})
    result = goalport("backup", "run", user)
    assert result.exit_code == 1 and "FAILED" in result.stderr
    ok("backup", "config", user, "--destination", "default")
    assert [k.rsplit("/", 1)[1] for k in store.list(f"backups/{user}")] == names[1:]
    (config,) = rows(pg_url, schema.backup_config)
    assert config.lastVerifiedUrl == urls[-1]

    newest = backup_url(ok("backup", "run", user))
    assert store.list(f"backups/{user}") == [f"backups/{user}/{local_path(newest).name}"]
    deleted = rows(
        pg_url, schema.data_audit_log, schema.data_audit_log.c.operation == "backup_retention"
    )
    assert sum(r.recordCount for r in deleted) == 3


def test_tiered_retention_keeps_the_newest_of_each_period():
    import datetime as dt

    start = dt.datetime(2024, 1, 1, 2, tzinfo=dt.UTC)
    daily = [start + dt.timedelta(days=d) for d in range(100)]
    tiers = Retention.from_dict({"daily": 7, "weekly": 4, "monthly": 3})
    kept = sorted(set(daily) - set(backups_to_delete(daily, tiers)))
    # The last day is Tuesday 9 April 2024: seven days back to 3 April; the weeks ending
    # Sunday 31 and 24 March (the two newer weeks are covered by the days); the month of
    # February (March's newest, the 31st, is already kept).
    day = lambda month, d: dt.datetime(2024, month, d, 2, tzinfo=dt.UTC)  # noqa: E731
    assert kept == [day(2, 29), day(3, 24), day(3, 31), *daily[-7:]]
    assert daily[-7:][0] == day(4, 3)
    assert backups_to_delete(daily, Retention(keep_last=3)) == sorted(daily)[:-3][::-1]
    for bad, message in [
        ({"keep_last": 0}, "at least 1"),
        ({"keep_last": 2, "daily": 1}, "not both"),
        ({"hourly": 3}, "unknown setting hourly"),
        ({}, "at least one"),
    ]:
        with pytest.raises(BackupConfigError, match=message):
            Retention.from_dict(bad)


def test_passphrase_export_is_never_stored_or_logged(users, pg_url, monkeypatch):
    user = users[1]
    secret = "correct horse battery staple"
    monkeypatch.setenv("MY_PASSPHRASE", secret)
    url = ok(
        "backup", "export", user, "--passphrase-env", "MY_PASSPHRASE", "--work-factor", "10"
    ).strip()
    assert url.endswith(".zip.age") and f"/exports/{user}/" in url
    data = local_path(url).read_bytes()
    assert b"\n-> scrypt " in data
    opened = open_backup(data, passphrase=secret)
    assert opened.user_id == user and opened.records > 0
    restored = ok(
        "backup", "restore", url, "--user", user, "--passphrase-env", "MY_PASSPHRASE", "--yes"
    )
    assert "verified backup" in restored
    (job,) = rows(pg_url, schema.data_export_job)
    assert job.status == "completed" and job.expiresAt is not None
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        dump = "\n".join(
            str(tuple(row))
            for table in (schema.data_export_job, schema.data_audit_log, schema.backup_config)
            for row in conn.execute(sa.select(table))
        )
    engine.dispose()
    assert secret not in dump and "MY_PASSPHRASE" not in dump

    prompted = goalport("backup", "export", user, "--work-factor", "10", input="a b\na b\n")
    assert prompted.exit_code == 0, prompted.output
    assert secret not in prompted.output


def test_config_is_validated_and_shown(users, pg_url):
    user = users[0]
    shown = ok(
        "backup",
        "config",
        user,
        "--timezone",
        "Asia/Tokyo",
        "--include",
        "fitness,bible",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
    )
    assert "daily, at 02:00 Asia/Tokyo" in shown and "fitness, bible" in shown
    assert "keep the newest of 7 daily, 4 weekly" in shown
    assert "at the next hourly tick" in shown
    for args, message in [
        (["--timezone", "Mars/Olympus"], "not an IANA time zone"),
        (["--recipient", "age1notakey"], "recipient 'age1notakey'"),
        (["--destination", "nosuchproto://x"], "destination"),
        (["--keep-last", "2", "--keep-daily", "3"], "not both"),
    ]:
        result = goalport("backup", "config", user, *args)
        assert result.exit_code == 1 and message in result.stderr, (args, result.output)
    assert (
        goalport("backup", "config", "ghost", "--enable")
        .stderr.strip()
        .endswith("unknown user id: ghost")
    )
    config = get_backup_config(AppDatabase(url=pg_url).engine, user)
    assert config.include == ("fitness", "bible") and config.timezone == "Asia/Tokyo"


def test_keys_rotate_master_reads_the_new_key_from_stdin(users, pg_url, monkeypatch):
    user = users[0]
    url = backup_url(ok("backup", "run", user))
    new = keys.new_master_key()
    printed = ok("keys", "rotate-master", input=new + "\n")
    assert "rewrapped 1 user keys" in printed and new not in printed
    assert goalport("backup", "restore", url, "--user", user, "--verify-only").exit_code == 1
    monkeypatch.setenv(keys.MASTER_KEY_ENV, new)
    assert "verified backup" in ok("backup", "restore", url, "--user", user, "--verify-only")
    fresh = ok("keys", "new-master").strip()
    assert keys.decode_master_key(fresh) and fresh != new


def test_restore_brings_the_backup_back_through_the_import_path(users, pg_url):
    user = users[0]
    url = backup_url(ok("backup", "run", user))
    database = AppDatabase(url=pg_url)
    before = database.extract([user]).per_user()[user]
    progress, goal = schema.metadata.tables["Progress"], schema.metadata.tables["Goal"]
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        lost = conn.execute(progress.delete().where(progress.c.userId == user)).rowcount
        conn.execute(
            goal.update().where(goal.c.userId == user).values(title="overwritten by mistake")
        )
    engine.dispose()
    assert lost > 0

    declined = goalport("backup", "restore", url, "--user", user, input="n\n")
    assert declined.exit_code == 0 and "not applied" in declined.stdout
    assert database.extract([user]).tables["Progress"].num_rows == 0

    restored = ok("backup", "restore", url, "--user", user, "--yes")
    assert "applied import" in restored
    after = database.extract([user]).per_user()[user]
    for name, table in before.items():
        assert after[name].equals(table), name
