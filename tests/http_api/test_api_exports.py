"""The export flow over HTTP against a real uvicorn: POST -> 202 -> the processing path
`goalport exports process` takes -> GET shows it completed -> the download link gives the
stored bytes, and an interrupted download resumed with Range gives the same SHA-256.
On a local folder and on S3 (moto's server)."""

from __future__ import annotations

import hashlib

import httpx
import pytest
import sqlalchemy as sa

from assets.exports.expiry import storage_key_of
from assets.exports.progress import process_pending_exports
from assets.exports.queue import get_export
from assets.formats.registry import REQUESTABLE_FORMATS
from resources import schema


def _post_export(client: httpx.Client, **body) -> str:
    response = client.post("/api/v1/data/export", json={"exportType": "full", **body})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    return response.json()["jobId"]


def _process(live) -> None:
    outcomes = process_pending_exports(live.config.database, live.config.storage, workers=1)
    assert outcomes and all(not o.failed for o in outcomes)


def _download_all(client: httpx.Client, url: str) -> httpx.Response:
    response = client.get(url)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("where", ["local", "s3"])
def test_whole_export_flow_with_an_interrupted_download_resumed(
    where, request, user_ids, make_token
):
    live = request.getfixturevalue("api" if where == "local" else "s3_api")
    user = user_ids[0]
    with live.client(make_token(user), **{"User-Agent": "goalport-tests/1"}) as client:
        job_id = _post_export(client, format="csv")
        status = client.get("/api/v1/data/export", params={"jobId": job_id}).json()
        assert status["status"] == "pending" and status["fileUrl"] is None

        _process(live)

        status = client.get("/api/v1/data/export", params={"jobId": job_id}).json()
        assert status["status"] == "completed"
        assert status["recordsProcessed"] == status["recordsTotal"] > 0
        job = get_export(live.config.database.engine, job_id)
        assert status["fileSizeBytes"] == job.file_size_bytes
        url = status["fileUrl"]
        assert url.startswith("/api/v1/data/download/")
        assert job.file_url not in url and live.config.storage.root not in url

    key = storage_key_of(live.config.storage, job.file_url)
    stored = live.config.storage.read_bytes(key)
    assert f"sha256:{hashlib.sha256(stored).hexdigest()}" == job.checksum

    # The link is the credential: no Authorization header.
    with live.client(**{"User-Agent": "goalport-tests/1"}) as anonymous:
        head = anonymous.head(url)
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) == len(stored)
        assert head.headers["etag"] == f'"sha256-{hashlib.sha256(stored).hexdigest()}"'
        assert head.headers["accept-ranges"] == "bytes"
        assert head.headers["content-disposition"].startswith("attachment; filename=")
        assert head.headers["x-content-type-options"] == "nosniff"
        assert "content-encoding" not in head.headers

        half = len(stored) // 2
        received = bytearray()
        with anonymous.stream("GET", url) as response:
            for chunk in response.iter_raw(chunk_size=max(1, half // 4)):
                received += chunk
                if len(received) >= half:
                    break  # the connection drops half-way
        assert 0 < len(received) < len(stored)
        resumed = anonymous.get(
            url, headers={"Range": f"bytes={len(received)}-", "If-Range": head.headers["etag"]}
        )
        assert resumed.status_code == 206
        assert resumed.headers["content-range"] == (
            f"bytes {len(received)}-{len(stored) - 1}/{len(stored)}"
        )
        whole = bytes(received) + resumed.content
        assert f"sha256:{hashlib.sha256(whole).hexdigest()}" == job.checksum

        not_modified = anonymous.get(url, headers={"If-None-Match": head.headers["etag"]})
        assert not_modified.status_code == 304 and not_modified.content == b""

    with live.config.database.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.data_audit_log).where(schema.data_audit_log.c.userId == user)
        ).all()
    by_operation = {r.operation: r for r in rows}
    assert {"export-request", "export-status", "export-download"} <= set(by_operation)
    for operation in ("export-request", "export-download"):
        assert by_operation[operation].ipAddress == "127.0.0.1"
        assert by_operation[operation].userAgent == "goalport-tests/1"


