"""Backups under the I/O steps' RetryPolicy: the step has it, a failure that waiting cannot
cure is not retried, and a retry is safe (an attempt that died after some users were done
is finished by the next attempt without backing anyone up twice), on a real PostgreSQL
database and storage folder."""

from __future__ import annotations

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.backups.defs import BackupRunConfig, backup_job, verified_backups
from assets.backups.due import queue_backup_now, queued_by
from assets.backups.runner import run_backup_batch
from pipelines.definitions import defs
from resources import keys, run_policy, schema
from resources.keys import KeyVault
from resources.storage import ObjectStorage
from synthetic.seed import seed_database


@pytest.fixture
def users(pg_url, database, monkeypatch):
    monkeypatch.setenv(keys.MASTER_KEY_ENV, keys.new_master_key())
    seed_database(pg_url, 3, seed=41, heavy_every=0)
    return sorted(database.all_user_ids())


class AttemptDied(RuntimeError):
    """What kills an attempt between two users (a lost connection, an OOM-killed worker)."""


def test_the_backup_step_retries_with_back_off(monkeypatch):
    policy = verified_backups.op.retry_policy
    assert policy is not None and policy.max_retries == run_policy.IO_RETRIES
    assert policy.backoff == dg.Backoff.EXPONENTIAL


def test_a_retry_finishes_the_batch_and_backs_up_nobody_twice(users, database, tmp_path, pg_url):
    storage = ObjectStorage(url=str(tmp_path / "store"))
    vault = KeyVault(database_url=pg_url)
    queued = queue_backup_now(database.engine, users, requested_by="dagster run r1")
    found = queued_by(database.engine, "dagster run r1")  # what the step's retry takes up
    assert found is not None and found.batch_id == queued.batch_id
    assert sorted(found.job_ids) == sorted(queued.job_ids)

    def die_after_first(user_id, result, message):
        raise AttemptDied(f"after {user_id}")

    with pytest.raises(AttemptDied):
        run_backup_batch(
            database, storage, vault, queued.job_ids, queued.batch_id,
            on_user_done=die_after_first, workers=1,
        )  # fmt: skip
    retried = run_backup_batch(database, storage, vault, queued.job_ids, queued.batch_id, workers=1)
    assert len(retried.completed) == len(users) - 1 and not retried.failed

    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.data_export_job)).mappings().all()
    assert {r["status"] for r in rows} == {"completed"} and len(rows) == len(users)
    files = storage.list("backups")
    assert len(files) == len(users)  # one backup each: the first user's was not made again
    assert {f.split("/")[1] for f in files} == set(users)


def test_a_missing_master_key_fails_the_step_once(users, database, tmp_path, pg_url, monkeypatch):
    monkeypatch.delenv(keys.MASTER_KEY_ENV)
    monkeypatch.setenv("GOALPORT_RETRY_DELAY_SECONDS", "30")  # a retry would show in the time
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def(backup_job.name).execute_in_process(
            run_config=dg.RunConfig(ops={"verified_backups": BackupRunConfig(user_ids=users[:1])}),
            resources={
                "database": database,
                "storage": ObjectStorage(url=str(tmp_path / "s")),
                "keys": KeyVault(database_url=pg_url),
            },
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert kinds.count("STEP_FAILURE") == 1 and "STEP_UP_FOR_RETRY" not in kinds
