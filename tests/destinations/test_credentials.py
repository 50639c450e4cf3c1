"""Destination credentials (resources/destinations/credentials.py) on a real PostgreSQL:
stored only wrapped under the master key, bound to their user and destination, replaced,
deleted, rewrapped by a master-key rotation, and refused under a wrong master key."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from resources import keys
from resources.audit import subject_ref
from resources.destinations.credentials import (
    credential_destinations,
    delete_destination_credentials,
    forget_subject_credentials,
    load_destination_credentials,
    save_destination_credentials,
)
from resources.keys import KeyVault, WrongMasterKeyError
from resources.schema import destination_credential

SFTP = "sftp://alice@backup.example.org:2222/goalport"
DAV = "webdav+https://alice@cloud.example.org/remote.php/dav/files/alice/goalport"
SECRET = "correct horse battery staple Ünïcode \u2603"


@pytest.fixture
def engine(pg_url: str):
    engine = sa.create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def vault(pg_url: str) -> KeyVault:
    vault = KeyVault(database_url=pg_url, master_key=keys.new_master_key())
    yield vault
    vault.close()


def _rows(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.select(destination_credential)).all()


def test_secrets_are_stored_only_wrapped_and_come_back(engine, vault):
    secrets = {"password": SECRET, "host_key": "ssh-ed25519 AAAAC3Nz"}
    save_destination_credentials(engine, vault, "user-1", SFTP, secrets)
    assert load_destination_credentials(engine, vault, "user-1", SFTP) == secrets
    (row,) = _rows(engine)
    stored = repr(tuple(row)).encode() + bytes(row.wrappedSecrets)
    assert SECRET.encode() not in stored and b"horse" not in stored
    assert b"user-1" not in stored  # keyed by pseudonym, not by id
    assert row.subjectRef == subject_ref("user-1")
    assert row.masterKeyId == keys.master_key_id(keys.decode_master_key(vault.master_key))


def test_none_stored_is_an_empty_mapping_and_users_are_kept_apart(engine, vault):
    save_destination_credentials(engine, vault, "user-1", SFTP, {"password": "one"})
    assert load_destination_credentials(engine, vault, "user-2", SFTP) == {}
    assert load_destination_credentials(engine, vault, "user-1", DAV) == {}


def test_saving_again_replaces_and_delete_forgets(engine, vault):
    save_destination_credentials(engine, vault, "user-1", SFTP, {"password": "old"})
    save_destination_credentials(engine, vault, "user-1", SFTP, {"password": "new"})
    save_destination_credentials(engine, vault, "user-1", DAV, {"password": "dav"})
    assert len(_rows(engine)) == 2
    assert load_destination_credentials(engine, vault, "user-1", SFTP) == {"password": "new"}
    delete_destination_credentials(engine, "user-1", SFTP)
    delete_destination_credentials(engine, "user-1", SFTP)  # nothing left: no error
    assert load_destination_credentials(engine, vault, "user-1", SFTP) == {}
    assert load_destination_credentials(engine, vault, "user-1", DAV) == {"password": "dav"}


def test_a_row_moved_to_another_user_or_destination_does_not_open(engine, vault):
    save_destination_credentials(engine, vault, "user-1", SFTP, {"password": "mine"})
    save_destination_credentials(engine, vault, "user-2", SFTP, {"password": "theirs"})
    table = destination_credential
    with engine.begin() as conn:
        mine = conn.execute(
            sa.select(table.c.wrappedSecrets).where(table.c.subjectRef == subject_ref("user-1"))
        ).scalar_one()
        conn.execute(
            table.update()
            .where(table.c.subjectRef == subject_ref("user-2"))
            .values(wrappedSecrets=mine)
        )
    with pytest.raises(WrongMasterKeyError, match="altered or moved"):
        load_destination_credentials(engine, vault, "user-2", SFTP)


def test_wrong_master_key_is_refused_and_rotation_rewraps(engine, vault, pg_url):
    save_destination_credentials(engine, vault, "user-1", SFTP, {"password": "p"})
    stranger = KeyVault(database_url=pg_url, master_key=keys.new_master_key())
    with pytest.raises(WrongMasterKeyError, match="wrapped under master key"):
        load_destination_credentials(engine, stranger, "user-1", SFTP)
    new_master = keys.new_master_key()
    assert vault.rotate_master(new_master) == 1
    rotated = KeyVault(database_url=pg_url, master_key=new_master)
    assert load_destination_credentials(engine, rotated, "user-1", SFTP) == {"password": "p"}
    with pytest.raises(WrongMasterKeyError):
        load_destination_credentials(engine, vault, "user-1", SFTP)
    stranger.close()
    rotated.close()


def test_erasure_helpers_keep_only_places_still_holding_files(engine, vault):
    save_destination_credentials(engine, vault, "user-1", SFTP, {"password": "a"})
    save_destination_credentials(engine, vault, "user-1", DAV, {"password": "b"})
    save_destination_credentials(engine, vault, "user-2", DAV, {"password": "c"})
    subject = subject_ref("user-1")
    with engine.begin() as conn:
        assert credential_destinations(conn, subject) == sorted([SFTP, DAV])
        assert forget_subject_credentials(conn, subject, keep={DAV}) == 1
        assert credential_destinations(conn, subject) == [DAV]
        assert forget_subject_credentials(conn, subject) == 1
    assert load_destination_credentials(engine, vault, "user-2", DAV) == {"password": "c"}


def test_secrets_must_be_text(engine, vault):
    from resources.destinations.errors import DestinationError

    with pytest.raises(DestinationError, match="'port' is not") as caught:
        save_destination_credentials(engine, vault, "user-1", SFTP, {"port": 22})  # type: ignore[dict-item]
    assert "22" not in str(caught.value)
