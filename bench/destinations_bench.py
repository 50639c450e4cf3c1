"""A backup-sized upload to each destination server runnable here, against writing the same
bytes to local disk.

The servers are the tests' (tests/destinations/servers.py: moto with IAM on, Azurite, the
GCS emulator, WsgiDAV, OpenSSH's sshd), started here on loopback. Each upload streams
GOALPORT_BENCH_DESTINATION_MB (default 500) MiB in 8 MiB chunks through
`resources.destinations.storage.DestinationStorage.write_stream` (atomic: a multipart
upload, or a temporary name renamed), in a child process whose peak resident memory growth
is reported: flat means the upload does not hold the file. The baseline writes the same
chunks to a file on local disk (fsynced, renamed). Prints MiB/s and the ratio to local disk.
The database URL is not used.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import time
import uuid

CHUNK = 8 * 2**20


class _Folders:
    """What the session fixtures ask pytest for: fresh folders."""

    def __init__(self, root: str):
        self.root = root

    def mktemp(self, name: str) -> pathlib.Path:
        return pathlib.Path(tempfile.mkdtemp(prefix=name, dir=self.root))


def _chunks(total: int):
    block = bytearray(os.urandom(CHUNK))
    for index in range(total // CHUNK):
        block[:8] = index.to_bytes(8, "big")  # no two parts alike
        yield bytes(block)


def _local(folder: str, total: int) -> dict:
    from bench.run import PeakMemory

    target = os.path.join(folder, "backup.bin")
    temporary = target + ".tmp"
    with PeakMemory() as memory:
        started = time.perf_counter()
        with open(temporary, "wb") as handle:
            for chunk in _chunks(total):
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        seconds = time.perf_counter() - started
    os.unlink(target)
    return {"seconds": seconds, **memory.as_dict()}


def _upload(url: str, secrets: dict, total: int) -> dict:
    from bench.run import PeakMemory
    from resources.destinations.filesystems import destination_filesystem
    from resources.destinations.storage import DestinationStorage
    from resources.destinations.urls import parse_destination

    store = DestinationStorage.on(
        parse_destination(url), destination_filesystem(url, secrets, secrets.update)
    )
    key = f"backups/bench/goalport-backup-{uuid.uuid4().hex}.zip.age"
    store.write_bytes("warm-up", b"x")
    with PeakMemory() as memory:
        started = time.perf_counter()
        stored = store.write_stream(key, _chunks(total))
        seconds = time.perf_counter() - started
    assert stored.size == total
    store.delete_prefix("backups/bench")
    store.delete("warm-up")
    return {"seconds": seconds, **memory.as_dict()}


def run(database_url: str) -> dict:  # noqa: ARG001 - no database here
    from bench.run import in_child
    from resources.destinations.filesystems import sftp_host_key
    from tests.destinations import servers

    total = int(os.environ.get("GOALPORT_BENCH_DESTINATION_MB", "500")) * 2**20 // CHUNK * CHUNK
    report: dict = {"bytes": total}
    with tempfile.TemporaryDirectory(prefix="gp-dest-bench-") as root:
        folders = _Folders(root)
        local = in_child(_local, root, total)
        local_rate = total / 2**20 / local["seconds"]
        report["local_disk"] = {**local, "mib_per_s": round(local_rate, 1)}
        print(f"   local disk: {local_rate:.0f} MiB/s, rss +{local['rss_growth_mib']} MiB")
        for name, fixture in [
            ("s3 (moto)", servers.s3_auth_server),
            ("azure (Azurite)", servers.azurite_server),
            ("gcs (emulator)", servers.gcs_server),
            ("webdav (WsgiDAV)", servers.webdav_server),
            ("sftp (sshd)", servers.ssh_server),
        ]:
            started = fixture.__wrapped__(folders)  # type: ignore[attr-defined]
            server = next(started)
            try:
                url, secrets = server.new_place()
                if url.startswith("sftp://"):
                    secrets["host_key"] = sftp_host_key(url)
                result = in_child(_upload, url, secrets, total)
            finally:
                next(started, None)
            rate = total / 2**20 / result["seconds"]
            report[name] = {
                **result,
                "mib_per_s": round(rate, 1),
                "ratio_to_local_disk": round(rate / local_rate, 3),
            }
            print(
                f"   {name}: {rate:.0f} MiB/s = {rate / local_rate:.2f} x local disk, "
                f"rss +{result['rss_growth_mib']} MiB"
            )
    return report
