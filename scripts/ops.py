"""`make up` / `make down`: goalport's production topology on this machine, one command.

    python scripts/ops.py up       # start what is not running yet (idempotent)
    python scripts/ops.py down     # stop every process this script started
    python scripts/ops.py status   # which parts run, with their pids

The parts, each a process of its own (pid and log under var/ops/, or GOALPORT_OPS_DIR):
  s3           moto's S3 server: the object storage (bucket `goalport-ops`)
  code-server  `dagster code-server start -m pipelines.definitions`: the code location
  webserver    `dagster-webserver`, on the code server through var/ops/workspace.yaml
  daemon       `dagster-daemon run`: sensors, schedules, the run queue, run monitoring
  api          `goalport serve`, when this version of goalport has it

The Dagster instance is deploy/dagster.production.yaml (PostgreSQL storage, queued runs,
run monitoring and retries) on a database of its own on the local PostgreSQL server (the
one `make postgres` found: GOALPORT_TEST_PG_URL or var/test-pg-url); the app's database is
another one on the same server. Every goalport process runs with GOALPORT_PROFILE=production
and the secrets generated once into var/ops/secrets.env (owner-only).

The processes start in sessions of their own; `down` signals each process group by the pid
it recorded, and nothing else.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PARTS = ("s3", "code-server", "webserver", "daemon", "api")
BUCKET = "goalport-ops"
# `-a defs`: the module also holds each area's Definitions, which Dagster would refuse to
# choose from ("more than one Definitions object at module scope").
CODE_LOCATION = ["-m", "pipelines.definitions", "-a", "defs"]
DEFAULT_PORTS = {"s3": 5311, "code-server": 4266, "webserver": 3070, "api": 8080}


def ops_dir() -> Path:
    return Path(os.environ.get("GOALPORT_OPS_DIR") or REPO / "var" / "ops").resolve()


def server_url() -> str:
    url = os.environ.get("GOALPORT_TEST_PG_URL", "").strip()
    if not url and (REPO / "var" / "test-pg-url").exists():
        url = (REPO / "var" / "test-pg-url").read_text().strip()
    return url or "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def load_config() -> dict:
    """Ports, database names and secrets: made once, kept in var/ops/config.json and
    var/ops/secrets.env (both owner-only), so that `up` after `down` finds its data."""
    folder = ops_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    if path.exists():
        return json.loads(path.read_text())
    prefix = os.environ.get("GOALPORT_OPS_DB_PREFIX", "goalport_ops")
    config = {
        "ports": {
            part: int(os.environ.get(f"GOALPORT_OPS_{part.upper().replace('-', '_')}_PORT", port))
            for part, port in DEFAULT_PORTS.items()
        },
        "app_db": f"{prefix}_app",
        "dagster_db": f"{prefix}_dagster",
    }
    _write_private(path, json.dumps(config, indent=2))
    secrets_env = {
        "GOALPORT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "GOALPORT_DOWNLOAD_SECRET": secrets.token_hex(32),
        "GOALPORT_PSEUDONYM_KEY": secrets.token_hex(32),
    }
    _write_private(folder / "secrets.env", "".join(f"{k}={v}\n" for k, v in secrets_env.items()))
    return config


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def environment(config: dict) -> dict[str, str]:
    """The environment of every part: production profile, app database, S3 storage, the
    secrets, the Dagster instance's database."""
    folder = ops_dir()
    server = sa.make_url(server_url())
    app_url = server.set(database=config["app_db"]).render_as_string(hide_password=False)
    env = dict(os.environ)
    for line in (folder / "secrets.env").read_text().splitlines():
        name, _, value = line.partition("=")
        env[name] = value
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "DAGSTER_HOME": str(folder / "dagster-home"),
            "GOALPORT_PROFILE": "production",
            "GOALPORT_DATABASE_URL": app_url,
            "GOALPORT_STORAGE_URL": f"s3://{BUCKET}/storage",
            "GOALPORT_S3_ENDPOINT_URL": f"http://127.0.0.1:{config['ports']['s3']}",
            "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "goalport-ops"),
            "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "goalport-ops"),
            "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1"),
            "DAGSTER_PG_USERNAME": server.username or "postgres",
            "DAGSTER_PG_PASSWORD": server.password or "",
            "DAGSTER_PG_HOST": server.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(server.port or 5432),
            "DAGSTER_PG_DB": config["dagster_db"],
            # runs share this machine's cores: each forks its share of render workers
            "GOALPORT_RUNS_SHARING_CPUS": env.get("GOALPORT_RUNS_SHARING_CPUS", "2"),
            # the request sensor runs on every sensor loop (5 s apart), waiting 4 s of them
            "GOALPORT_REQUEST_TICK_SECONDS": env.get("GOALPORT_REQUEST_TICK_SECONDS", "1"),
            "GOALPORT_REQUEST_WAIT_SECONDS": env.get("GOALPORT_REQUEST_WAIT_SECONDS", "4"),
        }
    )
    return env


def commands(config: dict) -> dict[str, list[str]]:
    ports, workspace = config["ports"], str(ops_dir() / "workspace.yaml")
    host = ["-h", "127.0.0.1"]
    return {
        "s3": [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(ports["s3"])],
        "code-server": [str(BIN / "dagster"), "code-server", "start", *CODE_LOCATION, *host]
        + ["-p", str(ports["code-server"]), "--location-name", "goalport"],
        "webserver": [str(BIN / "dagster-webserver"), "-w", workspace, *host]
        + ["-p", str(ports["webserver"])],
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", workspace],
        "api": [str(BIN / "goalport"), "serve", "--host", "127.0.0.1", "--port", str(ports["api"])],
    }


