"""Fixtures of the import tests: the app database on the test's own PostgreSQL database,
and object storage in a folder of the test's own."""

from __future__ import annotations

import pytest

from resources.database import AppDatabase
from resources.storage import ObjectStorage


@pytest.fixture
def database(pg_url):
    database = AppDatabase(url=pg_url)
    yield database
    database.engine.dispose()


@pytest.fixture
def storage(tmp_path):
    return ObjectStorage(url=str(tmp_path / "storage"))
