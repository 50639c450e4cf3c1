"""When backups are due: local 02:00 in each user's time zone, daily, weekly or monthly;
one backup after missed ticks, not one per missed period; the hourly schedule evaluated
with `dg.build_schedule_context` against a real PostgreSQL, queueing batched runs of
`backup_job` through `DataExportJob` rows.
"""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.backups.config import (
    BackupConfig,
    get_backup_config,
    next_backup_after,
    save_backup_config,
)
from assets.backups.defs import BackupRunConfig, backup_job, backup_schedule
from assets.backups.due import STALE_AFTER, users_due
from pipelines.definitions import defs
from resources import keys, schema
from resources.database import AppDatabase
from resources.keys import KeyVault
from resources.storage import ObjectStorage
from synthetic.load import load_population
from synthetic.population import generate_population

UTC = dt.UTC


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def local(zone: str, *args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


# ---------------------------------------------------------------- the rule, directly


@pytest.mark.parametrize(
    ("moment", "frequency", "zone", "expected"),
    [
        # daily: the next 02:00, but never sooner than 12 hours after the last backup
        (utc(2024, 3, 5, 2, 10), "daily", "UTC", utc(2024, 3, 6, 2)),
        (utc(2024, 3, 5, 1, 30), "daily", "UTC", utc(2024, 3, 6, 2)),
        (utc(2024, 3, 5, 10), "daily", "Asia/Tokyo", local("Asia/Tokyo", 2024, 3, 7, 2)),
        (utc(2024, 3, 5, 7, 5), "daily", "America/New_York", utc(2024, 3, 6, 7)),
        (utc(2024, 3, 5, 20, 31), "daily", "Asia/Kolkata", utc(2024, 3, 6, 20, 30)),
        # weekly: a Monday, at least three and a half days later
        (utc(2024, 3, 6, 9), "weekly", "UTC", utc(2024, 3, 11, 2)),  # Wednesday
        (utc(2024, 3, 10, 9), "weekly", "UTC", utc(2024, 3, 18, 2)),  # Sunday: not tomorrow
        (utc(2024, 3, 4, 1), "weekly", "Europe/Berlin", local("Europe/Berlin", 2024, 3, 11, 2)),
        # monthly: the 1st, at least two weeks later
        (utc(2024, 3, 10, 12), "monthly", "UTC", utc(2024, 4, 1, 2)),
        (utc(2024, 3, 20, 12), "monthly", "UTC", utc(2024, 5, 1, 2)),
        (
            utc(2024, 12, 1, 3),
            "monthly",
            "Pacific/Auckland",
            local("Pacific/Auckland", 2025, 1, 1, 2),
        ),
    ],
)
def test_next_backup_is_local_0200_at_least_half_a_period_later(moment, frequency, zone, expected):
    assert next_backup_after(moment, frequency, zone) == expected


def test_next_backup_across_daylight_saving_changes():
    # New York springs forward at 02:00 on 10 March 2024: 02:00 does not exist, 03:00 EDT.
    spring = next_backup_after(utc(2024, 3, 9, 7, 30), "daily", "America/New_York")
    assert spring == utc(2024, 3, 10, 7)
    assert spring.astimezone(ZoneInfo("America/New_York")).hour == 3
    # Berlin falls back at 03:00 on 27 October 2024: 02:00 happens twice; the first counts.
    autumn = next_backup_after(utc(2024, 10, 26, 0, 5), "daily", "Europe/Berlin")
    assert autumn == utc(2024, 10, 27, 0)
    # and the day after is back to 02:00 CET, 24 hours + 1 later
    assert next_backup_after(autumn, "daily", "Europe/Berlin") == utc(2024, 10, 28, 1)


def test_users_due_is_next_backup_at_or_before_now():
    now = utc(2024, 3, 5, 12)
    configs = [
        BackupConfig("late", next_backup_at=now - dt.timedelta(days=30)),
        BackupConfig("exact", next_backup_at=now),
        BackupConfig("new"),
        BackupConfig("future", next_backup_at=now + dt.timedelta(seconds=1)),
        BackupConfig("off", enabled=False, next_backup_at=now - dt.timedelta(days=1)),
    ]
    assert users_due(now, configs) == ["new", "late", "exact"]


# ---------------------------------------------------------------- the schedule


@pytest.fixture
def database(pg_url, monkeypatch) -> AppDatabase:
    monkeypatch.setenv(keys.MASTER_KEY_ENV, keys.new_master_key())
    engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
    load_population(engine, generate_population(8, seed=3, heavy_every=0))
    engine.dispose()
    database = AppDatabase(url=pg_url)
    yield database
    database.teardown_after_execution(None)


def configure(database, user_id, *, next_at="unset", **settings) -> None:
    save_backup_config(database.engine, user_id, **settings)
    if next_at != "unset":
        with database.engine.begin() as conn:
            conn.execute(
                schema.backup_config.update()
                .where(schema.backup_config.c.userId == user_id)
                .values(nextBackupAt=next_at)
            )


def tick(database, pg_url, instance, when: dt.datetime):
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        resources={"database": database, "keys": KeyVault(database_url=pg_url)},
    ) as context:
        return backup_schedule(context)


