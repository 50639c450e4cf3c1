"""A real uvicorn serving the API on a free loopback port, over the test's own PostgreSQL
database (three seeded users) and storage, and helpers to get tokens for it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.config import ApiConfig
from api.rate_limit import RateLimit
from api.tokens import create_token
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from synthetic.seed import seed_database

DOWNLOAD_SECRET = b"api-test-download-secret-0123456789"
SERVICE_TOKEN = "svc-" + "7" * 60


@pytest.fixture
def pg_url(pg_url):
    """The test's database, seeded with three users."""
    seed_database(pg_url, 3, seed=16, heavy_every=0)
    return pg_url


@dataclass
class LiveApi:
    base_url: str
    config: ApiConfig
    app: object

    def client(self, token: str | None = None, **headers: str) -> httpx.Client:
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_in_thread(app) -> tuple[uvicorn.Server, threading.Thread, int]:
    """uvicorn serving `app` on a free loopback port in a thread, started; stop it with
    `stop_server` (module-scoped fixtures use these two directly)."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,  # as `api.app.serve` runs it
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    return server, thread, port


def stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def start_api() -> Iterator[Callable[..., LiveApi]]:
    """Start uvicorn with a config (and the app's extra test routes, if any) in a thread."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(config: ApiConfig, prepare: Callable | None = None) -> LiveApi:
        app = create_app(config)
        if prepare:
            prepare(app)
        server, thread, port = serve_in_thread(app)
        servers.append((server, thread))
        return LiveApi(f"http://127.0.0.1:{port}", config, app)

    yield start
    for server, thread in servers:
        stop_server(server, thread)


@pytest.fixture
def api_config(database: AppDatabase, storage: ObjectStorage) -> ApiConfig:
    return ApiConfig(
        database=database,
        storage=storage,
        download_secret=DOWNLOAD_SECRET,
        service_token=SERVICE_TOKEN,
        token_limit=RateLimit(1000, 60),
        service_limit=RateLimit(1000, 60),
    )


@pytest.fixture
def api(start_api, api_config) -> LiveApi:
    return start_api(api_config)


@pytest.fixture
def s3_api(start_api, api_config, s3_url) -> LiveApi:
    """The API over a bucket of the moto S3 server."""
    return start_api(replace(api_config, storage=ObjectStorage(url=s3_url)))


@pytest.fixture
def user_ids(database: AppDatabase) -> list[str]:
    return sorted(database.all_user_ids())


@pytest.fixture
def make_token(database: AppDatabase):
    def make(user_id: str, scopes=("exports",), **options) -> str:
        return create_token(database.engine, user_id, scopes, **options)[1]

    return make
