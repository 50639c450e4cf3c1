"""The service's own promises, against a real uvicorn: every error is the JSON error body
with its status and never a traceback; /healthz, /readyz (database and storage reachable)
and /metrics (Prometheus text); the OpenAPI 3.1 document is valid and served with docs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from resources.database import AppDatabase
from resources.storage import ObjectStorage


def _error(response: httpx.Response) -> dict:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return body["error"]


def test_errors_are_json_with_the_right_status(api, user_ids, make_token):
    with api.client(make_token(user_ids[0])) as client:
        bad_json = client.post(
            "/api/v1/data/export",
            content=b'{"exportType": "full",',
            headers={"Content-Type": "application/json"},
        )
        assert bad_json.status_code == 400 and _error(bad_json)["code"] == "invalid_json"
        missing = client.post("/api/v1/data/export", json={"exportType": "full"})
        assert missing.status_code == 422 and _error(missing)["field"] == "format"
        unknown_field = client.post(
            "/api/v1/data/export", json={"exportType": "full", "format": "json", "userId": "x"}
        )
        assert unknown_field.status_code == 422 and _error(unknown_field)["field"] == "userId"
        wrong_type = client.post(
            "/api/v1/data/export", json={"exportType": "gdpr", "format": "json"}
        )
        assert wrong_type.status_code == 422 and _error(wrong_type)["field"] == "exportType"
        too_big = client.post(
            "/api/v1/data/export",
            content=b'{"exportType": "full", "format": "json", "pad": "' + b"x" * 70_000 + b'"}',
            headers={"Content-Type": "application/json"},
        )
        assert too_big.status_code == 413 and _error(too_big)["code"] == "too_large"
        bad_limit = client.get("/api/v1/data/export", params={"limit": 0})
        assert bad_limit.status_code == 422 and _error(bad_limit)["field"] == "limit"
        nowhere = client.get("/api/v1/nowhere")
        assert nowhere.status_code == 404 and _error(nowhere)["code"] == "not_found"
        wrong_method = client.delete("/api/v1/data/export")
        assert wrong_method.status_code == 405 and _error(wrong_method)


def test_an_unexpected_error_is_a_500_without_a_traceback(start_api, api_config, caplog):
    def add_failing_route(app):
        def fail():
            raise RuntimeError("an internal detail the caller must not see")

        app.add_api_route("/api/v1/test-failure", fail)

    live = start_api(api_config, prepare=add_failing_route)
    caplog.set_level(logging.ERROR)
    with live.client() as client:
        response = client.get("/api/v1/test-failure")
    assert response.status_code == 500
    assert _error(response)["code"] == "internal_error"
    assert "internal detail" not in response.text and "Traceback" not in response.text
    logged = [r for r in caplog.records if r.name == "goalport.api"]
    assert logged and "internal detail" in (logged[0].exc_text or str(logged[0].exc_info))
    with live.client() as client:
        metrics = client.get("/metrics").text
    assert 'goalport_api_failures_total{route="/api/v1/test-failure"} 1.0' in metrics


def test_health_readiness_and_metrics(api, start_api, api_config, user_ids, make_token, tmp_path):
    with api.client() as client:
        assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "storage": "ok"}
    with api.client(make_token(user_ids[0])) as client:
        for _ in range(3):
            client.post("/api/v1/data/export", json={"exportType": "full", "format": "json"})
        client.get("/api/v1/data/export", params={"jobId": "exp_missing"})
        metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    requests = {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for s in families["goalport_api_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests[("/api/v1/data/export", "POST", "202")] == 3
    assert requests[("/api/v1/data/export", "GET", "404")] == 1
    queue = {s.labels["status"]: s.value for s in families["goalport_export_jobs"].samples}
    assert queue == {"pending": 3}
    latency = families["goalport_api_request_duration_seconds"].samples
    assert any(s.name.endswith("_count") and s.value == 3 for s in latency)

    broken_db = AppDatabase(url=api_config.database.url.rsplit("/", 1)[0] + "/gp_no_such_db")
    unready = start_api(replace(api_config, database=broken_db))
    with unready.client() as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unreachable", "storage": "ok"}


def test_readiness_fails_for_a_missing_bucket(start_api, api_config, s3_url):
    missing = ObjectStorage(url=s3_url.replace("s3://gp-", "s3://gone-"))
    live = start_api(replace(api_config, storage=missing))
    with live.client() as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["storage"] == "unreachable"


def test_openapi_document_is_valid_3_1_with_docs(api):
    with api.client() as client:
        document = client.get("/api/v1/openapi.json").json()
        docs = client.get("/api/v1/docs")
    assert document["openapi"].startswith("3.1")
    validate(document)
    assert {
        "/api/v1/data/export",
        "/api/v1/data/download/{token}",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= set(document["paths"])
    assert docs.status_code == 200 and "/api/v1/openapi.json" in docs.text
    export = document["paths"]["/api/v1/data/export"]
    assert {"202", "401", "403", "422", "429"} <= set(export["post"]["responses"])
    assert "bearer" in str(document["components"]["securitySchemes"]).lower()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_goalport_serve_runs_the_api_from_the_environment(database, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "GOALPORT_DATABASE_URL": database.url,
        "GOALPORT_STORAGE_URL": str(tmp_path / "storage"),
        "GOALPORT_DOWNLOAD_SECRET": "serve-test-download-secret-0123456789",  # 32 bytes at least
    }
    command = [sys.executable, "-m", "pipelines.cli.main"]
    short = subprocess.run(
        [*command, "serve", "--port", str(port)],
        env={**env, "GOALPORT_SERVICE_TOKEN": "too-short"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert short.returncode == 1 and "GOALPORT_SERVICE_TOKEN is 9 bytes" in short.stderr
    assert "too-short" not in short.stderr

    server = subprocess.Popen(
        [*command, "serve-downloads", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.3)
        assert ready.status_code == 200
        unauthenticated = httpx.get(f"http://127.0.0.1:{port}/api/v1/data/export")
        assert unauthenticated.status_code == 401
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "serve-downloads is deprecated: use `goalport serve`" in stderr
    # One access line per request, naming the route, never uvicorn's line with the path.
    assert '"GET /readyz" 200' in stderr and '"GET /api/v1/data/export" 401' in stderr
    assert "HTTP/1.1" not in stderr


def test_the_api_runs_on_the_embedded_sqlite_database(start_api, api_config, sqlite_url, tmp_path):
    from api.rate_limit import RateLimit
    from api.tokens import create_token
    from synthetic.seed import seed_database

    seed_database(sqlite_url, 1, seed=3, heavy_every=0)
    database = AppDatabase(url=sqlite_url)
    user = database.all_user_ids()[0]
    live = start_api(replace(api_config, database=database, token_limit=RateLimit(2, 3600)))
    secret = create_token(database.engine, user, ["exports"])[1]
    with live.client(secret) as client:
        job = client.post("/api/v1/data/export", json={"exportType": "full", "format": "csv"})
        assert job.status_code == 202
        status = client.get("/api/v1/data/export", params={"jobId": job.json()["jobId"]})
        assert status.json()["status"] == "pending"
        assert client.get("/api/v1/data/export").status_code == 429