def queued_users(database, requests) -> list[str]:
    """The users whose backup requests the run requests name, checking how they are queued."""
    job_ids = []
    for request in requests:
        config = request.run_config["ops"]["verified_backups"]["config"]
        assert request.run_key == config["batch_id"]
        assert request.tags["goalport/backup_batch_id"] == config["batch_id"]
        job_ids += config["job_ids"]
    table = schema.data_export_job
    with database.engine.connect() as conn:
        jobs = conn.execute(sa.select(table).where(table.c.id.in_(job_ids))).all()
    assert {(j.exportType, j.status, j.format) for j in jobs} <= {
        ("backup", "processing", "backup-json"),
        ("backup", "processing", "backup-csv"),
    }
    return sorted(j.userId for j in jobs)


def test_schedule_queues_the_due_users_across_frequencies_and_zones(database, pg_url):
    u = database.all_user_ids()
    now = utc(2030, 1, 8, 14)
    configure(
        database,
        u[0],
        frequency="daily",
        timezone="Asia/Tokyo",
        next_at=now - dt.timedelta(hours=1),
    )
    configure(
        database,
        u[1],
        frequency="weekly",
        timezone="America/New_York",
        next_at=now + dt.timedelta(days=3),
    )
    configure(
        database,
        u[2],
        frequency="monthly",
        timezone="UTC",
        format="csv",
        next_at=now - dt.timedelta(minutes=10),
    )
    configure(database, u[3], enabled=False, next_at=now - dt.timedelta(days=2))
    configure(database, u[4], timezone="Europe/Berlin")  # new: never backed up
    with dg.DagsterInstance.ephemeral() as instance:
        requests = tick(database, pg_url, instance, now)
        assert queued_users(database, requests) == sorted([u[0], u[2], u[4]])
        # the next tick leaves them to the runs already requested
        again = tick(database, pg_url, instance, now + dt.timedelta(hours=1))
    assert isinstance(again, dg.SkipReason) and again.skip_message == "no backups are due"


def finish_backups(database, users, when: dt.datetime) -> None:
    """What a successful run records, as of `when`: rows completed, next backup moved."""
    with database.engine.begin() as conn:
        conn.execute(
            schema.data_export_job.update()
            .where(schema.data_export_job.c.userId.in_(users))
            .values(status="completed", completedAt=when)
        )
    for user in users:
        config = get_backup_config(database.engine, user)
        next_at = next_backup_after(when, config.frequency, config.timezone)
        configure(database, user, next_at=next_at)


