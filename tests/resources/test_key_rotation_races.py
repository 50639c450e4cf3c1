"""`goalport keys rotate-master` against key creation at the same moment (resources/keys.py),
on a real PostgreSQL with two real connections in two threads, and on SQLite: whichever
starts first, every stored key ends up under the new master key and opens with it, and key
creation under the new master still works afterwards.

A third connection holds a row lock to stop the first operation half-way (rotation inside
its SELECT ... FOR UPDATE, creation inside its INSERT), so the second one starts while the
first is really in flight; `pg_stat_activity` says when a backend is waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from resources import age, keys
from resources.keys import KeyVault
from resources.schema import user_key


def _waiting_backends(watcher: sa.Connection) -> int:
    return watcher.execute(
        sa.text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    ).scalar_one()


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def _assert_all_under(pg_url: str, new_master: str, users: list[str]) -> None:
    new_id = keys.master_key_id(keys.decode_master_key(new_master))
    rotated = KeyVault(database_url=pg_url, master_key=new_master)
    try:
        engine = sa.create_engine(pg_url, poolclass=sa.NullPool)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(user_key.c.userId, user_key.c.masterKeyId)).all()
        engine.dispose()
        assert {u for u, _ in rows} >= set(users)
        stranded = [u for u, master_id in rows if master_id != new_id]
        assert stranded == [], f"keys left under the old master key: {stranded}"
        for user, _ in rows:
            identity = rotated.identity(user)
            assert age.recipient_from_identity(identity) == rotated.recipient(user)
        # Key creation under the new master still works.
        assert rotated.ensure_user_key("created-after-rotation").startswith("age1")
    finally:
        rotated.close()


@pytest.fixture
def engines(pg_url: str):
    made = []

    def engine() -> sa.Engine:
        made.append(sa.create_engine(pg_url, poolclass=sa.NullPool))
        return made[-1]

    yield engine
    for engine_ in made:
        engine_.dispose()


def test_key_created_while_rotation_runs_is_not_left_under_the_old_master(pg_url, engines):
    old_master, new_master = keys.new_master_key(), keys.new_master_key()
    rotator = KeyVault(database_url=pg_url, master_key=old_master)
    creator = KeyVault(database_url=pg_url, master_key=old_master)
    users = [f"user-{n}" for n in range(5)]
    rotator.ensure_user_keys(users)
    watcher = engines().connect().execution_options(isolation_level="AUTOCOMMIT")
    blocker = engines().connect()
    blocker.execute(sa.select(user_key).where(user_key.c.userId == "user-0").with_for_update())
    try:
        with ThreadPoolExecutor(2) as pool:
            rotation = pool.submit(rotator.rotate_master, new_master)
            _wait_until(lambda: _waiting_backends(watcher) == 1, "the rotation is in flight")
            creation: Future = pool.submit(creator.ensure_user_key, "created-meanwhile")
            _wait_until(
                lambda: creation.done() or _waiting_backends(watcher) == 2,
                "the key creation has run or waits for the rotation",
            )
            blocker.rollback()
            assert rotation.result(timeout=30) == 5
            try:
                created = creation.result(timeout=30)
            except keys.WrongMasterKeyError as refused:
                # It waited for the rotation, then saw the keys under a master it lacks.
                assert "rotate-master" in str(refused)
            else:
                assert created.startswith("age1")
        _assert_all_under(pg_url, new_master, users)
    finally:
        blocker.close()
        watcher.close()
        rotator.close()
        creator.close()


def test_rotation_started_while_a_key_is_being_created_rewraps_that_key(pg_url, engines):
    old_master, new_master = keys.new_master_key(), keys.new_master_key()
    rotator = KeyVault(database_url=pg_url, master_key=old_master)
    creator = KeyVault(database_url=pg_url, master_key=old_master)
    users = [f"user-{n}" for n in range(5)]
    rotator.ensure_user_keys(users)
    watcher = engines().connect().execution_options(isolation_level="AUTOCOMMIT")
    # An uncommitted row for the same user holds the creator inside its INSERT.
    blocker = engines().connect()
    identity, recipient = age.generate_identity()
    placeholder = keys.decode_master_key(old_master)
    blocker.execute(
        sa.insert(user_key).values(
            userId="created-meanwhile",
            recipient=recipient,
            wrappedIdentity=keys.wrap_identity(placeholder, "created-meanwhile", identity),
            masterKeyId=keys.master_key_id(placeholder),
            createdAt=sa.func.now(),
        )
    )
    try:
        with ThreadPoolExecutor(2) as pool:
            creation = pool.submit(creator.ensure_user_key, "created-meanwhile")
            _wait_until(lambda: _waiting_backends(watcher) == 1, "the key creation is in flight")
            rotation = pool.submit(rotator.rotate_master, new_master)
            _wait_until(
                lambda: rotation.done() or _waiting_backends(watcher) == 2,
                "the rotation has run or waits for the key creation",
            )
            blocker.rollback()
            created = creation.result(timeout=30)
            rotation.result(timeout=30)
        _assert_all_under(pg_url, new_master, [*users, "created-meanwhile"])
        rotated = KeyVault(database_url=pg_url, master_key=new_master)
        assert rotated.recipient("created-meanwhile") == created
        rotated.close()
    finally:
        blocker.close()
        watcher.close()
        rotator.close()
        creator.close()


def test_sqlite_rotation_and_creation_take_the_write_lock_first(sqlite_url: str):
    """SQLite has no advisory locks: both start with BEGIN IMMEDIATE, so neither reads the
    keys before it holds the write lock. Another connection's write transaction holds both
    at the door while the rotation, then a creation, start."""
    old_master, new_master = keys.new_master_key(), keys.new_master_key()
    rotator = KeyVault(database_url=sqlite_url, master_key=old_master)
    creator = KeyVault(database_url=sqlite_url, master_key=old_master)
    rotator.ensure_user_keys(["a", "b", "c"])
    writer = sa.create_engine(sqlite_url, poolclass=sa.NullPool)
    try:
        with writer.connect() as held, ThreadPoolExecutor(2) as pool:
            held.exec_driver_sql("BEGIN IMMEDIATE")
            rotation = pool.submit(rotator.rotate_master, new_master)
            time.sleep(0.3)
            creation = pool.submit(creator.ensure_user_key, "d")
            time.sleep(0.3)
            assert not rotation.done() and not creation.done()
            held.rollback()
            rotation.result(timeout=30)
            try:
                creation.result(timeout=30)
            except keys.WrongMasterKeyError:
                pass  # it came second and saw the keys under a master it lacks
        rotated = KeyVault(database_url=sqlite_url, master_key=new_master)
        engine = sa.create_engine(sqlite_url, poolclass=sa.NullPool)
        with engine.connect() as conn:
            stored = conn.execute(sa.select(user_key.c.userId)).scalars().all()
        engine.dispose()
        assert all(rotated.identity(u) for u in stored)
        rotated.ensure_user_key("e")
        rotated.close()
    finally:
        writer.dispose()
        rotator.close()
        creator.close()
