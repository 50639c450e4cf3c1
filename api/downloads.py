"""`GET /api/v1/data/download/{token}`: a finished export's file, for whoever holds its
link. The signed, expiring token (`assets.exports.downloads`) is the credential, so a
browser or a download manager needs no Authorization header, and the link opens that
one file only.

The stored bytes are sent as they are (no Content-Encoding: a Range offset is a file
offset), streamed from storage a chunk at a time; HEAD, a single `Range`, `If-Range` and
`ETag` (the stored SHA-256) let an interrupted download resume. Each request counts
against the link's rate limit and its client address's (`api.auth.count_without_credential`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import format_datetime

import sqlalchemy as sa
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response, StreamingResponse

from api.auth import ConfigDep, client_of, count_without_credential
from api.config import ApiConfig
from api.errors import ApiError, error_responses
from api.rate_limit import hashed_bucket
from assets.exports.downloads import DownloadError, make_download_token, read_download_token
from assets.exports.expiry import storage_key_of
from assets.exports.job_rows import ExportJob
from assets.exports.job_status import ExportStatus, job_table
from assets.formats.registry import media_type_of
from resources.audit import record_audit, utc_now
from resources.schema import as_utc
from resources.storage import ObjectStorage, StorageError

router = APIRouter(tags=["downloads"])
DOWNLOAD_ROUTE = "/api/v1/data/download/{token}"
# Links made by `assets.exports.downloads.download_link` for `serve-downloads`, still honoured.
LEGACY_DOWNLOAD_ROUTE = "/download/{token}"
CHUNK_BYTES = 1024 * 1024
TOKEN_PATTERN = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"  # base64url payload "." signature
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def export_file_url(job: ExportJob, config: ApiConfig) -> str | None:
    """The link that downloads a completed, unexpired export; None for any other job."""
    if job.status != ExportStatus.COMPLETED or job.expires_at is None:
        return None
    if job.expires_at <= utc_now():
        return None
    key = storage_key_of(config.storage, job.file_url)
    if key is None:
        return None
    token = make_download_token(key, job.expires_at, secret=config.download_secret)
    return config.public_url + DOWNLOAD_ROUTE.format(token=token)


class UnsatisfiableRange(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte offsets of a single `bytes=` range, or None to send the whole
    file (no header, several ranges, or one we do not understand, as RFC 9110 allows).
    UnsatisfiableRange when it starts past the end of the file."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text or int(last_text) == 0:
            raise UnsatisfiableRange
        return max(0, size - int(last_text)), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size:
        raise UnsatisfiableRange
    if last < first:
        return None
    return first, min(last, size - 1)


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    etag: str
    last_modified: str | None
    job: ExportJob | None


def _stored_file(config: ApiConfig, token: str) -> StoredFile:
    try:
        key, _expires = read_download_token(token, secret=config.download_secret)
    except DownloadError as exc:
        raise ApiError(exc.status, "invalid_link", str(exc)) from exc
    storage = config.storage
    try:
        info = storage.info(key)
    except (FileNotFoundError, StorageError) as exc:
        raise ApiError(404, "not_found", "this export is no longer available") from exc
    with config.database.engine.connect() as conn:
        row = (
            conn.execute(sa.select(job_table).where(job_table.c.fileUrl == storage.object_url(key)))
            .mappings()
            .first()
        )
    job = ExportJob.from_row(row) if row is not None else None
    if job is not None and job.status != ExportStatus.COMPLETED:
        raise ApiError(404, "not_found", "this export is no longer available")
    size = int(info["size"])
    if job is not None and job.checksum:
        etag = '"' + job.checksum.replace(":", "-") + '"'  # "sha256-<hex>"
    else:  # a file no job row describes: as strong as its size and time
        stamp = str(info.get("mtime") or info.get("LastModified"))
        etag = f'W/"{size:x}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"'
    modified = None
    if job is not None and job.completed_at is not None:
        modified = format_datetime(as_utc(job.completed_at).astimezone(dt.UTC), usegmt=True)
    return StoredFile(key, size, etag, modified, job)


def _chunks(storage: ObjectStorage, key: str, first: int, length: int) -> Iterator[bytes]:
    with storage.fs.open(storage.path(key), "rb") as handle:
        handle.seek(first)
        remaining = length
        while remaining > 0:
            data = handle.read(min(CHUNK_BYTES, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data


def _range_still_valid(request: Request, stored: StoredFile) -> bool:
    """If-Range: resume only if the file is still the one the client began with."""
    condition = request.headers.get("if-range")
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        return not stored.etag.startswith("W/") and condition == stored.etag
    return stored.last_modified is not None and condition == stored.last_modified


DOWNLOAD_RESPONSES: dict[int | str, dict] = {
    200: {"description": "the whole file", "content": {"application/octet-stream": {}}},
    206: {"description": "the requested range", "content": {"application/octet-stream": {}}},
    304: {"description": "not modified (If-None-Match)"},
    **error_responses(403, 404, 416, 422, 429),
}


@router.get(LEGACY_DOWNLOAD_ROUTE, include_in_schema=False)
@router.head(
    DOWNLOAD_ROUTE,
    responses=DOWNLOAD_RESPONSES,
    response_class=Response,
    operation_id="download_headers",
    summary="An export file's size, ETag and type, without its bytes",
)
@router.get(
    DOWNLOAD_ROUTE,
    responses=DOWNLOAD_RESPONSES,
    response_class=Response,
    operation_id="download",
    summary="Download an export's file (the link itself is the credential)",
)
def download(
    request: Request,
    config: ConfigDep,
    token: str = Path(pattern=TOKEN_PATTERN, max_length=4096, description="from the link"),
) -> Response:
    address = client_of(request)
    link = hashed_bucket("link", token, config.download_secret)
    count_without_credential(config, address, utc_now(), also=[(link, config.link_limit)])
    stored = _stored_file(config, token)
    filename = posixpath.basename(stored.key).replace('"', "")
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": stored.etag,
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }
    if stored.last_modified:
        headers["Last-Modified"] = stored.last_modified
    if request.headers.get("if-none-match", "").strip() == stored.etag:
        return Response(status_code=304, headers=headers)
    try:
        wanted = (
            parse_range(request.headers.get("range"), stored.size)
            if _range_still_valid(request, stored)
            else None
        )
    except UnsatisfiableRange as exc:
        raise ApiError(
            416,
            "range_not_satisfiable",
            f"the file has {stored.size} bytes",
            headers={"Content-Range": f"bytes */{stored.size}"},
        ) from exc
    status, first, last = (200, 0, stored.size - 1) if wanted is None else (206, *wanted)
    length = max(0, last - first + 1)
    headers["Content-Length"] = str(length)
    if status == 206:
        headers["Content-Range"] = f"bytes {first}-{last}/{stored.size}"
    media_type = media_type_of(stored.key)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    if stored.job is not None:
        with config.database.engine.begin() as conn:
            record_audit(
                conn,
                user_id=stored.job.user_id,
                operation="export-download",
                operation_type="api",
                actor="download-link",
                details={"jobId": stored.job.id, "firstByte": first, "bytes": length},
                ip_address=address,
                user_agent=(request.headers.get("user-agent") or "")[:512] or None,
            )
    return StreamingResponse(
        _chunks(config.storage, stored.key, first, length),
        status_code=status,
        headers=headers,
        media_type=media_type,
    )