def test_each_user_is_queued_at_the_first_tick_after_their_local_0200(database, pg_url):
    u = database.all_user_ids()
    reference = utc(2030, 1, 8, 12)  # a Tuesday
    zones = {
        u[0]: "Asia/Tokyo",
        u[1]: "America/New_York",
        u[2]: "Asia/Kolkata",
        u[3]: "Europe/Berlin",
        u[4]: "Pacific/Auckland",
    }
    first_tick = {}
    for user, zone in zones.items():
        next_at = next_backup_after(reference, "daily", zone)
        configure(database, user, frequency="daily", timezone=zone, next_at=next_at)
        on_the_hour = next_at.replace(minute=0)
        first_tick[user] = on_the_hour + dt.timedelta(hours=next_at != on_the_hour)
    assert first_tick[u[2]] == utc(2030, 1, 9, 21)  # 02:00 IST is 20:30 UTC: the 21:00 tick
    configure(
        database,
        u[5],
        frequency="weekly",
        timezone="America/New_York",
        next_at=next_backup_after(reference, "weekly", "America/New_York"),
    )
    configure(
        database,
        u[6],
        frequency="monthly",
        timezone="Asia/Tokyo",
        next_at=next_backup_after(reference, "monthly", "Asia/Tokyo"),
    )
    monday = local("America/New_York", 2030, 1, 14, 2)
    first_of_month = local("Asia/Tokyo", 2030, 2, 1, 2)
    hour = dt.timedelta(hours=1)
    with dg.DagsterInstance.ephemeral() as instance:
        # One tick before and the tick of each user's slot, in time order, each run finishing.
        for when in sorted({t + d for t in first_tick.values() for d in (-hour, 0 * hour)}):
            result = tick(database, pg_url, instance, when)
            queued = [] if isinstance(result, dg.SkipReason) else queued_users(database, result)
            assert queued == sorted(user for user, t in first_tick.items() if t == when), when
            finish_backups(database, queued, when)
        for user in zones:  # the daily users are done; now the weekly and the monthly one
            configure(database, user, enabled=False)
        for when, user in ((monday, u[5]), (first_of_month, u[6])):
            assert isinstance(tick(database, pg_url, instance, when - hour), dg.SkipReason)
            assert queued_users(database, tick(database, pg_url, instance, when)) == [user]
            configure(database, user, enabled=False)  # it would recur before the next check
    for user in zones:
        config = get_backup_config(database.engine, user)
        assert config.next_backup_at - first_tick[user] < dt.timedelta(days=1, hours=1)


def test_missed_ticks_catch_up_once_and_move_next_backup_from_now(database, pg_url, tmp_path):
    user = database.all_user_ids()[0]
    now = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    configure(database, user, frequency="daily", timezone="UTC", next_at=now - dt.timedelta(days=5))
    storage = ObjectStorage(url=str(tmp_path))
    job = defs.resolve_job_def(backup_job.name)
    with dg.DagsterInstance.ephemeral() as instance:
        # the daemon comes back and evaluates the ticks it missed, one after another
        results = [
            tick(database, pg_url, instance, now - dt.timedelta(hours=h)) for h in (3, 2, 1, 0)
        ]
        requests = [r for result in results if isinstance(result, list) for r in result]
        assert len(requests) == 1 and queued_users(database, requests) == [user]
        run = job.execute_in_process(
            run_config=requests[0].run_config,
            resources={
                "database": database,
                "storage": storage,
                "keys": KeyVault(database_url=pg_url),
            },
            instance=instance,
        )
        assert run.success
        (check,) = run.get_asset_check_evaluations()
        assert check.passed and check.metadata["verified"].value == 1
        config = get_backup_config(database.engine, user)
        assert config.last_verified_at is not None and config.last_verified_url
        assert config.next_backup_at == next_backup_after(config.last_verified_at, "daily", "UTC")
        assert config.next_backup_at > dt.datetime.now(UTC) + dt.timedelta(hours=11)
        later = tick(database, pg_url, instance, now + dt.timedelta(hours=1))
        assert isinstance(later, dg.SkipReason)
        assert len(storage.list(f"backups/{user}")) == 1


