"""The production profile fails closed: with GOALPORT_PROFILE=production, neither the CLI
nor the code location starts without the database, storage and the three secrets, and the
message names every one that is missing. An empty GOALPORT_PROFILE is the local default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from resources import settings

REPO = Path(__file__).resolve().parents[2]
REQUIRED = settings.PRODUCTION_REQUIRED


def environment(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED and k != "GOALPORT_PROFILE"}
    return {**env, **values}


def run(args: list[str], env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_refuses_to_start_and_names_every_missing_variable(tmp_path):
    env = environment(GOALPORT_PROFILE="production", PYTHONPATH=str(REPO))
    env["GOALPORT_STORAGE_URL"] = "   "  # blank counts as missing
    result = run([sys.executable, "-m", "pipelines.cli.main", "exports", "list"], env, tmp_path)
    assert result.returncode == 2
    for name in REQUIRED:
        assert name in result.stderr
    assert not (tmp_path / "var").exists(), "nothing may fall back to ./var"


def test_the_code_location_refuses_to_load_naming_only_what_is_missing(tmp_path):
    env = environment(
        GOALPORT_PROFILE="Production",
        PYTHONPATH=str(REPO),
        GOALPORT_DATABASE_URL="postgresql://app@db/app",
        GOALPORT_STORAGE_URL="s3://goalport/prod",
        GOALPORT_MASTER_KEY="AGE-SECRET-KEY-1NOTUSEDHERE",
    )
    result = run([sys.executable, "-c", "import pipelines.definitions"], env, tmp_path)
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert "SettingError" in error
    assert "GOALPORT_DOWNLOAD_SECRET, GOALPORT_PSEUDONYM_KEY are not set" in error
    assert "GOALPORT_DATABASE_URL" not in error and "AGE-SECRET-KEY" not in result.stderr


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_profile_is_the_local_default(monkeypatch, value):
    monkeypatch.setenv("GOALPORT_PROFILE", value)
    for name in REQUIRED:
        monkeypatch.delenv(name, raising=False)
    assert settings.profile() == ""
    settings.require_production_settings()


def test_a_misspelt_profile_is_an_error_not_the_local_default(monkeypatch):
    monkeypatch.setenv("GOALPORT_PROFILE", "prod")
    with pytest.raises(settings.SettingError, match="GOALPORT_PROFILE='prod'"):
        settings.require_production_settings()


def test_everything_given_starts(monkeypatch):
    monkeypatch.setenv("GOALPORT_PROFILE", "production")
    for name in REQUIRED:
        monkeypatch.setenv(name, "x" * 40)
    settings.require_production_settings()


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("GOALPORT_STALE_AFTER", "0", "positive number of seconds"),
        ("GOALPORT_RETRY_DELAY_SECONDS", "soon", "0 or more"),
        ("GOALPORT_RUNS_SHARING_CPUS", "0", "1 or more"),
    ],
)
def test_operations_settings_say_what_to_give(monkeypatch, name, value, error):
    monkeypatch.setenv(name, value)
    reader = {
        "GOALPORT_STALE_AFTER": settings.stale_claim_after,
        "GOALPORT_RETRY_DELAY_SECONDS": settings.retry_delay_seconds,
        "GOALPORT_RUNS_SHARING_CPUS": settings.runs_sharing_cpus,
    }[name]
    with pytest.raises(settings.SettingError, match=error):
        reader()


def test_a_short_secret_is_refused_in_production_without_being_shown(monkeypatch):
    monkeypatch.setenv("GOALPORT_PROFILE", "production")
    for name in REQUIRED:
        monkeypatch.setenv(name, "y" * 40)
    monkeypatch.setenv("GOALPORT_PSEUDONYM_KEY", "short-key-0123")
    with pytest.raises(settings.SettingError, match="GOALPORT_PSEUDONYM_KEY is 14 bytes") as err:
        settings.require_production_settings()
    assert "short-key-0123" not in str(err.value)
