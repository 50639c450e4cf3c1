"""The loopback servers of tests/destinations/servers.py, as session fixtures here; the fake
cloud drives (tests/destinations/fake_clouds.py) with goalport's settings pointed at them;
goalport's API on loopback for the OAuth callbacks."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from api.app import create_app
from api.config import ApiConfig
from api.rate_limit import RateLimit
from tests.destinations.fake_clouds import (
    make_fake,
    point_goalport_at,
    serve,
    stop,
)
from tests.destinations.servers import (  # noqa: F401 - fixtures
    azurite_server,
    gcs_server,
    s3_auth_server,
    ssh_server,
    webdav_server,
)
from tests.http_api.conftest import serve_in_thread, stop_server

# one request carries the smallest chunk goalport allows, so a few MB take several requests
CHUNK = 1280 * 1024


@pytest.fixture
def chunked(monkeypatch):
    monkeypatch.setenv("GOALPORT_CLOUD_DRIVE_CHUNK_BYTES", str(CHUNK))
    monkeypatch.setenv("GOALPORT_CLOUD_DRIVE_TIMEOUT_SECONDS", "10")
    return CHUNK


@pytest.fixture
def start_fake(monkeypatch, chunked):
    """start_fake("dropbox" | "gdrive" | "onedrive") -> the running fake, goalport pointed at it."""
    running = []

    def start(provider: str):
        fake = make_fake(provider)
        running.append(serve(fake))
        point_goalport_at(fake, monkeypatch)
        return fake

    yield start
    for serving in running:
        stop(serving)


@dataclass
class LiveApi:
    base_url: str

    def client(self, token: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


@pytest.fixture
def start_api(database, storage):
    """start_api() -> goalport's API on uvicorn on a free loopback port, on this test's
    database and storage."""
    running = []

    def start() -> LiveApi:
        config = ApiConfig(
            database=database,
            storage=storage,
            download_secret=b"destinations-test-download-secret-0123",
            token_limit=RateLimit(1000, 60),
        )
        server, thread, port = serve_in_thread(create_app(config))
        running.append((server, thread))
        return LiveApi(f"http://127.0.0.1:{port}")

    yield start
    for server, thread in running:
        stop_server(server, thread)
