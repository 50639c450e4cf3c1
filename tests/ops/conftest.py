"""Fixtures of the operations tests: an empty PostgreSQL database for a Dagster instance
(Dagster keeps its own alembic_version table, so never the app's database)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

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


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    """A PostgreSQL cluster of one test's own, in a temporary folder, on a free loopback
    port, run as a non-root user (`nobody` when the tests run as root, since PostgreSQL
    refuses root; the current user otherwise), so that a test may stop and restart it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.data = folder / "data"
        self.port = _free_port()
        self.run_as = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self.run_as, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        if self.run_as:
            shutil.chown(self.folder, user="nobody")
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.folder}'\nfsync = off\n"
            )
        self.start()
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", "postgres", "goalport")  # fmt: skip

    def start(self) -> None:
        log = str(self.folder / "server.log")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "start")

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/goalport"


@pytest.fixture
def private_cluster():
    """A started private PostgreSQL cluster with an empty `goalport` database; stopped and
    removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="goalport-pg-"))
    folder.chmod(0o755)
    cluster = PrivateCluster(folder)
    try:
        cluster.init()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
