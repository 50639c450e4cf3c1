"""Streamed uploads (`POST /api/v1/data/import`) against a real uvicorn, on a local folder
and on the moto S3 server: the file reaches storage while the body is still arriving; one
byte past the cap is answered 413 before the body ends, and nothing is left behind (no
temporary file, no unfinished multipart upload, no job, no audit row); a client that goes
away mid-upload leaves nothing either; a file at the cap is stored whole, byte for byte.

Bodies are sent chunked over a raw socket, a piece at a time, so that the server cannot
have seen the end of the body when it answers."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import replace

import pytest
import sqlalchemy as sa

from resources import schema
from resources.storage import ObjectStorage

BOUNDARY = "----goalport-upload-test"
PIECE = 64 * 1024


class ChunkedUpload:
    """A multipart upload sent by hand: `send_file_bytes` as often as wanted, then `finish`
    or `response` (read what the server answered, even before the body ended)."""

    def __init__(self, base_url: str, token: str, file_name: str = "big.csv"):
        host, port = base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=20)
        head = (
            "POST /api/v1/data/import HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        self._chunk(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{file_name}"\r\nContent-Type: text/csv\r\n\r\n'.encode()
        )
        self.sha256 = hashlib.sha256()

    def _chunk(self, data: bytes) -> None:
        self.sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def send_file_bytes(self, count: int) -> None:
        while count > 0:
            piece = os.urandom(min(PIECE, count))
            self.sha256.update(piece)
            self._chunk(piece)
            count -= len(piece)

    def finish(self, **fields: str) -> tuple[int, bytes]:
        tail = f"\r\n--{BOUNDARY}"
        for name, value in fields.items():
            tail += (
                f'\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n--{BOUNDARY}'
            )
        self._chunk((tail + "--\r\n").encode())
        self.sock.sendall(b"0\r\n\r\n")
        return self.response()

    def response(self) -> tuple[int, bytes]:
        received = b""
        while b"\r\n\r\n" not in received:
            data = self.sock.recv(65536)
            if not data:
                break
            received += data
        status = int(received.split(b" ", 2)[1])
        self.sock.close()
        return status, received

    def close(self) -> None:
        self.sock.close()


def _left_behind(storage: ObjectStorage) -> list[str]:
    return storage.list_including_unfinished("imports")


def _jobs_and_audit_rows(engine: sa.Engine, user_id: str) -> tuple[int, int]:
    with engine.connect() as conn:
        jobs = conn.execute(
            sa.select(sa.func.count()).where(schema.data_import_job.c.userId == user_id)
        ).scalar_one()
        audits = conn.execute(
            sa.select(sa.func.count()).where(
                schema.data_audit_log.c.userId == user_id,
                schema.data_audit_log.c.operation == "import-upload",
            )
        ).scalar_one()
    return jobs, audits


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def capped_api(start_api, api_config):
    return start_api(replace(api_config, max_upload_bytes=2 * 2**20))


def test_one_byte_past_the_cap_is_refused_before_the_body_ends(capped_api, user_ids, make_token):
    alice = user_ids[0]
    upload = ChunkedUpload(capped_api.base_url, make_token(alice, scopes=("imports",)))
    upload.send_file_bytes(2 * 2**20 + 1)  # the body's end is never sent
    status, answer = upload.response()
    assert status == 413 and b"too_large" in answer
    storage = capped_api.config.storage
    assert _wait_for(lambda: _left_behind(storage) == []), _left_behind(storage)
    assert _jobs_and_audit_rows(capped_api.config.database.engine, alice) == (0, 0)


def test_the_file_reaches_storage_while_arriving_and_a_client_gone_leaves_nothing(
    capped_api, user_ids, make_token
):
    alice = user_ids[0]
    storage = capped_api.config.storage
    upload = ChunkedUpload(capped_api.base_url, make_token(alice, scopes=("imports",)))
    upload.send_file_bytes(1536 * 1024)

    def partial_size() -> int:
        found = [k for k in _left_behind(storage) if "/.tmp-" in k]
        return storage.fs.size(storage.path(found[0])) if found else 0

    # written as it comes (1 MiB at a time), hidden from listings until complete
    assert _wait_for(lambda: partial_size() >= 2**20)
    assert storage.list("imports") == []
    upload.close()  # the client goes away mid-upload
    assert _wait_for(lambda: _left_behind(storage) == []), _left_behind(storage)
    assert _jobs_and_audit_rows(capped_api.config.database.engine, alice) == (0, 0)


def test_form_fields_after_the_file_are_checked_and_a_refusal_keeps_nothing(
    capped_api, user_ids, make_token
):
    alice = user_ids[0]
    token = make_token(alice, scopes=("imports",))
    refused = ChunkedUpload(capped_api.base_url, token)
    refused.send_file_bytes(300_000)
    status, answer = refused.finish(mode="merge", onConflict="whatever")
    assert status == 422 and b"onConflict" in answer
    storage = capped_api.config.storage
    assert _left_behind(storage) == []

    accepted = ChunkedUpload(capped_api.base_url, token, file_name="../../at the cap.csv")
    accepted.send_file_bytes(2 * 2**20)  # exactly the cap
    status, _ = accepted.finish(mode="replace", onConflict="newest-wins")
    assert status == 202
    (key,) = storage.list("imports")
    assert key.endswith("/at the cap.csv") and f"/{alice}/" in key
    assert hashlib.sha256(storage.read_bytes(key)).hexdigest() == accepted.sha256.hexdigest()
    with capped_api.config.database.engine.connect() as conn:
        job = conn.execute(sa.select(schema.data_import_job)).mappings().one()
    assert (job["mode"], job["conflictPolicy"]) == ("replace", "newest-wins")
    assert _jobs_and_audit_rows(capped_api.config.database.engine, alice) == (1, 1)


def test_on_s3_a_refused_upload_leaves_no_unfinished_multipart_upload(
    start_api, api_config, s3_url, user_ids, make_token
):
    cap = 12 * 2**20  # past one 8 MiB part: a multipart upload is under way when refused
    s3_api = start_api(replace(api_config, storage=ObjectStorage(url=s3_url), max_upload_bytes=cap))
    storage = s3_api.config.storage
    alice = user_ids[0]
    token = make_token(alice, scopes=("imports",))
    upload = ChunkedUpload(s3_api.base_url, token)
    upload.send_file_bytes(cap + 1)
    status, _ = upload.response()
    assert status == 413
    assert _wait_for(lambda: _left_behind(storage) == []), _left_behind(storage)

    whole = ChunkedUpload(s3_api.base_url, token)
    whole.send_file_bytes(cap)
    status, answer = whole.finish()
    assert status == 202, answer
    (key,) = storage.list("imports")
    assert hashlib.sha256(storage.read_bytes(key)).hexdigest() == whole.sha256.hexdigest()
    assert _jobs_and_audit_rows(s3_api.config.database.engine, alice) == (1, 1)
