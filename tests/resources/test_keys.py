"""Per-user key custody (resources/keys.py) against a real PostgreSQL: identities are stored
only wrapped under the master key, a wrong or missing master key fails clearly, rotation
rewraps every row in one transaction, destroying a key makes its backups unreadable, and
the exported identity file opens backups with the real `age` tool.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess

import pytest
import sqlalchemy as sa

from resources import age, keys
from resources.keys import KeyVault
from resources.schema import user_key


@pytest.fixture
def master() -> str:
    return keys.new_master_key()


@pytest.fixture
def vault(pg_url: str, master: str) -> KeyVault:
    vault = KeyVault(database_url=pg_url, master_key=master)
    yield vault
    vault.close()


def _rows(url: str) -> dict[str, sa.Row]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        rows = {row.userId: row for row in conn.execute(sa.select(user_key))}
    engine.dispose()
    return rows


def _execute(url: str, statement) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        conn.execute(statement)
    engine.dispose()


def test_new_master_key_is_standard_base64_of_32_random_bytes():
    first, second = keys.new_master_key(), keys.new_master_key()
    assert first != second
    assert len(base64.b64decode(first, validate=True)) == 32
    assert keys.decode_master_key(first) == base64.b64decode(first)


def test_identity_is_stored_only_wrapped(vault: KeyVault, pg_url: str, master: str):
    recipient = vault.ensure_user_key("user-1")
    assert vault.ensure_user_key("user-1") == recipient
    assert vault.recipient("user-1") == recipient

    identity = vault.identity("user-1")
    assert age.recipient_from_identity(identity) == recipient
    row = _rows(pg_url)["user-1"]
    assert row.recipient == recipient
    assert row.masterKeyId == hashlib.sha256(base64.b64decode(master)).hexdigest()[:16]
    stored = b"|".join(
        str(value).encode() if not isinstance(value, bytes) else value for value in row
    )
    for secret in (identity, identity.lower(), master):
        assert secret.encode() not in stored
    assert base64.b64decode(master) not in stored
    assert len(row.wrappedIdentity) == 12 + len(identity) + 16


def test_batch_creation_returns_every_users_recipient(vault: KeyVault, pg_url: str):
    first = vault.ensure_user_keys(["a", "b", "a", "c"])
    assert list(first) == ["a", "b", "c"]
    assert len(set(first.values())) == 3
    assert vault.ensure_user_keys(["c", "d"]) == {"c": first["c"], "d": vault.recipient("d")}
    assert set(_rows(pg_url)) == {"a", "b", "c", "d"}


def test_wrong_master_key_fails_clearly(vault: KeyVault, pg_url: str):
    vault.ensure_user_key("user-1")
    other = KeyVault(database_url=pg_url, master_key=keys.new_master_key())
    try:
        with pytest.raises(keys.WrongMasterKeyError, match="wrapped under master key"):
            other.identity("user-1")
        with pytest.raises(keys.WrongMasterKeyError, match="rotate-master"):
            other.ensure_user_key("user-2")
    finally:
        other.close()
    assert vault.recipient("user-2") is None

    bad = "not-a-key-" + "x" * 30
    with pytest.raises(keys.InvalidMasterKeyError, match="not valid base64") as caught:
        KeyVault(database_url=pg_url, master_key=bad).identity("user-1")
    assert bad not in str(caught.value)
    short = base64.b64encode(b"\0" * 16).decode()
    with pytest.raises(keys.InvalidMasterKeyError, match="16 bytes, not 32"):
        KeyVault(database_url=pg_url, master_key=short).identity("user-1")


def test_wrapped_key_moved_to_another_user_does_not_open(vault: KeyVault, pg_url: str):
    vault.ensure_user_keys(["victim", "attacker"])
    victim = _rows(pg_url)["victim"]
    _execute(
        pg_url,
        sa.update(user_key)
        .where(user_key.c.userId == "attacker")
        .values(wrappedIdentity=victim.wrappedIdentity, recipient=victim.recipient),
    )
    with pytest.raises(keys.WrongMasterKeyError, match="altered or copied from another user"):
        vault.identity("attacker")


def test_missing_master_key_tells_the_operator_what_to_do(pg_url: str, master: str, monkeypatch):
    monkeypatch.delenv(keys.MASTER_KEY_ENV, raising=False)
    without = KeyVault(database_url=pg_url)
    for operation in (
        lambda: without.ensure_user_key("user-1"),
        lambda: without.identity("user-1"),
        lambda: without.rotate_master(keys.new_master_key()),
        without.current_master_key_id,
    ):
        with pytest.raises(keys.MasterKeyMissingError, match="GOALPORT_MASTER_KEY") as caught:
            operation()
        assert "goalport keys new-master" in str(caught.value)

    monkeypatch.setenv(keys.MASTER_KEY_ENV, master)
    recipient = without.ensure_user_key("user-1")
    monkeypatch.delenv(keys.MASTER_KEY_ENV)
    assert without.recipient("user-1") == recipient  # the public half needs no master key
    assert without.destroy_user_key("user-1")
    without.close()


def test_rotation_rewraps_every_row_in_one_transaction(vault: KeyVault, pg_url: str):
    users = [f"user-{n}" for n in range(5)]
    vault.ensure_user_keys(users)
    identities = {u: vault.identity(u) for u in users}
    before = _rows(pg_url)

    new_master = keys.new_master_key()
    assert vault.rotate_master(new_master) == 5
    after = _rows(pg_url)
    new_id = keys.master_key_id(keys.decode_master_key(new_master))
    rotated = KeyVault(database_url=pg_url, master_key=new_master)
    try:
        for user in users:
            assert after[user].masterKeyId == new_id
            assert after[user].wrappedIdentity != before[user].wrappedIdentity
            assert after[user].recipient == before[user].recipient
            assert rotated.identity(user) == identities[user]
            with pytest.raises(keys.WrongMasterKeyError):
                vault.identity(user)
        assert vault.rotate_master(new_master) == 0  # run twice: nothing left to do

        # One row under a key neither side knows: the whole rotation is refused, nothing moves.
        stranger = keys.decode_master_key(keys.new_master_key())
        identity, recipient = age.generate_identity()
        _execute(
            pg_url,
            sa.insert(user_key).values(
                userId="stray",
                recipient=recipient,
                wrappedIdentity=keys.wrap_identity(stranger, "stray", identity),
                masterKeyId=keys.master_key_id(stranger),
                createdAt=after["user-0"].createdAt,
            ),
        )
        with pytest.raises(keys.WrongMasterKeyError, match="user stray"):
            rotated.rotate_master(keys.new_master_key())
        still = _rows(pg_url)
        assert all(still[u].wrappedIdentity == after[u].wrappedIdentity for u in users)
    finally:
        rotated.close()


def test_destroyed_key_leaves_nothing_that_opens_old_backups(vault: KeyVault, pg_url: str):
    recipient = vault.ensure_user_key("erased")
    vault.ensure_user_keys(["other-1", "other-2"])
    backup = age.encrypt(b"goal data of the erased user", recipients=[recipient])
    assert age.decrypt(backup, identities=[vault.identity("erased")]) == (
        b"goal data of the erased user"
    )

    assert vault.destroy_user_key("erased") is True
    assert vault.destroy_user_key("erased") is False
    assert vault.recipient("erased") is None
    with pytest.raises(keys.UserKeyNotFoundError, match="destroyed"):
        vault.identity("erased")

    vault.ensure_user_key("erased")  # a later key for the same id is a different key
    held = [vault.identity(user_id) for user_id in _rows(pg_url)]
    assert len(held) == 3
    with pytest.raises(age.AgeNoMatchError):
        age.decrypt(backup, identities=held)


def test_exported_identity_file_opens_backups_with_the_age_tool(vault: KeyVault, tmp_path):
    age_cli = shutil.which("age")
    assert age_cli, "the age command-line tool is required: `apt-get install age`"
    recipient = vault.ensure_user_key("user-1")
    payload = b"scheduled backup\n" * 10_000
    backup = tmp_path / "backup.zip.age"
    backup.write_bytes(age.encrypt(payload, recipients=[recipient]))

    exported = vault.identity_file("user-1")
    assert f"# public key: {recipient}\n" in exported
    identity_file = tmp_path / "user-1.key"
    identity_file.write_text(exported)
    result = subprocess.run(
        [age_cli, "-d", "-i", str(identity_file), str(backup)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == payload


def test_key_custody_works_on_the_embedded_sqlite_database(sqlite_url: str, master: str):
    vault = KeyVault(database_url=sqlite_url, master_key=master)
    try:
        recipients = vault.ensure_user_keys(["a", "b"])
        assert vault.ensure_user_keys(["b", "a"]) == {"b": recipients["b"], "a": recipients["a"]}
        assert vault.rotate_master(keys.new_master_key()) == 2
        assert vault.destroy_user_key("a")
    finally:
        vault.close()
