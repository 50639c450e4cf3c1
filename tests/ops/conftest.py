"""Fixtures of the operations tests: an empty PostgreSQL database for a Dagster instance
(Dagster keeps its own alembic_version table, so never the app's database)."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

PG_SERVER_URL = os.environ.get(
    "GOALPORT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _admin(statement: str) -> None:
    engine = sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text(statement))
    engine.dispose()


@pytest.fixture
def dagster_pg_url() -> str:
    """An empty database of this test's own for a Dagster instance's storage."""
    name = f"gp_dagster_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    yield sa.make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def dagster_pg_environment(url: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables deploy/dagster.production.yaml reads, for `url`."""
    parsed = sa.make_url(url)
    return {
        "DAGSTER_PG_USERNAME": parsed.username or "postgres",
        "DAGSTER_PG_PASSWORD": parsed.password or "",
        "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parsed.port or 5432),
        "DAGSTER_PG_DB": parsed.database or "postgres",
    }