def test_without_the_master_key_only_unencrypted_backups_are_queued(database, pg_url, monkeypatch):
    u = database.all_user_ids()
    now = utc(2030, 1, 8, 14)
    configure(database, u[0], next_at=now - dt.timedelta(hours=1))
    monkeypatch.delenv(keys.MASTER_KEY_ENV)
    with dg.DagsterInstance.ephemeral() as instance:
        refused = tick(database, pg_url, instance, now)
        assert isinstance(refused, dg.SkipReason)
        assert "1 users are due for encrypted backups" in refused.skip_message
        assert "GOALPORT_MASTER_KEY" in refused.skip_message
        configure(database, u[1], encrypt=False, next_at=now - dt.timedelta(hours=1))
        assert queued_users(database, tick(database, pg_url, instance, now)) == [u[1]]


def test_a_failed_backup_retried_through_the_export_queue_is_taken_by_the_backup_path(
    database, pg_url
):
    from assets.exports.claims import claim_pending_exports
    from assets.exports.queue import retry_exports

    user = database.all_user_ids()[0]
    now = utc(2030, 1, 8, 14)
    configure(database, user, next_at=now - dt.timedelta(hours=1))
    with dg.DagsterInstance.ephemeral() as instance:
        (request,) = tick(database, pg_url, instance, now)
        (job_id,) = request.run_config["ops"]["verified_backups"]["config"]["job_ids"]
        # the run was lost: after a while the tick fails the request as stale
        later = now + STALE_AFTER + dt.timedelta(hours=1)
        configure(database, user, next_at=later + dt.timedelta(days=1))
        assert isinstance(tick(database, pg_url, instance, later), dg.SkipReason)
        (retried,) = retry_exports(database.engine, [job_id])
        assert retried.status == "pending"
        assert claim_pending_exports(database.engine) == []  # not the generic export path
        (claimed,) = tick(database, pg_url, instance, later + dt.timedelta(hours=1))
    config = claimed.run_config["ops"]["verified_backups"]["config"]
    assert config["job_ids"] == [job_id]


def test_the_backup_area_is_in_the_code_location():
    assert defs.resolve_job_def("backup_job").name == "backup_job"
    schedule = defs.resolve_schedule_def("backup_schedule")
    assert schedule.cron_schedule == "0 * * * *" and schedule.execution_timezone == "UTC"
    assert defs.resolve_sensor_def("backup_run_failure_sensor").name == "backup_run_failure_sensor"
    assert isinstance(BackupRunConfig(user_ids=["u"]), dg.Config)


def export_rows(database) -> list:
    with database.engine.connect() as conn:
        return conn.execute(sa.select(schema.data_export_job)).all()


def test_a_crashed_backup_run_fails_its_queued_rows_through_the_failure_sensor(
    database, pg_url, tmp_path, monkeypatch
):
    """The run died before it could record anything: the sensor reads the batch back from
    the run's typed config and fails its rows, so the next tick queues the users again."""
    from assets.backups import defs as backup_defs

    user = database.all_user_ids()[0]
    now = utc(2030, 1, 8, 14)
    configure(database, user, next_at=now - dt.timedelta(hours=1))

    def crash(*args, **kwargs):
        raise RuntimeError("the worker was killed")

    monkeypatch.setattr(backup_defs, "run_backup_batch", crash)
    with dg.instance_for_test() as instance:
        (request,) = tick(database, pg_url, instance, now)
        run = defs.resolve_job_def(backup_job.name).execute_in_process(
            run_config=request.run_config,
            resources={
                "database": database,
                "storage": ObjectStorage(url=str(tmp_path)),
                "keys": KeyVault(database_url=pg_url),
            },
            instance=instance,
            raise_on_error=False,
        )
        assert not run.success
        assert export_rows(database)[0].status == "processing"
        with dg.build_run_status_sensor_context(
            sensor_name=backup_defs.backup_run_failure_sensor.name,
            dagster_instance=instance,
            dagster_run=run.dagster_run,
            dagster_event=run.get_run_failure_event(),
            resources={"database": database},
        ) as context:
            backup_defs.backup_run_failure_sensor(context.for_run_failure())
    (job,) = export_rows(database)
    assert job.status == "failed" and job.runId == run.run_id
    assert f"backup run {run.run_id} failed" in job.errorMessage
