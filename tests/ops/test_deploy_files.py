"""What can be checked here of deploy/ without Docker, Kubernetes or Helm: the image's
entry point, run as a plain process in the production profile, serves the code location
(and names what is missing when a secret is not given); the compose file wires the parts
of `make up`; the Helm values agree with the production instance and the jobs' tags."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import dagster_pg_environment

from pipelines.definitions import defs
from resources import run_policy

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent


def dockerfile_instruction(name: str) -> list[str]:
    lines = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    (found,) = [line for line in lines if line.startswith(name + " ")]
    return json.loads(found[len(name) + 1 :])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def entry_point(port: int) -> list[str]:
    """The image's ENTRYPOINT, with this venv's programs and a free loopback port."""
    argv = dockerfile_instruction("ENTRYPOINT")
    argv[0] = str(BIN / argv[0])
    argv[argv.index("-p") + 1] = str(port)
    argv[argv.index("-h") + 1] = "127.0.0.1"
    return argv


def test_the_image_is_multi_stage_and_runs_as_a_user_without_rights():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) >= 2 and stages[-1].endswith("AS runtime")
    (user,) = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert user not in ("0", "root")
    argv = dockerfile_instruction("ENTRYPOINT")
    assert argv[:3] == ["dagster", "code-server", "start"]
    assert "pipelines.definitions" in argv and argv[argv.index("-a") + 1] == "defs"
    for path in ("deploy/dagster.production.yaml", "deploy/workspace.compose.yaml"):
        assert f"COPY {path} " in text


@pytest.fixture
def production_env(tmp_path, pg_url, s3_url, dagster_pg_url):
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.production.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        **dagster_pg_environment(dagster_pg_url),
        "PYTHONPATH": str(REPO),
        "DAGSTER_HOME": str(home),
        "GOALPORT_PROFILE": "production",
        "GOALPORT_DATABASE_URL": pg_url,
        "GOALPORT_STORAGE_URL": s3_url,
        "GOALPORT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "GOALPORT_DOWNLOAD_SECRET": os.urandom(32).hex(),
        "GOALPORT_PSEUDONYM_KEY": os.urandom(32).hex(),
    }
    return env


def serve(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv,
            cwd=log.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its gRPC children stop with it
        )


def stop(server: subprocess.Popen) -> None:
    """SIGTERM to the server and its children; SIGKILL if they are still up after 30 s (a
    busy machine can take that long to shut a code server down)."""
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


@pytest.mark.slow
def test_the_entry_point_serves_the_code_location_in_the_production_profile(
    production_env, tmp_path
):
    port = free_port()
    server = serve(entry_point(port), production_env, tmp_path / "code-server.log")
    try:
        health = [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(port)]
        deadline = time.monotonic() + 120
        while subprocess.run(health, capture_output=True, env=production_env).returncode != 0:
            assert server.poll() is None, (tmp_path / "code-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the code server never became healthy"
            time.sleep(1)
        listed = subprocess.run(
            [str(BIN / "dagster"), "job", "list", "--grpc-port", str(port)]
            + ["--grpc-host", "127.0.0.1"],
            capture_output=True,
            text=True,
            env=production_env,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        for job in ("export_job", "import_apply_job", "gdpr_bulk_job", "erasure_job"):
            assert job in listed.stdout
    finally:
        stop(server)


@pytest.mark.slow
def test_the_entry_point_without_a_secret_says_which_one(production_env, tmp_path):
    env = {k: v for k, v in production_env.items() if k != "GOALPORT_PSEUDONYM_KEY"}
    log = tmp_path / "code-server.log"
    server = serve(entry_point(free_port()), env, log)
    try:
        deadline = time.monotonic() + 120
        while "SettingError" not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        text = log.read_text()
        assert "GOALPORT_PSEUDONYM_KEY is not set" in text
        assert production_env["GOALPORT_MASTER_KEY"] not in text
    finally:
        stop(server)


def test_compose_wires_the_topology_of_make_up():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "s3", "code-server", "webserver", "daemon", "api"} <= set(services)
    for name in ("code-server", "webserver", "daemon", "api", "migrate"):
        assert services[name]["environment"]["GOALPORT_PROFILE"] == "production"
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/workspace.yaml" in services[name]["entrypoint"]
    workspace = yaml.safe_load((DEPLOY / "workspace.compose.yaml").read_text())
    (location,) = workspace["load_from"]
    assert location["grpc_server"] == {
        "host": "code-server",
        "port": 4000,
        "location_name": "goalport",
    }
    assert "CREATE DATABASE dagster" in (DEPLOY / "initdb" / "10-dagster.sql").read_text()


def test_helm_values_launch_a_pod_per_run_sized_by_the_jobs_tags():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "pipelines.definitions", "-a", "defs"]
    assert deployment["securityContext"]["runAsNonRoot"] is True
    limits = values["concurrency"]["runs"]["tagConcurrencyLimits"]
    production = yaml.safe_load((DEPLOY / "dagster.production.yaml").read_text())
    local_limits = production["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {(x["key"], x["value"]) for x in limits} == {
        (x["key"], x["value"]) for x in local_limits
    }
    daemon = values["dagsterDaemon"]
    assert daemon["runMonitoring"]["enabled"] and daemon["runRetries"]["enabled"]
    # limits live under `concurrency` only; the coordinator says only how often it looks
    coordinator = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert coordinator == {"dequeueIntervalSeconds": 1}
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        k8s = json.loads(job.tags["dagster-k8s/config"])
        requests = k8s["container_config"]["resources"]["requests"]
        assert requests == k8s["container_config"]["resources"]["limits"]
        assert (requests["cpu"], requests["memory"]) == run_policy.POD_RESOURCES[
            job.tags[run_policy.KIND_TAG]
        ]


TEST_ONLY = ("pytest", "pytest-xdist", "moto", "hypothesis", "frictionless", "ruff", "mypy",
             "schemathesis", "playwright", "standardwebhooks", "openapi-spec-validator")  # fmt: skip


def locked(path: Path) -> dict[str, str]:
    """name -> version of a `uv pip compile` lock (names normalised as pip does)."""
    pins = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith((" ", "#")) and "==" in line:
            name, _, version = line.partition("==")
            pins[name.split("[")[0].strip().lower().replace("_", "-")] = version.split()[0]
    return pins


def test_the_runtime_lock_holds_no_test_tool_and_agrees_with_the_test_lock():
    runtime, with_tests = (
        locked(REPO / "requirements.lock"),
        locked(REPO / "requirements-test.lock"),
    )
    assert {"dagster", "great-expectations", "fastapi", "uvicorn"} <= set(runtime)
    assert [name for name in TEST_ONLY if name in runtime] == []
    assert set(TEST_ONLY) <= set(with_tests)
    # the test set is the runtime set plus the test extra, at the same versions
    assert {n: v for n, v in with_tests.items() if n in runtime} == runtime
    # the image installs the runtime lock; `make install` the test lock
    instructions = [
        line
        for line in (DEPLOY / "Dockerfile").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert any("-r requirements.lock" in line for line in instructions)
    assert not any("requirements-test.lock" in line for line in instructions)
    makefile = (REPO / "Makefile").read_text()
    assert "-r requirements-test.lock" in makefile
    assert "--extra test -p 3.11 --no-header -o requirements-test.lock" in makefile
    assert "-p 3.11 --no-header -o requirements.lock" in makefile
