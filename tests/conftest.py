"""Shared fixtures: a fresh migrated PostgreSQL database per test (and the app database
resource on it), storage in a folder of the test's own, a real S3 endpoint.

The PostgreSQL server is the one `make test` made sure is running (`GOALPORT_TEST_PG_URL`,
default the local server on 127.0.0.1:5432). Each test gets its own database cloned from a
migrated template, so tests (and parallel workers) never see each other's rows.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest
import sqlalchemy as sa

from migrations import upgrade
from resources.database import AppDatabase
from resources.storage import ObjectStorage

# Steps retried with back-off (resources/run_policy.py) wait a tenth of a second in tests.
os.environ.setdefault("GOALPORT_RETRY_DELAY_SECONDS", "0.1")

PG_SERVER_URL = os.environ.get(
    "GOALPORT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _admin_engine() -> sa.Engine:
    return sa.create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


def _database_url(name: str) -> str:
    return sa.make_url(PG_SERVER_URL).set(database=name).render_as_string(hide_password=False)


def _create_database(name: str, template: str | None = None) -> str:
    engine = _admin_engine()
    with engine.connect() as conn:
        clause = f' TEMPLATE "{template}"' if template else ""
        conn.execute(sa.text(f'CREATE DATABASE "{name}"{clause}'))
    engine.dispose()
    return _database_url(name)


def _drop_database(name: str) -> None:
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def pg_template() -> str:
    """A migrated, empty database that each test's database is cloned from."""
    name = f"gp_tpl_{uuid.uuid4().hex[:12]}"
    url = _create_database(name)
    upgrade(url)
    sa.create_engine(url).dispose()
    yield name
    _drop_database(name)


@pytest.fixture
def pg_url(pg_template: str) -> str:
    """URL of a fresh, migrated, empty PostgreSQL database for this test alone."""
    name = f"gp_t_{uuid.uuid4().hex[:12]}"
    url = _create_database(name, template=pg_template)
    yield url
    _drop_database(name)


@pytest.fixture
def database(pg_url: str):
    """The app database (`AppDatabase`) on this test's own PostgreSQL database; a module
    that wants rows in it overrides `pg_url` to seed them first."""
    database = AppDatabase(url=pg_url)
    yield database
    database.engine.dispose()


@pytest.fixture
def storage(tmp_path) -> ObjectStorage:
    """goalport's object storage in a folder of this test's own."""
    return ObjectStorage(url=str(tmp_path / "storage"))


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """URL of a fresh, migrated SQLite database (the embedded default) for this test."""
    url = f"sqlite:///{tmp_path / 'goalport.db'}"
    upgrade(url)
    return url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real S3 endpoint (moto's server) on a loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_url(s3_endpoint: str, monkeypatch) -> str:
    """`s3://<fresh bucket>/goalport`, with GOALPORT_S3_ENDPOINT_URL pointing at the endpoint."""
    import s3fs

    bucket = f"gp-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(
        key="testing", secret="testing", client_kwargs={"endpoint_url": s3_endpoint}
    )
    fs.mkdir(bucket)
    monkeypatch.setenv("GOALPORT_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return f"s3://{bucket}/goalport"
