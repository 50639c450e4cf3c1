"""Backups to Dropbox, Google Drive and OneDrive end to end, against the fake providers on
loopback (tests/destinations/fake_clouds.py): connected with OAuth and PKCE -> backup ->
list -> restore drill -> retention -> erasure through the `goalport` CLI, and access
revoked mid-way: the backup fails with the reason on its job row, and no file that looks
like a complete backup is left at the provider."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from assets.backups.config import save_backup_config
from pipelines.cli.main import main
from resources import keys, schema
from resources.database import AppDatabase
from resources.destinations.oauth import finish_connection, parse_redirect, start_connection
from synthetic.load import load_population
from synthetic.population import generate_population
from tests.destinations.fake_clouds import iter_providers


@pytest.fixture
def users(pg_url, tmp_path, monkeypatch) -> list[str]:
    monkeypatch.setenv(keys.MASTER_KEY_ENV, keys.new_master_key())
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    load_population(engine, generate_population(2, seed=7, heavy_every=0))
    engine.dispose()
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "store"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    database = AppDatabase(url=pg_url)
    yield sorted(database.all_user_ids())
    database.engine.dispose()


def goalport(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ok(*args: str) -> str:
    result = goalport(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def connect(engine: sa.Engine, user: str, provider: str) -> str:
    """The OAuth flow as a person goes through it; returns the destination URL."""
    vault = keys.KeyVault()
    started = start_connection(engine, vault, user, provider, "Goal Backups")
    back_to = httpx.get(started.url, follow_redirects=False).headers["location"]
    answer = parse_redirect(back_to)
    connection = finish_connection(
        engine, vault, provider, state=answer["state"], code=answer["code"]
    )
    save_backup_config(engine, user, destination_url=connection.destination_url)
    vault.close()
    return connection.destination_url


@pytest.mark.slow
@pytest.mark.parametrize("provider", list(iter_providers()))
def test_backup_list_restore_retention_revoked_erasure(provider, start_fake, users, pg_url):
    fake = start_fake(provider)
    user, other = users
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    url = connect(engine, user, provider)
    assert url == f"{provider}://Goal Backups"
    ok("backup", "config", user, "--enable", "--keep-last", "1")

    first = ok("backup", "run", user).strip().split("\t")
    second = ok("backup", "run", user).strip().split("\t")
    assert first[1] == second[1] == "verified"
    prefix = f"{url}/backups/{user}/goalport-backup-"
    assert second[-1].startswith(prefix) and second[-1].endswith(".age")
    held = fake.files()
    assert list(held) == [second[-1].removeprefix(f"{provider}://")], "retention kept one"
    assert b"age-encryption.org/v1" in next(iter(held.values()))[:64]
    listed = ok("backup", "list", user)
    assert second[-1] in listed and first[-1] not in listed
    assert "verified" in ok("backup", "restore", second[-1], "--user", user, "--verify-only")

    fake.oauth.revoke_all()  # the user removes goalport's access at the provider
    failed = goalport("backup", "run", user)
    assert failed.exit_code != 0
    assert "revoked" in failed.output, failed.output
    with engine.connect() as conn:
        job = conn.execute(
            sa.select(schema.data_export_job.c.errorMessage)
            .where(schema.data_export_job.c.userId == user)
            .where(schema.data_export_job.c.status == "failed")
        ).scalar_one()
    assert "again" in job and "revoked" in job, job
    assert fake.files() == held, "nothing half written next to the last good backup"

    # reconnected, then erased: nothing of the user is left at the provider
    connect(engine, user, provider)
    result = goalport("gdpr", "erase", user, "--now")
    assert result.exit_code == 0, result.output
    assert fake.files() == {}
    ok("backup", "config", other, "--enable")
    ok("backup", "run", other)  # another user's backups are untouched by all of this
    engine.dispose()
