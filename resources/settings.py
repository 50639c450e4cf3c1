"""Configuration from the environment, failing closed to the embedded default.

A forgotten variable means the local SQLite file and storage folder under ./var, never
somebody's production. Read when a resource or command is built, not at import time.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_VAR_DIR = Path("var")


def database_url() -> str:
    """GOALPORT_DATABASE_URL, else a SQLite file under ./var."""
    url = os.environ.get("GOALPORT_DATABASE_URL", "").strip()
    if url:
        return normalise_database_url(url)
    DEFAULT_VAR_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(DEFAULT_VAR_DIR / 'goalport.db').resolve()}"


def storage_url() -> str:
    """GOALPORT_STORAGE_URL (a folder or `s3://bucket/prefix`), else ./var/storage."""
    url = os.environ.get("GOALPORT_STORAGE_URL", "").strip()
    return url or str((DEFAULT_VAR_DIR / "storage").resolve())


def s3_endpoint_url() -> str | None:
    """GOALPORT_S3_ENDPOINT_URL, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS itself."""
    for name in ("GOALPORT_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def normalise_database_url(url: str) -> str:
    """Accept the usual spellings of a PostgreSQL URL and use psycopg 3 for all of them."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def dagster_home() -> str | None:
    """DAGSTER_HOME: the Dagster instance's folder when set (runs then show in `make dev`)."""
    return os.environ.get("DAGSTER_HOME") or None


def secret_from_variable(name: str) -> str | None:
    """The value of the environment variable a person named (`--passphrase-env VAR`), or
    None when it is unset or empty: secrets travel in variables, never on command lines,
    where `ps` and shell history would keep them."""
    return os.environ.get(name) or None
