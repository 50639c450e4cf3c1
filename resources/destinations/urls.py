"""Destination URLs: what users may write, what each part means, and who may go where.

    s3://bucket/prefix[?endpoint=https://s3.example.com]      any S3-compatible service
    az://container/prefix?account=NAME[&endpoint=URL]         Azure Blob Storage
    gs://bucket/prefix[?endpoint=URL]                         Google Cloud Storage
    webdav+https://[user@]host[:port]/path                    WebDAV (Nextcloud, ownCloud)
    webdav+http://[user@]127.0.0.1:port/path                  plain http: loopback only
    sftp://user@host[:port]/path                              SFTP (OpenSSH)
    dropbox://path  gdrive://path  onedrive://path            OAuth-connected drives

Passwords, keys and tokens never go into a URL (one that holds a password is refused
without echoing it): they are given once and stored wrapped (`credentials.py`). The
operator narrows the choice with `GOALPORT_DESTINATIONS_ALLOW` (`resources/settings.py`):
comma-separated `scheme` or `scheme://host` entries (`*.example.com` matches below it).
Whatever the list says, plain http goes only to loopback and nothing goes to a local path
or into goalport's own storage.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from resources.destinations.errors import DestinationError, DestinationNotAllowed
from resources.settings import destinations_allow, s3_endpoint_url, storage_url

OBJECT_STORES = ("s3", "az", "gs")
SERVERS = ("webdav+https", "webdav+http", "sftp")
CLOUD_DRIVES = ("dropbox", "gdrive", "onedrive")
SCHEMES = (*OBJECT_STORES, *SERVERS, *CLOUD_DRIVES)
# Where an object store's requests go when the URL names no endpoint (for the allow-list).
DEFAULT_HOSTS = {
    "s3": "s3.amazonaws.com",
    "gs": "storage.googleapis.com",
    "az": "{account}.blob.core.windows.net",
    "dropbox": "api.dropboxapi.com",
    "gdrive": "www.googleapis.com",
    "onedrive": "graph.microsoft.com",
}
_QUERY_OPTIONS = {"s3": {"endpoint"}, "gs": {"endpoint"}, "az": {"account", "endpoint"}}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class Destination:
    """A parsed destination URL. `root` is the folder in the service's own terms
    (`bucket/prefix`, `/path`), `host` where requests go (checked against the allow-list)."""

    url: str  # as given, without a trailing '/'; it holds no secret
    scheme: str
    host: str
    port: int | None
    root: str
    username: str | None = None
    endpoint: str | None = None  # s3/gs/az: the service's base URL when not the public one
    account: str | None = None  # az: the storage account

    @property
    def protocol(self) -> str:
        """The fsspec protocol of this destination's filesystem."""
        return {"webdav+https": "webdav", "webdav+http": "webdav"}.get(self.scheme, self.scheme)

    @property
    def base_url(self) -> str:
        """webdav: the server's URL (scheme, host and port) that `root` is below."""
        scheme = self.scheme.removeprefix("webdav+")
        port = f":{self.port}" if self.port else ""
        return f"{scheme}://{_bracketed(self.host)}{port}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _clean_path(path: str, what: str) -> str:
    if any(ord(c) < 32 or c == "\x7f" for c in path) or "\\" in path:
        raise DestinationError(f"destination {what}: the path holds a control character or '\\'")
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise DestinationError(f"destination {what}: the path may not hold '.' or '..' parts")
    return "/".join(parts)


