"""The loopback servers of tests/destinations/servers.py, as session fixtures here; the fake
cloud drives (tests/destinations/fake_clouds.py) with goalport's settings pointed at them;
goalport's API on loopback for the OAuth callbacks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.config import ApiConfig
from api.rate_limit import RateLimit
from tests.destinations.fake_clouds import (
    free_port,
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
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(config),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        running.append((server, thread))
        return LiveApi(f"http://127.0.0.1:{port}")

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)
