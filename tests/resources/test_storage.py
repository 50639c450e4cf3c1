"""Object storage (resources/storage.py) when writes are interrupted, on a local folder and on
a real S3 endpoint (moto's server): a writer process killed mid-write leaves a temporary
file or an unfinished multipart upload that listings hide, but that the "anything left?"
check reports and a prefix delete removes, with the user's empty folders. Local files are
private (0600 in 0700 folders) whatever the umask.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from resources.storage import ObjectStorage

REPO = Path(__file__).resolve().parents[2]
VICTIM, OTHER = "user-victim", "user-other"

# Runs ObjectStorage.write_bytes in a new process that kills itself (SIGKILL, as the OOM
# killer or a power cut would) at the last step before the object would appear: the local
# rename of the temporary file, or S3's CompleteMultipartUpload.
_KILLED_WRITER = """
import os, signal, sys
import s3fs
from resources.storage import ObjectStorage

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

os.replace = die
call_s3 = s3fs.S3FileSystem._call_s3

async def dying_call_s3(self, method, *args, **kwargs):
    if method == "complete_multipart_upload":
        die()
    return await call_s3(self, method, *args, **kwargs)

s3fs.S3FileSystem._call_s3 = dying_call_s3
storage = ObjectStorage(url=sys.argv[1], s3_part_size=5 * 2**20)
storage.write_bytes(sys.argv[2], os.urandom(int(sys.argv[3])))
"""


def _killed_write(storage: ObjectStorage, key: str, size: int) -> None:
    writer = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, storage.resolved_url, key, str(size)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        timeout=120,
    )
    assert writer.returncode == -signal.SIGKILL, writer.stderr.decode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_local_files_are_private_whatever_the_umask(tmp_path: Path, umask: int):
    storage = ObjectStorage(url=str(tmp_path / "var" / "storage"))
    previous = os.umask(umask)
    try:
        storage.write_bytes(f"exports/{VICTIM}/2026/export.json", b"{}")
    finally:
        os.umask(previous)
    written = tmp_path / "var" / "storage" / "exports" / VICTIM / "2026" / "export.json"
    assert _mode(written) == 0o600
    for folder in (written.parent, written.parent.parent, tmp_path / "var"):
        assert _mode(folder) == 0o700, folder


def test_interrupted_local_write_is_reported_then_deleted_with_the_users_folder(tmp_path):
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    storage.write_bytes(f"exports/{VICTIM}/first.json", b"{}")
    storage.write_bytes(f"exports/{OTHER}/theirs.json", b"{}")
    _killed_write(storage, f"exports/{VICTIM}/nested/big.json", 2_000_000)

    folder = tmp_path / "storage" / "exports" / VICTIM
    (temporary,) = (folder / "nested").glob(".tmp-*")
    assert temporary.stat().st_size == 2_000_000 and _mode(temporary) == 0o600
    assert storage.list(f"exports/{VICTIM}") == [f"exports/{VICTIM}/first.json"]
    assert storage.list_including_unfinished(f"exports/{VICTIM}") == [
        f"exports/{VICTIM}/first.json",
        f"exports/{VICTIM}/nested/{temporary.name}",
    ]

    assert storage.delete_prefix(f"exports/{VICTIM}") == 2
    assert storage.list_including_unfinished(f"exports/{VICTIM}") == []
    assert not folder.exists(), "an empty folder named after the user is left"
    assert storage.list("exports") == [f"exports/{OTHER}/theirs.json"]
    assert storage.delete_prefix(f"exports/{VICTIM}") == 0  # again: nothing to do


def test_interrupted_s3_upload_is_reported_then_aborted(s3_url: str, s3_endpoint: str):
    import s3fs

    storage = ObjectStorage(url=s3_url, s3_part_size=5 * 2**20)
    storage.write_bytes(f"backups/{VICTIM}/first.age", b"age")
    storage.write_bytes(f"backups/{OTHER}/theirs.age", b"age")
    _killed_write(storage, f"backups/{VICTIM}/big.age", 11 * 2**20)  # three parts
    _killed_write(storage, f"backups/{OTHER}/big.age", 11 * 2**20)
    # A temporary object some other writer left (the same name rule as a local folder's).
    storage.fs.pipe_file(storage.path(f"backups/{VICTIM}/.tmp-0123"), b"partial")

    raw = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    bucket = s3_url.removeprefix("s3://").split("/")[0]
    pending = raw.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
    assert sorted(u["Key"] for u in pending) == [
        f"goalport/backups/{OTHER}/big.age",
        f"goalport/backups/{VICTIM}/big.age",
    ]
    assert storage.list(f"backups/{VICTIM}") == [f"backups/{VICTIM}/first.age"]
    assert storage.list_including_unfinished(f"backups/{VICTIM}") == [
        f"backups/{VICTIM}/.tmp-0123",
        f"backups/{VICTIM}/big.age (unfinished upload)",
        f"backups/{VICTIM}/first.age",
    ]

    assert storage.delete_prefix(f"backups/{VICTIM}") == 3
    assert storage.list_including_unfinished(f"backups/{VICTIM}") == []
    pending = raw.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in pending] == [f"goalport/backups/{OTHER}/big.age"]
    assert raw.find(f"{bucket}/goalport/backups/{VICTIM}") == []
    assert storage.list(f"backups/{OTHER}") == [f"backups/{OTHER}/theirs.age"]


def test_deleting_a_prefix_keeps_the_folders_above_it(tmp_path: Path):
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    storage.write_bytes(f"imports/plans/{VICTIM}/a/b/plan.plan", b"plan")
    (tmp_path / "storage" / "imports" / "plans" / VICTIM / "empty").mkdir()
    assert storage.delete_prefix(f"imports/plans/{VICTIM}") == 1
    assert not (tmp_path / "storage" / "imports" / "plans" / VICTIM).exists()
    assert (tmp_path / "storage" / "imports" / "plans").is_dir()
    storage.delete_prefix("")  # the whole storage: its root folder stays
    assert (tmp_path / "storage").is_dir()


def test_deleting_a_users_last_file_removes_the_folders_named_after_them(tmp_path: Path):
    """A writer undoing its file (the erasure fence) or expiry deleting one must not leave
    an empty folder named after the user; a folder still holding a file stays, and so
    does the storage root. Writing into a folder just removed works."""
    root = tmp_path / "storage"
    storage = ObjectStorage(url=str(root))
    storage.write_bytes(f"exports/{VICTIM}/2025/a.json", b"a")
    storage.write_bytes(f"exports/{VICTIM}/b.json", b"b")
    storage.write_bytes("top.json", b"t")

    assert storage.delete(f"exports/{VICTIM}/2025/a.json")
    assert not (root / "exports" / VICTIM / "2025").exists()
    assert (root / "exports" / VICTIM).is_dir()
    assert storage.delete(f"exports/{VICTIM}/b.json")
    assert not (root / "exports").exists()
    assert storage.delete("top.json") and root.is_dir()
    storage.write_bytes(f"exports/{VICTIM}/c.json", b"c")
    assert storage.list(f"exports/{VICTIM}") == [f"exports/{VICTIM}/c.json"]