def test_ranges_if_range_and_unsatisfiable(api, user_ids, make_token):
    with api.client(make_token(user_ids[0])) as client:
        job_id = _post_export(client, format="json")
        _process(api)
        url = client.get("/api/v1/data/export", params={"jobId": job_id}).json()["fileUrl"]
        whole = _download_all(client, url).content
        size = len(whole)

        middle = client.get(url, headers={"Range": "bytes=10-19"})
        assert middle.status_code == 206 and middle.content == whole[10:20]
        suffix = client.get(url, headers={"Range": "bytes=-7"})
        assert suffix.status_code == 206 and suffix.content == whole[-7:]
        past_end = client.get(url, headers={"Range": f"bytes={size - 3}-{size + 100}"})
        assert past_end.content == whole[-3:]
        assert past_end.headers["content-range"] == f"bytes {size - 3}-{size - 1}/{size}"

        unsatisfiable = client.get(url, headers={"Range": f"bytes={size}-"})
        assert unsatisfiable.status_code == 416
        assert unsatisfiable.headers["content-range"] == f"bytes */{size}"
        assert unsatisfiable.json()["error"]["code"] == "range_not_satisfiable"

        # A changed file (another ETag): If-Range says start again, so the whole file comes.
        stale = client.get(url, headers={"Range": "bytes=10-", "If-Range": '"sha256-0000"'})
        assert stale.status_code == 200 and stale.content == whole
        # Several ranges at once are not served piecewise: the whole file, 200.
        several = client.get(url, headers={"Range": "bytes=0-1,5-6"})
        assert several.status_code == 200 and several.content == whole


def test_forged_or_damaged_links_are_refused(api, user_ids, make_token):
    with api.client(make_token(user_ids[0])) as client:
        job_id = _post_export(client, format="json")
        _process(api)
        url = client.get("/api/v1/data/export", params={"jobId": job_id}).json()["fileUrl"]
        payload, signature = url.rsplit("/", 1)[1].split(".")
        forged = client.get(f"/api/v1/data/download/{payload}.{signature[:-2]}AA")
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "invalid_link"
        assert client.get(f"/api/v1/data/download/{payload}.").status_code == 422
        not_ascii = client.get("/api/v1/data/download/%C3%AEk.%C2%89")
        assert not_ascii.status_code == 422 and not_ascii.json()["error"]["field"] == "token"


def test_history_newest_first_in_pages(api, user_ids, make_token):
    with api.client(make_token(user_ids[1])) as client:
        made = [_post_export(client, format=fmt) for fmt in ("json", "csv", "json", "parquet")]
        pages, cursor = [], None
        while True:
            params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
            page = client.get("/api/v1/data/export", params=params).json()
            pages.append([item["jobId"] for item in page["items"]])
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert pages == [made[::-1][:3], made[::-1][3:]]
        bad = client.get("/api/v1/data/export", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "cursor"


def test_links_use_the_public_url_when_set(start_api, api_config, user_ids, make_token):
    from dataclasses import replace

    live = start_api(replace(api_config, public_url="https://goalport.example.org"))
    with live.client(make_token(user_ids[0])) as client:
        job_id = _post_export(client, format="json")
        _process(live)
        url = client.get("/api/v1/data/export", params={"jobId": job_id}).json()["fileUrl"]
        assert url.startswith("https://goalport.example.org/api/v1/data/download/")
        assert client.get(url.removeprefix("https://goalport.example.org")).status_code == 200


def test_only_formats_the_registry_renders_are_accepted(api, user_ids, make_token):
    with api.client(make_token(user_ids[0])) as client:
        for fmt in REQUESTABLE_FORMATS:
            _post_export(client, format=fmt)
        refused = client.post("/api/v1/data/export", json={"exportType": "full", "format": "exe"})
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "format"
        enum = api.app.openapi()["components"]["schemas"]["ExportRequestBody"]["properties"]
        assert enum["format"]["enum"] == list(REQUESTABLE_FORMATS)


def test_filters_and_refused_bodies(api, user_ids, make_token, database):
    with api.client(make_token(user_ids[0])) as client:
        job_id = _post_export(
            client,
            exportType="selective",
            format="json",
            filters={
                "modules": ["fitness"],
                "dateRange": {"start": "2024-01-01", "end": "2024-06-30"},
            },
        )
        job = get_export(database.engine, job_id)
        assert job.export_type == "selective"
        assert job.filters == {"modules": ["fitness"], "since": "2024-01-01", "until": "2024-06-30"}
        backwards = client.post(
            "/api/v1/data/export",
            json={
                "exportType": "selective",
                "format": "json",
                "filters": {"dateRange": {"start": "2024-06-30", "end": "2024-01-01"}},
            },
        )
        assert backwards.status_code == 422
        assert backwards.json()["error"]["field"] == "filters.dateRange"
        encrypted = client.post(
            "/api/v1/data/export",
            json={
                "exportType": "full",
                "format": "json",
                # both at once: refused, whichever the master key
                "encryption": {"passphrase": "correct horse battery", "recipient": "age1x"},
            },
        )
        assert encrypted.status_code == 422
        assert encrypted.json()["error"]["field"] == "encryption"
        assert "correct horse" not in encrypted.text
    with database.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.data_export_job)).scalar()
            == 1
        )
        audit = conn.execute(sa.select(schema.data_audit_log.c.details)).scalars().all()
    assert not any("correct horse" in (d or "") for d in audit)