def parse_destination(url: str) -> Destination:
    """Check a destination URL's syntax and the rules no operator can lift; DestinationError
    (or DestinationNotAllowed) names what is wrong, never a secret."""
    url = (url or "").strip()
    if "://" not in url:
        raise DestinationNotAllowed(
            "a destination is a URL such as s3://bucket/folder or sftp://user@host/folder; "
            "a local path is not a destination (the operator's --out is)"
        )
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    base, separator, query = rest.partition("?")
    url = f"{scheme}://{base.rstrip('/')}{separator}{query}"  # one spelling per place
    if scheme in ("file", "local", "memory"):
        raise DestinationNotAllowed(f"{scheme}:// is a local path, not a destination")
    if scheme not in SCHEMES:
        raise DestinationError(
            f"{scheme}:// is not a supported destination; use one of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 (an unbalanced "[" fails here, not only in urlsplit)
    except ValueError:
        raise DestinationError(
            f"{scheme}:// destination: not a URL that can be read (unbalanced brackets?)"
        ) from None
    shown = f"{scheme}://{parts.hostname or ''}"  # what error messages may show of the URL
    try:
        port = parts.port
    except ValueError:
        raise DestinationError(f"destination {shown}: the port is not a number 1-65535") from None
    if parts.password is not None:
        raise DestinationError(
            f"destination {shown}: the URL holds a password; give it when asked instead "
            "(it is stored encrypted, never in the URL)"
        )
    if parts.fragment:
        raise DestinationError(f"destination {shown}: a URL fragment ('#...') has no meaning here")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - _QUERY_OPTIONS.get(scheme, set()))
    if unknown:
        raise DestinationError(f"destination {shown}: unknown option {', '.join(unknown)}")
    if scheme in OBJECT_STORES:
        return _object_store(url, scheme, parts.netloc, parts.path, options, shown)
    if scheme in CLOUD_DRIVES:
        if parts.username is not None or port is not None:
            raise DestinationError(f"destination {shown}: the account comes from connecting it")
        path = _clean_path(f"{parts.netloc}/{parts.path}", shown)
        return Destination(url, scheme, DEFAULT_HOSTS[scheme], None, path)
    host = (parts.hostname or "").lower()
    if not host:
        raise DestinationError(f"destination {scheme}://: the URL names no host")
    username = parts.username
    if username is not None and not _USER.match(username):
        raise DestinationError(f"destination {shown}: the user name holds characters not allowed")
    if scheme == "sftp" and not username:
        raise DestinationError(f"destination {shown}: name the user, as sftp://user@host/folder")
    if scheme == "webdav+http" and not is_loopback(host):
        raise DestinationNotAllowed(
            f"destination {shown}: plain http is allowed to loopback only; use webdav+https://"
        )
    root = "/" + _clean_path(parts.path, shown)
    return Destination(url, scheme, host, port, root, username=username)


def _object_store(
    url: str, scheme: str, netloc: str, path: str, options: dict[str, str], shown: str
) -> Destination:
    bucket = netloc
    if not _BUCKET.match(bucket):
        raise DestinationError(
            f"destination {shown}: {bucket!r} is not a valid bucket or container name"
        )
    prefix = _clean_path(path, shown)
    endpoint = options.get("endpoint") or None
    host = DEFAULT_HOSTS[scheme]
    port = None
    if endpoint is not None:
        endpoint_parts = urlsplit(endpoint)
        if endpoint_parts.scheme not in ("https", "http") or not endpoint_parts.hostname:
            raise DestinationError(f"destination {shown}: the endpoint must be an http(s) URL")
        host = endpoint_parts.hostname.lower()
        port = endpoint_parts.port
        if endpoint_parts.scheme == "http" and not is_loopback(host):
            raise DestinationNotAllowed(
                f"destination {shown}: a plain http endpoint is allowed to loopback only"
            )
        if endpoint_parts.username or endpoint_parts.password:
            raise DestinationError(f"destination {shown}: the endpoint may not hold credentials")
    account = options.get("account") or None
    if scheme == "az":
        if account is None or not _ACCOUNT.match(account):
            raise DestinationError(
                f"destination {shown}: name the storage account, as az://container/folder"
                "?account=NAME (3-24 lowercase letters and digits)"
            )
        if endpoint is None:
            host = host.format(account=account)
    root = posixpath.join(bucket, prefix) if prefix else bucket
    return Destination(url, scheme, host, port, root, endpoint=endpoint, account=account)


def check_allowed(destination: Destination, allow: list[str] | None = None) -> None:
    """Raise DestinationNotAllowed unless the operator's list lets users choose this place,
    or if it points into goalport's own storage."""
    _refuse_own_storage(destination)
    entries = destinations_allow() if allow is None else allow
    if not entries:
        return
    for entry in entries:
        scheme, _, host = entry.lower().partition("://")
        if scheme != destination.scheme:
            continue
        if not host or fnmatch.fnmatchcase(destination.host, host.rstrip("/")):
            return
    raise DestinationNotAllowed(
        f"{destination.scheme}:// to {destination.host} is not among the destinations this "
        "service allows (ask its operator)"
    )


def _refuse_own_storage(destination: Destination) -> None:
    own = storage_url()
    if destination.scheme != "s3" or not own.startswith("s3://"):
        return
    own_bucket = own.removeprefix("s3://").partition("/")[0]
    own_endpoint = (s3_endpoint_url() or "").rstrip("/")
    if destination.root.partition("/")[0] == own_bucket and (
        (destination.endpoint or "").rstrip("/") == own_endpoint
    ):
        raise DestinationNotAllowed(
            "that bucket is goalport's own storage; choose a bucket of your own"
        )


def allowed_destination(url: str) -> Destination:
    """Parse `url` and check it against every rule: what a user's choice must pass."""
    destination = parse_destination(url)
    check_allowed(destination)
    return destination
