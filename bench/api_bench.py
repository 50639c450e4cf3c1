"""HTTP API benchmark, against `goalport serve` started as its own process on loopback.

- Requests: 32 concurrent clients (httpx async) each POST an export and GET its status,
  for a fixed time; requests/s of that pair against `GET /healthz` (no database) measured
  the same way, and p50/p95 of `GET status`.
- Download: a 500 MB export file through `GET /api/v1/data/download/{token}` over
  loopback, as a ratio to reading the same file from disk in the same run (once with its
  pages evicted from the cache first, so both read the disk, and once from the page
  cache), and the server's resident memory before, at its peak and after.
- Upload: a 200 MB file streamed to `POST /api/v1/data/import` (multipart, chunked): MiB/s
  and the server's resident memory before, at its peak and after (flat: the file goes to
  storage as it arrives).

`run(database_url)` takes the seeded benchmark database (its schema must have the API's
tables: run with `GOALPORT_BENCH_DB=goalport_bench_api`), and removes every row and file
it made. Nothing here asserts; it reports.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import sqlalchemy as sa

CLIENTS = 32
LOAD_SECONDS = 10.0
DOWNLOAD_BYTES = 500 * 2**20
UPLOAD_BYTES = 200 * 2**20
SECRET = "api-bench-download-secret-0123456789abcdef"


def run(database_url: str) -> dict:
    from api.tokens import create_token
    from resources.database import AppDatabase
    from resources.storage import ObjectStorage

    database = AppDatabase(url=database_url)
    folder = tempfile.mkdtemp(prefix="goalport-api-bench-")
    storage = ObjectStorage(url=folder)
    user_id = database.all_user_ids()[0]
    token_row, token = create_token(database.engine, user_id, ["exports", "imports"], name="bench")
    server = _start_server(database_url, folder)
    try:
        base = f"http://127.0.0.1:{server.port}"
        healthz = asyncio.run(_load(base, token, pair=False))
        pair = asyncio.run(_load(base, token, pair=True))
        download = _download(base, database, storage, user_id, server.process.pid)
        upload = _upload(base, token, server.process.pid)
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)
        _remove_rows(database.engine, token_row.id, user_id)
        shutil.rmtree(folder, ignore_errors=True)
        database.engine.dispose()
    report = {
        "clients": CLIENTS,
        "healthz_rps": healthz["rps"],
        "export_pair_requests_per_s": pair["rps"],
        "export_pair_vs_healthz": pair["rps"] / healthz["rps"],
        "get_status_p50_ms": pair["p50_ms"],
        "get_status_p95_ms": pair["p95_ms"],
        "errors": pair["errors"] + healthz["errors"],
        **download,
        **upload,
    }
    print(
        f"{CLIENTS} clients: POST export + GET status {pair['rps']:.0f} requests/s "
        f"({report['export_pair_vs_healthz']:.2f}x GET /healthz at {healthz['rps']:.0f}/s); "
        f"GET status p50 {pair['p50_ms']:.1f} ms, p95 {pair['p95_ms']:.1f} ms; "
        f"{report['errors']} errors"
    )
    print(
        f"download 500 MB, cold cache: {download['http_cold_mib_per_s']:.0f} MiB/s over "
        f"loopback vs {download['disk_cold_mib_per_s']:.0f} MiB/s from disk: ratio "
        f"{download['download_vs_disk_cold']:.2f} (target >= 0.5); page cache: "
        f"{download['http_warm_mib_per_s']:.0f} vs {download['disk_warm_mib_per_s']:.0f} MiB/s, "
        f"ratio {download['download_vs_disk_warm']:.2f}; server RSS "
        f"{download['server_rss_before_mib']:.0f} -> peak {download['server_rss_peak_mib']:.0f}"
        f" -> {download['server_rss_after_mib']:.0f} MiB; {download['bytes_received']} bytes"
    )
    print(
        f"upload 200 MB (streamed to storage): {upload['upload_mib_per_s']:.0f} MiB/s; server "
        f"RSS {upload['upload_rss_before_mib']:.0f} -> peak {upload['upload_rss_peak_mib']:.0f}"
        f" -> {upload['upload_rss_after_mib']:.0f} MiB"
    )
    return report


class _Server:
    def __init__(self, process: subprocess.Popen, port: int):
        self.process, self.port = process, port


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(database_url: str, folder: str) -> _Server:
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "GOALPORT_DATABASE_URL": database_url,
        "GOALPORT_STORAGE_URL": folder,
        "GOALPORT_DOWNLOAD_SECRET": SECRET,
        "GOALPORT_API_RATE_LIMIT": "100000000",
        "GOALPORT_API_ADDRESS_RATE_LIMIT": "100000000",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli.main", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return _Server(process, port)
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("goalport serve did not become ready in 60 s")


async def _load(base: str, token: str, *, pair: bool) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    counts = {"requests": 0, "errors": 0}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits) as client:
        stop = time.perf_counter() + LOAD_SECONDS

        async def one_client() -> None:
            while time.perf_counter() < stop:
                if not pair:
                    response = await client.get("/healthz")
                    counts["requests"] += 1
                    counts["errors"] += response.status_code != 200
                    continue
                made = await client.post(
                    "/api/v1/data/export", json={"exportType": "full", "format": "json"}
                )
                counts["requests"] += 1
                if made.status_code != 202:
                    counts["errors"] += 1
                    continue
                started = time.perf_counter()
                status = await client.get(
                    "/api/v1/data/export", params={"jobId": made.json()["jobId"]}
                )
                latencies.append(time.perf_counter() - started)
                counts["requests"] += 1
                counts["errors"] += status.status_code != 200

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - began
    result = {"rps": counts["requests"] / elapsed, "errors": counts["errors"]}
    if latencies:
        cuts = statistics.quantiles(latencies, n=20)
        result |= {"p50_ms": statistics.median(latencies) * 1000, "p95_ms": cuts[18] * 1000}
    return result


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _download(base, database, storage, user_id: str, server_pid: int) -> dict:
    from assets.exports.downloads import make_download_token
    from assets.exports.job_status import ExportStatus, insert_jobs
    from resources.audit import new_id, utc_now

    key = f"exports/{user_id}/api-bench-{new_id()}.json"
    path = storage.path(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    digest = hashlib.sha256()
    block = os.urandom(2**20)
    with open(path, "wb") as handle:
        for _ in range(DOWNLOAD_BYTES // len(block)):
            handle.write(block)
            digest.update(block)
        handle.flush()
        os.fsync(handle.fileno())
    expires = utc_now() + dt.timedelta(hours=1)
    with database.engine.begin() as conn:
        row = {
            "id": new_id("exp_"),
            "userId": user_id,
            "exportType": "full",
            "format": "json",
            "filters": "{}",
            "requestedBy": "api-bench",
            "recordsProcessed": 0,
            "attempts": 0,
            "createdAt": utc_now(),
            "completedAt": utc_now(),
            "expiresAt": expires,
            "fileUrl": storage.object_url(key),
            "fileSizeBytes": DOWNLOAD_BYTES,
            "checksum": f"sha256:{digest.hexdigest()}",
        }
        insert_jobs(conn, [row], ExportStatus.COMPLETED)
    token = make_download_token(key, expires, secret=SECRET.encode())

    url_path = f"/api/v1/data/download/{token}"
    rss_before = _rss_mib(server_pid)
    results: dict[str, float] = {}
    for cache in ("cold", "warm"):  # cold: the file's pages evicted first, read from disk
        if cache == "cold":
            _evict(path)
        started = time.perf_counter()
        with open(path, "rb") as handle:
            while handle.read(2**20):
                pass
        results[f"disk_{cache}"] = time.perf_counter() - started
        if cache == "cold":
            _evict(path)
        with _RssPeak(server_pid) as rss:
            started = time.perf_counter()
            size = _fetch(base, url_path)
            results[f"http_{cache}"] = time.perf_counter() - started
        results[f"rss_peak_{cache}"] = rss.peak
        results["bytes_received"] = size
    mib = DOWNLOAD_BYTES / 2**20
    return {
        "download_mib": mib,
        "disk_cold_mib_per_s": mib / results["disk_cold"],
        "http_cold_mib_per_s": mib / results["http_cold"],
        "download_vs_disk_cold": results["disk_cold"] / results["http_cold"],
        "disk_warm_mib_per_s": mib / results["disk_warm"],
        "http_warm_mib_per_s": mib / results["http_warm"],
        "download_vs_disk_warm": results["disk_warm"] / results["http_warm"],
        "bytes_received": int(results["bytes_received"]),
        "server_rss_before_mib": rss_before,
        "server_rss_peak_mib": max(results["rss_peak_cold"], results["rss_peak_warm"]),
        "server_rss_after_mib": _rss_mib(server_pid),
    }


def _upload(base: str, token: str, server_pid: int) -> dict:
    """POST a UPLOAD_BYTES file as a chunked multipart body from a plain socket, 1 MiB a
    chunk (a client that costs next to nothing), sampling the server's memory."""
    host, port = base.removeprefix("http://").split(":")
    boundary = "goalport-api-bench"
    block = os.urandom(2**20)
    rss_before = _rss_mib(server_pid)
    with _RssPeak(server_pid) as rss, socket.create_connection((host, int(port))) as sock:
        started = time.perf_counter()
        sock.sendall(
            f"POST /api/v1/data/import HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
        )

        def chunk(data: bytes) -> None:
            sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        chunk(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="bench.bin"\r\n\r\n'.encode()
        )
        for _ in range(UPLOAD_BYTES // len(block)):
            chunk(block)
        chunk(f"\r\n--{boundary}--\r\n".encode())
        sock.sendall(b"0\r\n\r\n")
        answer = sock.recv(4096)
        elapsed = time.perf_counter() - started
    if not answer.startswith(b"HTTP/1.1 202"):
        raise RuntimeError(f"upload failed: {answer[:300]!r}")
    return {
        "upload_mib_per_s": UPLOAD_BYTES / 2**20 / elapsed,
        "upload_rss_before_mib": rss_before,
        "upload_rss_peak_mib": rss.peak,
        "upload_rss_after_mib": _rss_mib(server_pid),
    }


def _evict(path: str) -> None:
    """Drop the file's pages from the page cache (clean pages: it was fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _fetch(base: str, path: str) -> int:
    """GET over a plain socket into one reused buffer: a client that costs next to nothing,
    so the time is the server's (httpx's parser would be the bottleneck). Returns the
    body's size."""
    host, port = base.removeprefix("http://").split(":")
    buffer = bytearray(4 * 2**20)
    view = memoryview(buffer)
    total = 0
    head = b""
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        while True:
            n = sock.recv_into(view)
            if n == 0:
                break
            if len(head) < 4096 and b"\r\n\r\n" not in head:
                head += bytes(view[: min(n, 4096)])
            total += n
    header_end = head.index(b"\r\n\r\n") + 4
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"download failed: {head[:200]!r}")
    return total - header_end


