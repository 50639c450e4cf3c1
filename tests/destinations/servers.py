"""Real servers on loopback for users' destinations, each started once per test session
(`make test` installs what they need: Python packages from the test extra, OpenSSH's
`sshd` and Node for Azurite through `system-deps`, Azurite under var/npm).

- S3: moto's server in its own process with IAM authentication on (moto checks
  signatures only when told to, process-wide), so an access key can be revoked.
- Azure Blob: Azurite, Microsoft's emulator. Users get a container SAS bound to a stored
  access policy; deleting the policy revokes it, as on Azure.
- GCS: gcp-storage-emulator. It checks no credentials, so its request handler here is
  wrapped in a bearer-token gate (the one thing added) so that access can be revoked.
- WebDAV: WsgiDAV on cheroot with basic authentication; its user table is live, so a
  password can be revoked, also in the middle of an upload (`revoke_after_put`).
- SFTP: OpenSSH's sshd, with a generated host key and user key, the sftp subsystem only;
  each place has its own key; taking it out of `authorized_keys` revokes it.

Each fixture yields an object that hands out a destination URL of a fresh folder, the
secrets to store for it, and `revoke()`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {START_TIMEOUT} s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# ---------------------------------------------------------------- WebDAV (WsgiDAV)


@dataclass
class WebDavServer:
    port: int
    root: Path
    users: dict  # WsgiDAV's live user table: {name: {"password": ...}}
    revoke_after_put: bool = False

    def new_place(self) -> tuple[str, dict[str, str]]:
        user = f"u{uuid.uuid4().hex[:8]}"
        password = f"pw-{uuid.uuid4().hex}"
        self.users[user] = {"password": password, "description": "", "roles": []}
        folder = f"dav-{uuid.uuid4().hex[:8]}"
        (self.root / folder).mkdir()
        return f"webdav+http://{user}@127.0.0.1:{self.port}/{folder}/goalport", {
            "password": password
        }

    def revoke(self, url: str) -> None:
        user = url.split("://", 1)[1].split("@", 1)[0]
        self.users.pop(user, None)


@pytest.fixture(scope="session")
def webdav_server(tmp_path_factory) -> Iterator[WebDavServer]:
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp

    root = tmp_path_factory.mktemp("webdav")
    port = free_port()
    # WsgiDAV wants a user to start with: one nobody knows the password of
    users: dict = {"nobody": {"password": uuid.uuid4().hex, "description": "", "roles": []}}
    app = WsgiDAVApp(
        {
            "host": "127.0.0.1",
            "port": port,
            "provider_mapping": {"/": str(root)},
            "simple_dc": {"user_mapping": {"*": users}},
            "http_authenticator": {
                "accept_basic": True,
                "accept_digest": False,
                "default_to_digest": False,
            },
            "verbose": 1,
            "logging": {"enable": False},
            "property_manager": True,
            "lock_storage": True,
        }
    )
    live_users = app.http_authenticator.domain_controller.user_map["*"]
    server_state = WebDavServer(port, root, live_users)

    def gate(environ, start_response):
        try:
            yield from app(environ, start_response)  # WsgiDAV does the work as it is iterated
        finally:
            if environ["REQUEST_METHOD"] == "PUT" and server_state.revoke_after_put:
                live_users.clear()  # every password stops working as the upload ends

    server = wsgi.Server(("127.0.0.1", port), gate, numthreads=8, shutdown_timeout=1)
    server.prepare()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    wait_for_port(port)
    yield server_state
    server.stop()
    thread.join(10)


# ---------------------------------------------------------------- SFTP (OpenSSH sshd)


@dataclass
class SshServer:
    port: int
    root: Path
    user: str
    authorized_keys: Path
    allowed: dict[str, str] = field(default_factory=dict)  # URL -> its public key

    def new_place(self) -> tuple[str, dict[str, str]]:
        import asyncssh

        folder = self.root / f"sftp-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        url = f"sftp://{self.user}@127.0.0.1:{self.port}{folder}/goalport"
        key = asyncssh.generate_private_key("ssh-ed25519")
        self.allowed[url] = key.export_public_key("openssh").decode().strip()
        self._write()
        return url, {"private_key": key.export_private_key("openssh").decode()}

    def revoke(self, url: str) -> None:
        self.allowed.pop(url, None)
        self._write()

    def _write(self) -> None:
        self.authorized_keys.write_text("".join(k + "\n" for k in self.allowed.values()))


def sshd_path() -> str:
    found = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(found):
        raise RuntimeError("OpenSSH's sshd is missing: `make test` installs openssh-server")
    return found


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory) -> Iterator[SshServer]:
    import asyncssh

    work = tmp_path_factory.mktemp("sshd")
    root = tmp_path_factory.mktemp("sftp-root")
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    (work / "host_key").write_bytes(host_key.export_private_key("openssh"))
    (work / "host_key").chmod(0o600)
    authorized = work / "authorized_keys"
    authorized.write_text("")
    port = free_port()
    user = getpass.getuser()
    (work / "sshd_config").write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {work / 'host_key'}",
                f"PidFile {work / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "StrictModes no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                "Subsystem sftp internal-sftp",
                "ForceCommand internal-sftp",
                "MaxStartups 50",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege-separation folder
    process = subprocess.Popen(
        [sshd_path(), "-D", "-e", "-f", str(work / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "sshd.log", "wb"),  # noqa: SIM115 - kept open while it runs
    )
    try:
        wait_for_port(port, process)
        yield SshServer(port, root, user, authorized)
    finally:
        stop(process)


# ---------------------------------------------------------------- S3 (moto, IAM on)


@dataclass
class S3Server:
    endpoint: str
    admin: dict[str, str]
    keys_of: dict[str, str] = field(default_factory=dict)  # bucket -> its user's key id

    def _client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.admin["access_key_id"],
            aws_secret_access_key=self.admin["secret_access_key"],
        )

    def new_place(self) -> tuple[str, dict[str, str]]:
        bucket = f"dest-{uuid.uuid4().hex[:12]}"
        self._client("s3").create_bucket(Bucket=bucket)
        iam = self._client("iam")
        iam.create_user(UserName=bucket)
        iam.put_user_policy(
            UserName=bucket,
            PolicyName="own-bucket",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "s3:*",
                            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                        }
                    ],
                }
            ),
        )
        key = iam.create_access_key(UserName=bucket)["AccessKey"]
        self.keys_of[bucket] = key["AccessKeyId"]
        url = f"s3://{bucket}/goalport?endpoint={self.endpoint}"
        return url, {
            "access_key_id": key["AccessKeyId"],
            "secret_access_key": key["SecretAccessKey"],
        }

    def revoke(self, url: str) -> None:
        bucket = url.split("://", 1)[1].split("/", 1)[0]
        self._client("iam").delete_access_key(UserName=bucket, AccessKeyId=self.keys_of[bucket])


@pytest.fixture(scope="session")
def s3_auth_server(tmp_path_factory) -> Iterator[S3Server]:
    import boto3

    port = free_port()
    env = {
        **os.environ,
        # the first three requests (making the admin) need no signature; every later one does
        "INITIAL_NO_AUTH_ACTION_COUNT": "3",
        "AWS_ACCESS_KEY_ID": "bootstrap",
        "AWS_SECRET_ACCESS_KEY": "bootstrap",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        endpoint = f"http://127.0.0.1:{port}"
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin",
            PolicyName="all",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        yield S3Server(
            endpoint,
            {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]},
        )
    finally:
        stop(process)


# ---------------------------------------------------------------- GCS (gcp-storage-emulator)


@dataclass
class GcsServer:
    endpoint: str
    tokens: set[str]
    storage: object
    token_of: dict[str, str] = field(default_factory=dict)

    def new_place(self) -> tuple[str, dict[str, str]]:
        from gcp_storage_emulator.handlers import buckets

        bucket = f"dest-{uuid.uuid4().hex[:12]}"
        buckets.create_bucket(bucket, self.storage)
        token = f"ya29.{uuid.uuid4().hex}"
        self.tokens.add(token)
        url = f"gs://{bucket}/goalport?endpoint={self.endpoint}"
        self.token_of[url] = token
        return url, {"access_token": token}

    def revoke(self, url: str) -> None:
        self.tokens.discard(self.token_of[url])


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory) -> Iterator[GcsServer]:
    from http import server as http_server

    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    tokens: set[str] = set()

    class TokenGate(RequestHandler):
        """The emulator's handler, answering 403 to a request without a live token."""

        def _refused(self) -> bool:
            header = self.headers.get("Authorization", "")
            if header.removeprefix("Bearer ").strip() in tokens:
                return False
            # what Google answers once the caller's access to the bucket was removed (a 401
            # "Invalid Credentials" would make gcsfs wait half a minute for a token refresh)
            body = b'{"error": {"code": 403, "message": "The caller does not have permission"}}'
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True

        def do_GET(self):
            if not self._refused():
                super().do_GET()

        def do_POST(self):
            if not self._refused():
                super().do_POST()

        def do_PUT(self):
            if not self._refused():
                super().do_PUT()

        def do_DELETE(self):
            if not self._refused():
                super().do_DELETE()

        def do_PATCH(self):
            if not self._refused():
                super().do_PATCH()

    storage = Storage(use_memory_fs=False, data_dir=str(tmp_path_factory.mktemp("gcs")))
    port = free_port()
    httpd = http_server.ThreadingHTTPServer(("127.0.0.1", port), partial(TokenGate, storage))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    wait_for_port(port)
    yield GcsServer(f"http://127.0.0.1:{port}", tokens, storage)
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


