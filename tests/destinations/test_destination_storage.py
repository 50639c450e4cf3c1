"""Each destination's storage (resources/destinations/storage.py) against its real server on
loopback: "test this destination", a streamed write read back byte for byte, listing, an
interrupted write that leaves nothing that looks complete, deleting a user's folder, and a
revoked credential as a DestinationCredentialError that names no secret."""

from __future__ import annotations

import hashlib
import os

import pytest
import sqlalchemy as sa

from resources import keys
from resources.destinations.errors import DestinationCredentialError
from resources.destinations.storage import DestinationStorage, connect_destination

SERVERS = ["s3_auth_server", "azurite_server", "gcs_server", "webdav_server", "ssh_server"]


@pytest.fixture(params=SERVERS)
def server(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def engine(pg_url):
    engine = sa.create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def vault(pg_url):
    vault = keys.KeyVault(database_url=pg_url, master_key=keys.new_master_key())
    yield vault
    vault.close()


def _connect(server, engine, vault) -> tuple[DestinationStorage, str, dict]:
    url, secrets = server.new_place()
    if url.startswith("sftp://"):
        from resources.destinations.filesystems import sftp_host_key

        secrets["host_key"] = sftp_host_key(url)
    return connect_destination(engine, vault, "user-1", url, dict(secrets)), url, secrets


class Interrupted(Exception):
    pass


def test_write_list_read_interrupt_delete_and_revoke(server, engine, vault):
    store, url, secrets = _connect(server, engine, vault)
    chunk = os.urandom(1 << 20)
    parts = [chunk, chunk[::-1], b"tail"]
    stored = store.write_stream("backups/user-1/goalport-backup-1.zip.age", iter(parts))
    whole = b"".join(parts)
    assert stored.size == len(whole) and stored.sha256 == hashlib.sha256(whole).hexdigest()
    assert stored.url == store.object_url("backups/user-1/goalport-backup-1.zip.age")
    assert store.key_of(stored.url) == "backups/user-1/goalport-backup-1.zip.age"
    assert store.read_bytes("backups/user-1/goalport-backup-1.zip.age") == whole
    store.write_bytes("backups/user-2/other.zip", b"another user's")

    def failing():
        yield chunk
        raise Interrupted("the process was stopped mid-upload")

    with pytest.raises(Interrupted):
        store.write_stream("backups/user-1/goalport-backup-2.zip.age", failing())
    assert store.list("backups/user-1") == ["backups/user-1/goalport-backup-1.zip.age"]
    assert not store.exists("backups/user-1/goalport-backup-2.zip.age")

    assert store.delete_prefix("backups/user-1") >= 1
    assert store.list_including_unfinished("backups/user-1") == []
    assert store.list("backups/user-2") == ["backups/user-2/other.zip"]

    server.revoke(url)
    fresh = DestinationStorage.on(store.destination, store.fs)  # the same connection too
    with pytest.raises(DestinationCredentialError, match="refused goalport's credentials") as e:
        from resources.destinations.storage import open_destination

        open_destination(engine, vault, "user-1", url).write_bytes("probe", b"x")
    message = str(e.value)
    assert all(v not in message for v in secrets.values())
    del fresh
