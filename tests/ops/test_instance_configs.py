"""Every Dagster instance config goalport ships is loaded by Dagster itself: its own schema
validates it and an instance is built from it (the production one on a real PostgreSQL
database), and the concurrency limits it sets key on tags the jobs really carry."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from conftest import dagster_pg_environment

from pipelines.definitions import defs
from resources import run_policy

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "deploy" / "dagster.production.yaml"


@pytest.fixture
def production_instance(dagster_pg_url, monkeypatch):
    for name, value in dagster_pg_environment(dagster_pg_url).items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(PRODUCTION.parent), PRODUCTION.name)
    yield instance
    instance.dispose()


def test_the_production_instance_loads_on_postgresql_with_every_safeguard_on(
    production_instance, database, storage
):
    instance = production_instance
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert instance.run_coordinator.dequeue_interval_seconds == 1  # a queued request waits 0.5 s
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_start_timeout_seconds == 180
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 4
    assert set(instance.get_settings("python_logs")["managed_python_loggers"]) >= {
        "assets",
        "resources",
    }
    assert type(instance.compute_log_manager).__name__ == "NoOpComputeLogManager"
    # a real run on it, recorded in PostgreSQL with its job's tags
    result = defs.resolve_job_def("expire_exports_job").execute_in_process(
        instance=instance, resources={"database": database, "storage": storage}
    )
    assert result.success
    assert instance.get_run_by_id(result.run_id).tags[run_policy.KIND_TAG] == "exports"


def test_the_local_instance_loads(tmp_path, monkeypatch):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.chdir(tmp_path)  # its paths are relative to the working folder
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    instance.dispose()


def test_a_wrong_key_is_refused_by_the_same_loader(tmp_path):
    config = yaml.safe_load(PRODUCTION.read_text())
    config["run_monitoring"]["start_timeout"] = 180  # not a key Dagster knows
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(dg.DagsterInvalidConfigError, match="start_timeout"):
        dg.DagsterInstance.from_config(str(tmp_path))


def test_every_job_has_a_kind_and_every_limit_matches_a_kind_jobs_set():
    jobs = [j for j in defs.resolve_all_job_defs() if not j.name.startswith("__")]
    kinds = {j.name: j.tags.get(run_policy.KIND_TAG) for j in jobs}
    assert all(kind in run_policy.KINDS for kind in kinds.values()), kinds
    config = yaml.safe_load(PRODUCTION.read_text())
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    for limit in limits:
        assert limit["key"] == run_policy.KIND_TAG
        assert limit["value"] in kinds.values(), f"{limit} matches no job's tags"
    assert {limit["value"] for limit in limits} == set(kinds.values())
    for job in jobs:
        assert int(job.tags["dagster/max_runtime"]) > 0
        assert job.tags["dagster/retry_strategy"] == "ALL_STEPS"


def test_every_sensor_runs_by_default_and_the_io_steps_retry_with_back_off():
    assert {s.name: s.default_status for s in defs.sensors} == {
        s.name: dg.DefaultSensorStatus.RUNNING for s in defs.sensors
    }
    export_job = defs.resolve_job_def("export_job")
    for node in ("extracted_batch", "export_files"):
        policy = export_job.graph.node_named(node).definition.retry_policy
        assert policy is not None and policy.max_retries == run_policy.IO_RETRIES
        assert policy.backoff == dg.Backoff.EXPONENTIAL
    extract = export_job.graph.node_named("extracted_batch").definition
    assert extract.pool == run_policy.APP_DATABASE_POOL
