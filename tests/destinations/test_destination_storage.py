"""Each destination's storage (resources/destinations/storage.py) against its real server on
loopback, without a database: a streamed write read back byte for byte, listing, an
interrupted write that leaves nothing that looks complete (and nothing that is not removed
with the user's folder), and deleting one user's folder leaving another's."""

from __future__ import annotations

import hashlib
import os

import pytest

from resources.destinations.filesystems import destination_filesystem, sftp_host_key
from resources.destinations.storage import DestinationStorage, probe_destination
from resources.destinations.urls import parse_destination

SERVERS = ["s3_auth_server", "azurite_server", "gcs_server", "webdav_server", "ssh_server"]


@pytest.fixture(params=SERVERS)
def server(request):
    return request.getfixturevalue(request.param)


class Interrupted(Exception):
    pass


def test_streamed_atomic_writes_listing_and_deleting(server):
    url, secrets = server.new_place()
    if url.startswith("sftp://"):
        secrets["host_key"] = sftp_host_key(url)
    store = DestinationStorage.on(
        parse_destination(url), destination_filesystem(url, secrets, secrets.update)
    )
    probe_destination(store)
    assert store.list() == []  # the test file is gone
    chunk = os.urandom(1 << 20)
    parts = [chunk, chunk[::-1], b"tail"]
    key = "backups/user-1/goalport-backup-1.zip.age"
    stored = store.write_stream(key, iter(parts))
    whole = b"".join(parts)
    assert stored.size == len(whole) and stored.sha256 == hashlib.sha256(whole).hexdigest()
    assert stored.url == store.object_url(key) and store.key_of(stored.url) == key
    assert store.read_bytes(key) == whole
    store.write_bytes("backups/user-2/other.zip", b"another user's")

    def failing():
        yield chunk
        raise Interrupted("the process was stopped mid-upload")

    with pytest.raises(Interrupted):
        store.write_stream("backups/user-1/goalport-backup-2.zip.age", failing())
    assert store.list("backups/user-1") == [key]
    assert not store.exists("backups/user-1/goalport-backup-2.zip.age")

    # the interrupted upload's hidden temporary file may reach a WebDAV server after the
    # client gave up (the server finishes the broken PUT later): it is deleted too
    assert store.delete_prefix("backups/user-1") in (1, 2)
    assert store.list_including_unfinished("backups/user-1") == []
    assert store.list("backups/user-2") == ["backups/user-2/other.zip"]
