"""The fsspec filesystem of a destination, opened with the user's own credentials.

Each service through the implementation made for it: s3fs, adlfs (Azure Blob), gcsfs,
webdav4, sshfs (SFTP over asyncssh); Dropbox, Google Drive and OneDrive through
`resources.destinations.cloud_drives`. Credentials come only from the user's stored
secrets, never from goalport's own environment (an S3 destination without keys would
otherwise act with the operator's AWS identity). Every filesystem is a fresh instance, not
fsspec's cached one, so two users' credentials never meet.

Secrets each scheme reads (`credentials.py` stores them):

    s3       access_key_id, secret_access_key[, session_token]
    az       account_key | sas_token
    gs       service_account_json | access_token
    webdav   password[, username when the URL names none]
    sftp     private_key[, private_key_passphrase] | password; host_key (recorded when the
             destination is tested: `sftp_host_key`)
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping

import fsspec

from resources.destinations.errors import DestinationCredentialError, DestinationError
from resources.destinations.urls import CLOUD_DRIVES, Destination, allowed_destination

# Seconds before a destination that does not answer is given up (a setting tests shorten).
CONNECT_TIMEOUT = 30.0


def destination_filesystem(
    url: str,
    secrets: Mapping[str, str],
    save_secrets: Callable[[dict[str, str]], None],
) -> fsspec.AbstractFileSystem:
    """The filesystem of `url` (checked against every rule first) opened with `secrets`.
    `save_secrets` stores changed secrets (a refreshed OAuth token) for the next time."""
    destination = allowed_destination(url)
    if destination.scheme in CLOUD_DRIVES:
        try:  # by name: the module arrives with the cloud drives' own branch
            cloud_drives = importlib.import_module("resources.destinations.cloud_drives")
        except ImportError:
            raise DestinationError(
                f"{destination.scheme}:// destinations are not available in this installation"
            ) from None
        return cloud_drives.cloud_drive_filesystem(url, secrets, save_secrets)
    open_filesystem = _OPENERS[destination.protocol]
    return open_filesystem(destination, secrets)


def _required(secrets: Mapping[str, str], destination: Destination, *names: str) -> list[str]:
    missing = [n for n in names if not secrets.get(n)]
    if missing:
        raise DestinationCredentialError(
            f"{destination.scheme}:// destination at {destination.host}: no "
            f"{' or '.join(missing)} stored; configure the destination again"
        )
    return [secrets[n] for n in names]


def _s3(destination: Destination, secrets: Mapping[str, str]) -> fsspec.AbstractFileSystem:
    import s3fs

    key, secret = _required(secrets, destination, "access_key_id", "secret_access_key")
    client_kwargs = {"endpoint_url": destination.endpoint} if destination.endpoint else {}
    return s3fs.S3FileSystem(
        key=key,
        secret=secret,
        token=secrets.get("session_token") or None,
        client_kwargs=client_kwargs,
        config_kwargs={
            "connect_timeout": CONNECT_TIMEOUT,
            "retries": {"max_attempts": 2, "mode": "standard"},
        },
        skip_instance_cache=True,
    )


def _azure(destination: Destination, secrets: Mapping[str, str]) -> fsspec.AbstractFileSystem:
    import adlfs

    if not (secrets.get("account_key") or secrets.get("sas_token")):
        _required(secrets, destination, "account_key")
    options: dict = {
        "account_name": destination.account,
        "skip_instance_cache": True,
        "connection_timeout": int(CONNECT_TIMEOUT),
    }
    if secrets.get("sas_token"):
        options["sas_token"] = secrets["sas_token"]
    else:
        options["account_key"] = secrets["account_key"]
    if destination.endpoint:
        # an emulator or sovereign cloud: the endpoint is the account's blob service URL
        endpoint = destination.endpoint.rstrip("/")
        credential = (
            f"SharedAccessSignature={secrets['sas_token'].lstrip('?')}"
            if secrets.get("sas_token")
            else f"AccountKey={secrets['account_key']}"
        )
        options = {
            "connection_string": (
                f"AccountName={destination.account};{credential};BlobEndpoint={endpoint};"
            ),
            "account_name": destination.account,
            "skip_instance_cache": True,
        }
    return adlfs.AzureBlobFileSystem(**options)


def _gcs(destination: Destination, secrets: Mapping[str, str]) -> fsspec.AbstractFileSystem:
    # the JSON API's filesystem: gcsfs's default (ExtendedGcsFileSystem) first asks over
    # gRPC what kind of bucket it is, which an endpoint speaking only the JSON API (an
    # emulator, some S3-style gateways) answers with a minute-long timeout
    from gcsfs.core import GCSFileSystem

    token: object
    if secrets.get("service_account_json"):
        try:
            token = json.loads(secrets["service_account_json"])
        except ValueError:
            raise DestinationCredentialError(
                f"gs:// destination {destination.root.partition('/')[0]}: the stored service "
                "account key is not JSON"
            ) from None
    else:
        from google.oauth2.credentials import Credentials

        (access_token,) = _required(secrets, destination, "access_token")
        token = Credentials(token=access_token)
    options: dict = {
        "token": token,
        "skip_instance_cache": True,
        "requests_timeout": CONNECT_TIMEOUT,
    }
    if destination.endpoint:
        options["endpoint_url"] = destination.endpoint
    return GCSFileSystem(**options)


def _webdav(destination: Destination, secrets: Mapping[str, str]) -> fsspec.AbstractFileSystem:
    from webdav4.fsspec import WebdavFileSystem

    username = destination.username or secrets.get("username")
    if not username:
        raise DestinationCredentialError(
            f"webdav destination at {destination.host}: no user name; put it in the URL "
            "as webdav+https://user@host/folder"
        )
    (password,) = _required(secrets, destination, "password")
    return WebdavFileSystem(
        destination.base_url,
        auth=(username, password),
        timeout=CONNECT_TIMEOUT,
        follow_redirects=False,
    )


def _sftp(destination: Destination, secrets: Mapping[str, str]) -> fsspec.AbstractFileSystem:
    import asyncssh
    import sshfs

    (host_key,) = _required(secrets, destination, "host_key")
    options: dict = {
        "port": destination.port or 22,
        "username": destination.username,
        "known_hosts": asyncssh.import_known_hosts(
            f"{_known_hosts_name(destination)} {host_key}\n"
        ),
        "connect_timeout": CONNECT_TIMEOUT,
        "login_timeout": CONNECT_TIMEOUT,
        # only what is stored: no agent, no ~/.ssh of the goalport process
        "agent_path": None,
        "client_keys": [],
        "ignore_encrypted": True,
        "config": [],
        "skip_instance_cache": True,
    }
    if secrets.get("private_key"):
        try:
            key = asyncssh.import_private_key(
                secrets["private_key"], secrets.get("private_key_passphrase") or None
            )
        except (asyncssh.KeyImportError, ValueError):
            raise DestinationCredentialError(
                f"sftp destination at {destination.host}: the stored private key cannot be "
                "read (wrong passphrase or not an OpenSSH/PEM key)"
            ) from None
        options["client_keys"] = [key]
    elif secrets.get("password"):
        options["password"] = secrets["password"]
    else:
        _required(secrets, destination, "private_key")
    try:
        return sshfs.SSHFileSystem(destination.host, **options)
    except (OSError, asyncssh.Error) as exc:
        raise describe_failure(destination, exc) from None


def _known_hosts_name(destination: Destination) -> str:
    port = destination.port or 22
    return destination.host if port == 22 else f"[{destination.host}]:{port}"


def sftp_host_key(url: str) -> str:
    """The SSH host key the server at `url` presents (`ssh-ed25519 AAAA...`), to be shown as
    a fingerprint and recorded when the user tests the destination (trust on first use)."""
    import asyncio

    import asyncssh

    destination = allowed_destination(url)
    if destination.scheme != "sftp":
        raise DestinationError(f"{destination.scheme}:// has no SSH host key")

    async def fetch() -> asyncssh.SSHKey | None:
        return await asyncio.wait_for(
            asyncssh.get_server_host_key(destination.host, destination.port or 22),
            CONNECT_TIMEOUT,
        )

    try:
        key = asyncio.run(fetch())
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise DestinationError(
            f"sftp destination at {destination.host}: cannot reach the server "
            f"({type(exc).__name__})"
        ) from None
    if key is None:
        raise DestinationError(f"sftp destination at {destination.host}: no host key offered")
    return key.export_public_key("openssh").decode().strip()


def host_key_fingerprint(host_key: str) -> str:
    import asyncssh

    return asyncssh.import_public_key(host_key).get_fingerprint("sha256")


_OPENERS: dict[str, Callable[[Destination, Mapping[str, str]], fsspec.AbstractFileSystem]] = {
    "s3": _s3,
    "az": _azure,
    "gs": _gcs,
    "webdav": _webdav,
    "sftp": _sftp,
}


def describe_failure(destination: Destination, exc: BaseException) -> DestinationError:
    """A service's exception as the DestinationError a job row and a user can act on: a
    refused credential becomes DestinationCredentialError. Never quotes the exception's
    text, which may hold a signed URL or a token."""
    if isinstance(exc, DestinationError):
        return exc
    where = f"{destination.scheme}:// destination at {destination.host}"
    if _is_refusal(exc):
        return DestinationCredentialError(
            f"{where} refused goalport's credentials ({_status_of(exc) or type(exc).__name__}): "
            "they were revoked, expired or changed; reconnect the destination"
        )
    return DestinationError(f"{where} failed: {type(exc).__name__}{_status_suffix(exc)}")


def _status_of(exc: BaseException) -> str | None:
    for attribute in ("status_code", "status", "code"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return f"HTTP {value}"
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    return None


def _status_suffix(exc: BaseException) -> str:
    status = _status_of(exc)
    return f" ({status})" if status else ""


_REFUSING_NAMES = (
    "PermissionDenied",  # asyncssh: authentication failed
    "SFTPPermissionDenied",
    "ClientAuthenticationError",  # azure.core
    "RefreshError",  # google.auth
    "Unauthorized",
    "Forbidden",
)


def _is_refusal(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it wraps) says the credentials were refused."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PermissionError):
            return True
        if isinstance(current, OSError) and str(current).startswith("Forbidden"):
            return True  # gcsfs's 403
        if type(current).__name__ in _REFUSING_NAMES:
            return True
        status = _status_of(current)
        if status in ("HTTP 401", "HTTP 403"):
            return True
        current = current.__cause__ or current.__context__
    return False