# ---------------------------------------------------------------- Azure Blob (Azurite)

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's documented development account key (public, the same in every installation).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def azurite_path() -> str:
    found = REPO / "var" / "npm" / "node_modules" / ".bin" / "azurite-blob"
    if not found.exists():
        raise RuntimeError("Azurite is missing: `make test` installs it under var/npm")
    return str(found)


@dataclass
class AzureServer:
    endpoint: str
    policies: dict[str, str] = field(default_factory=dict)  # container -> policy id

    def _service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(
            account_url=self.endpoint,
            credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
        )

    def new_place(self) -> tuple[str, dict[str, str]]:
        import datetime as dt

        from azure.storage.blob import AccessPolicy, ContainerSasPermissions, generate_container_sas

        container = f"dest-{uuid.uuid4().hex[:12]}"
        client = self._service().create_container(container)
        policy = f"goalport-{uuid.uuid4().hex[:8]}"
        client.set_container_access_policy(
            signed_identifiers={
                policy: AccessPolicy(
                    permission=ContainerSasPermissions(
                        read=True, write=True, delete=True, list=True, add=True, create=True
                    ),
                    expiry=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
                    start=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
                )
            }
        )
        self.policies[container] = policy
        sas = generate_container_sas(
            AZURITE_ACCOUNT, container, account_key=AZURITE_KEY, policy_id=policy
        )
        url = f"az://{container}/goalport?account={AZURITE_ACCOUNT}&endpoint={self.endpoint}"
        return url, {"sas_token": sas}

    def revoke(self, url: str) -> None:
        container = url.split("://", 1)[1].split("/", 1)[0]
        self._service().get_container_client(container).set_container_access_policy(
            signed_identifiers={}
        )


@pytest.fixture(scope="session")
def azurite_server(tmp_path_factory) -> Iterator[AzureServer]:
    location = tmp_path_factory.mktemp("azurite")
    port = free_port()
    process = subprocess.Popen(
        [
            azurite_path(),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--silent",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield AzureServer(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    finally:
        stop(process)