class _RssPeak:
    """The server's resident memory before a block and its peak during it."""

    def __init__(self, pid: int):
        self.pid = pid

    def __enter__(self) -> _RssPeak:
        self.before = self.peak = _rss_mib(self.pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, _rss_mib(self.pid))

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def _remove_rows(engine: sa.Engine, token_id: str, user_id: str) -> None:
    from resources import schema

    actor = f"api-token:{token_id}"
    jobs, audit = schema.data_export_job, schema.data_audit_log
    with engine.begin() as conn:
        conn.execute(jobs.delete().where(jobs.c.requestedBy.in_([actor, "api-bench"])))
        imports = schema.data_import_job
        conn.execute(imports.delete().where(imports.c.requestedBy == actor))
        conn.execute(
            audit.delete().where(
                audit.c.userId == user_id, audit.c.actor.in_([actor, "download-link"])
            )
        )
        conn.execute(
            audit.delete().where(audit.c.userId == user_id, audit.c.details.contains(token_id))
        )
        conn.execute(schema.api_token.delete().where(schema.api_token.c.id == token_id))
        limits = schema.api_rate_limit.c.bucket
        conn.execute(
            schema.api_rate_limit.delete().where(
                sa.or_(limits == token_id, limits.like("link:%"), limits.like("addr:%"))
            )
        )