def has_api() -> bool:
    """Whether this goalport has the `serve` command (the HTTP API)."""
    found = subprocess.run(
        [str(BIN / "goalport"), "serve", "--help"],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "GOALPORT_PROFILE": ""},
    )
    return found.returncode == 0


# ---------------------------------------------------------------- processes


def pid_file(part: str) -> Path:
    return ops_dir() / f"{part}.pid"


def running_pid(part: str) -> int | None:
    """The recorded pid of `part` if that process is alive (and not a zombie)."""
    path = pid_file(part)
    if not path.exists():
        return None
    pid = int(path.read_text().strip())
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return None if state == "Z" else pid


def start(part: str, argv: list[str], env: dict[str, str], port: int | None = None) -> int:
    if port is not None and port_open(port):
        raise SystemExit(f"{part}: port {port} is taken by another program; free it or set another")
    log = open(ops_dir() / f"{part}.log", "ab")
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    pid_file(part).write_text(str(process.pid))
    return process.pid


def stop(part: str, timeout: float = 20.0) -> bool:
    """SIGTERM the part's process group, SIGKILL it after `timeout`; True if it ran."""
    pid = running_pid(part)
    pid_file(part).unlink(missing_ok=True)
    if pid is None:
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        _signal_group(pid, signal.SIGKILL)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the part started a session of its own: its group id is its pid
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_for(what: str, ready, timeout: float, part: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if running_pid(part) is None:
            tail = (ops_dir() / f"{part}.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"{part} stopped while starting; its log ends:\n{tail}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} not ready after {timeout:.0f} s: see {ops_dir()}/{part}.log")
        time.sleep(0.3)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, http.client.HTTPException):
        return False


# ---------------------------------------------------------------- up, down, status


def prepare(config: dict, env: dict[str, str]) -> None:
    """The two databases (created if missing), the app schema, the Dagster home."""
    admin = sa.create_engine(server_url(), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        existing = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
        for name in (config["app_db"], config["dagster_db"]):
            if name not in existing:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    subprocess.run([str(BIN / "goalport"), "db", "upgrade"], cwd=REPO, env=env, check=True)
    home = ops_dir() / "dagster-home"
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "deploy" / "dagster.production.yaml", home / "dagster.yaml")
    port = config["ports"]["code-server"]
    (ops_dir() / "workspace.yaml").write_text(
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {port}\n      location_name: goalport\n"
    )


def create_bucket(env: dict[str, str]) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=env["GOALPORT_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)


def up(parts: tuple[str, ...] = PARTS) -> None:
    config = load_config()
    env = environment(config)
    ports = config["ports"]
    argv = commands(config)
    if "s3" in parts and running_pid("s3") is None:
        start("s3", argv["s3"], env, ports["s3"])
        wait_for("the S3 endpoint", lambda: port_open(ports["s3"]), 60, "s3")
    create_bucket(env)
    prepare(config, env)
    if "code-server" in parts and running_pid("code-server") is None:
        start("code-server", argv["code-server"], env, ports["code-server"])
    if "code-server" in parts:
        wait_for("the code server", lambda: port_open(ports["code-server"]), 180, "code-server")
    if "daemon" in parts and running_pid("daemon") is None:
        start("daemon", argv["daemon"], env)
    if "webserver" in parts and running_pid("webserver") is None:
        start("webserver", argv["webserver"], env, ports["webserver"])
    if "api" in parts and running_pid("api") is None:
        if has_api():
            start("api", argv["api"], env, ports["api"])
        else:
            print("api: this goalport has no `goalport serve` yet; not started")
    if "webserver" in parts:
        url = f"http://127.0.0.1:{ports['webserver']}"
        wait_for("the webserver", lambda: http_ok(url + "/server_info"), 180, "webserver")
        problem = location_error(url)
        if problem:
            raise SystemExit(f"the code location did not load: {problem}")
    status()


LOCATION_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def location_error(webserver_url: str) -> str | None:
    """The code location's load error as the webserver reports it, or None if it loaded."""
    request = urllib.request.Request(
        webserver_url + "/graphql",
        data=json.dumps({"query": LOCATION_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.load(response)
    for entry in answer["data"]["workspaceOrError"]["locationEntries"]:
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            return loaded["message"].strip().splitlines()[-1]
    return None


def down() -> None:
    for part in reversed(PARTS):
        if stop(part):
            print(f"{part}: stopped")


def status() -> None:
    config = load_config()
    for part in PARTS:
        pid = running_pid(part)
        port = config["ports"].get(part)
        where = f" on 127.0.0.1:{port}" if port else ""
        print(f"{part:12} {'running, pid ' + str(pid) + where if pid else 'stopped'}")
    print(f"logs and pids: {ops_dir()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("parts", nargs="*", help=f"with up: some of {', '.join(PARTS)}")
    args = parser.parse_args()
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    if args.command == "up":
        up(tuple(args.parts) or PARTS)
    elif args.command == "down":
        down()
    else:
        status()


if __name__ == "__main__":
    main()
