"""Download links that stop working when an export expires.

On S3 a link is a presigned GET URL (S3 itself refuses it after its expiry; SigV4 caps that
at seven days). A local storage folder has no such server, so goalport signs its own
time-limited token: the object key and the expiry time, HMAC-SHA256 under a secret.
`open_download(token)` checks the signature and the time and returns the file; `goalport
serve-downloads` serves those tokens over HTTP with nothing but the standard library.

The secret and the server's address come from `resources.settings` (`download_secret`,
`download_base_url`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import posixpath
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from assets.exports.expiry import storage_key_of
from assets.exports.job_rows import ExportJob
from assets.exports.job_status import ExportStatus
from assets.formats.registry import media_type_of
from resources.audit import utc_now
from resources.settings import download_base_url, download_secret
from resources.storage import ObjectStorage, StorageError

DOWNLOAD_PATH = "/download/"
MAX_PRESIGNED_LIFETIME = dt.timedelta(days=7)


class DownloadError(Exception):
    """A link that cannot be honoured; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = HTTPStatus.FORBIDDEN):
        super().__init__(message)
        self.status = int(status)


@dataclass(frozen=True)
class DownloadLink:
    url: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class Download:
    key: str
    filename: str
    media_type: str
    data: bytes


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_download_token(key: str, expires_at: dt.datetime, *, secret: bytes) -> str:
    """`<payload>.<signature>`, both base64url: the key and expiry, signed."""
    payload = _b64(json.dumps({"k": key, "e": int(expires_at.timestamp())}).encode())
    signature = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


def read_download_token(
    token: str, *, secret: bytes, now: dt.datetime | None = None
) -> tuple[str, dt.datetime]:
    """The (key, expiry) a token grants; DownloadError if forged, damaged or expired."""
    payload, _, signature = token.partition(".")
    expected = _b64(hmac.new(secret, payload.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(signature, expected):
        raise DownloadError("this download link is not valid")
    try:
        claims = json.loads(_unb64(payload))
        key, expires = str(claims["k"]), int(claims["e"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise DownloadError("this download link is not valid") from exc
    expires_at = dt.datetime.fromtimestamp(expires, dt.UTC)
    if (now or utc_now()) >= expires_at:
        raise DownloadError(f"this download link expired at {expires_at:%Y-%m-%d %H:%M} UTC")
    return key, expires_at


def open_download(
    token: str,
    storage: ObjectStorage | None = None,
    *,
    secret: bytes | None = None,
    now: dt.datetime | None = None,
) -> Download:
    """The file a local download token grants, if the token is genuine and unexpired."""
    storage = storage or ObjectStorage()
    key, _ = read_download_token(token, secret=secret or download_secret(), now=now)
    try:
        data = storage.read_bytes(key)
    except StorageError as exc:
        raise DownloadError("this export is no longer available", HTTPStatus.NOT_FOUND) from exc
    return Download(key, posixpath.basename(key), media_type_of(key), data)


def download_link(
    storage: ObjectStorage,
    key: str,
    *,
    expires_at: dt.datetime,
    now: dt.datetime | None = None,
    secret: bytes | None = None,
    base_url: str | None = None,
) -> DownloadLink:
    """A link to `key` valid until `expires_at` (at most 7 days from now on S3)."""
    now = now or utc_now()
    if expires_at <= now:
        raise DownloadError("the export has expired")
    if storage.is_local:
        token = make_download_token(key, expires_at, secret=secret or download_secret())
        base = (base_url or download_base_url()).rstrip("/")
        return DownloadLink(f"{base}{DOWNLOAD_PATH}{token}", expires_at)
    expires_at = min(expires_at, now + MAX_PRESIGNED_LIFETIME)
    seconds = max(1, int((expires_at - now).total_seconds()))
    filename = posixpath.basename(key).replace('"', "")
    url = storage.fs.sign(
        storage.path(key),
        expiration=seconds,
        ResponseContentDisposition=f'attachment; filename="{filename}"',
    )
    return DownloadLink(url, now + dt.timedelta(seconds=seconds))


def export_download_link(
    storage: ObjectStorage,
    job: ExportJob,
    *,
    now: dt.datetime | None = None,
    secret: bytes | None = None,
    base_url: str | None = None,
) -> DownloadLink:
    """A link to a completed export's file, expiring when the export does."""
    if job.status != ExportStatus.COMPLETED or job.expires_at is None:
        raise DownloadError(f"export {job.id} is {job.status}: there is nothing to download")
    key = storage_key_of(storage, job.file_url)
    if key is None:
        raise DownloadError(
            f"export {job.id} is stored at {job.file_url}, outside {storage.root}",
            HTTPStatus.NOT_FOUND,
        )
    return download_link(
        storage, key, expires_at=job.expires_at, now=now, secret=secret, base_url=base_url
    )


def make_download_server(
    storage: ObjectStorage,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    secret: bytes | None = None,
) -> ThreadingHTTPServer:
    """An HTTP server answering `GET /download/<token>` from the local storage.

    Call `serve_forever()` on it (and `shutdown()` from another thread to stop it).
    """
    key_secret = secret or download_secret()

    class DownloadHandler(BaseHTTPRequestHandler):
        server_version = "goalport-downloads/1"

        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            if not self.path.startswith(DOWNLOAD_PATH):
                self._refuse(HTTPStatus.NOT_FOUND, "not found")
                return
            token = self.path[len(DOWNLOAD_PATH) :].split("?", 1)[0]
            try:
                download = open_download(token, storage, secret=key_secret)
            except DownloadError as exc:
                self._refuse(exc.status, str(exc))
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", download.media_type)
            self.send_header("Content-Length", str(len(download.data)))
            self.send_header("Content-Disposition", f'attachment; filename="{download.filename}"')
            self.send_header("Cache-Control", "private, no-store")
            self.end_headers()
            self.wfile.write(download.data)

        def _refuse(self, status: int, message: str) -> None:
            body = (message + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002
            # Tokens are credentials: log the status line without the path.
            if args and isinstance(args[0], str) and args[0].startswith("GET "):
                args = ("GET /download/…",) + args[1:]
            super().log_message(format, *args)

    return ThreadingHTTPServer((host, port), DownloadHandler)
