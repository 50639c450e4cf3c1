"""Custody of the per-user age keys that scheduled backups are encrypted to.

Each user gets an age X25519 identity. Its public half (the recipient) is stored in clear:
the pipeline encrypts backups with it and never needs anything secret. The identity itself
is stored only wrapped: AES-256-GCM under the operator's master key (`GOALPORT_MASTER_KEY`,
standard base64 of 32 random bytes), with a random 12-byte nonce and the user id as
associated data, so a wrapped blob cannot be moved to another user's row. The row keeps a
fingerprint of the master key (`masterKeyId`: the first 16 hex digits of SHA-256 of its 32
bytes), never the key. Unwrapping is needed only to restore, to export the identity for the
user (`goalport keys export`), and to rotate the master key.

Deleting a user's row is crypto-shredding: the identity existed nowhere else, so every copy
of every backup encrypted to it, wherever it is stored, becomes unreadable.

Wrapped blob layout: nonce (12 bytes) || AES-GCM ciphertext of the identity's ASCII || tag.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import dagster as dg
import pydantic
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import PrivateAttr

from resources import age
from resources.audit import UserErasedError, subject_ref
from resources.erasure_fence import fence_users
from resources.schema import destination_credential, user_key
from resources.settings import (
    MASTER_KEY_ENV,
    configured_master_key,
    database_url,
    normalise_database_url,
)

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

_MASTER_KEY_SIZE = 32
_NONCE_SIZE = 12
# The PostgreSQL advisory lock that serialises master-key rotation with key creation: any
# 64-bit number, the same in every goalport process ("goalkeys" in ASCII).
CUSTODY_LOCK_ID = 0x676F616C_6B657973
_HOW_TO_SET = (
    f"set {MASTER_KEY_ENV} to the standard base64 of 32 random bytes "
    "(`goalport keys new-master` prints a new one)"
)


class KeyCustodyError(RuntimeError):
    """User keys cannot be created, opened or rotated; the message says what to do."""


class MasterKeyMissingError(KeyCustodyError):
    """No master key is configured."""


class InvalidMasterKeyError(KeyCustodyError):
    """The configured master key is not base64 of 32 bytes."""


class WrongMasterKeyError(KeyCustodyError):
    """A stored key is wrapped under a different master key, or its row was altered."""


class UserKeyNotFoundError(KeyCustodyError, LookupError):
    """The user has no key: never created, or destroyed when the user was erased."""


def new_master_key() -> str:
    """A fresh master key: standard base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(_MASTER_KEY_SIZE)).decode("ascii")


def decode_master_key(text: str, what: str = MASTER_KEY_ENV) -> bytes:
    """The 32 key bytes of a base64 master key. Errors never echo the value."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidMasterKeyError(f"{what} is not valid base64; {_HOW_TO_SET}") from None
    if len(key) != _MASTER_KEY_SIZE:
        raise InvalidMasterKeyError(
            f"{what} decodes to {len(key)} bytes, not {_MASTER_KEY_SIZE}; {_HOW_TO_SET}"
        )
    return key


def master_key_id(key: bytes) -> str:
    """The fingerprint stored beside wrapped keys: first 16 hex digits of SHA-256(key).

    An operator can compute it with `echo $GOALPORT_MASTER_KEY | base64 -d | sha256sum`.
    """
    return hashlib.sha256(key).hexdigest()[:16]


def wrap_identity(master: bytes, user_id: str, identity: str) -> bytes:
    nonce = os.urandom(_NONCE_SIZE)
    return nonce + AESGCM(master).encrypt(nonce, identity.encode("ascii"), user_id.encode())


def unwrap_identity(master: bytes, user_id: str, wrapped: bytes) -> str:
    try:
        plain = AESGCM(master).decrypt(
            wrapped[:_NONCE_SIZE], wrapped[_NONCE_SIZE:], user_id.encode()
        )
    except InvalidTag:
        raise WrongMasterKeyError(
            f"the stored key of user {user_id} does not open with the master key "
            f"{master_key_id(master)}: the row was altered or copied from another user"
        ) from None
    return plain.decode("ascii")


class KeyVault(dg.ConfigurableResource):
    """Per-user age keys in the `UserKey` table, wrapped under the master key."""

    database_url: str = pydantic.Field(
        default="",
        description="SQLAlchemy URL; empty means GOALPORT_DATABASE_URL, else ./var/goalport.db",
    )
    master_key: str | None = pydantic.Field(
        default=None,
        description=(
            f"base64 of 32 bytes, e.g. dg.EnvVar({MASTER_KEY_ENV!r}) to have Dagster show "
            f"where it comes from; None reads {MASTER_KEY_ENV} when the key is needed"
        ),
    )

    _engine: sa.Engine | None = PrivateAttr(default=None)

    # ------------------------------------------------------------ plumbing

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            url = normalise_database_url(self.database_url) if self.database_url else None
            self._engine = sa.create_engine(url or database_url(), pool_pre_ping=True)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def teardown_after_execution(self, context) -> None:  # noqa: ARG002
        self.close()

    def _master(self) -> bytes:
        text = self.master_key if self.master_key is not None else configured_master_key()
        if not text or not text.strip():
            raise MasterKeyMissingError(
                f"no master key: encrypted backups and user keys need one; {_HOW_TO_SET}"
            )
        return decode_master_key(text)

    def current_master_key_id(self) -> str:
        """The configured master key's fingerprint; raises the operator-facing error if
        there is no usable master key (call it before starting encrypted backups)."""
        return master_key_id(self._master())

    def _check_custody(self, conn: sa.Connection, master: bytes) -> None:
        """Refuse to add keys under a master key other than the one the stored keys use."""
        current = master_key_id(master)
        others = (
            conn.execute(
                sa.select(user_key.c.masterKeyId)
                .where(user_key.c.masterKeyId != current)
                .distinct()
                .limit(3)
            )
            .scalars()
            .all()
        )
        if others:
            raise WrongMasterKeyError(
                f"{MASTER_KEY_ENV} (id {current}) is not the master key the stored user keys "
                f"are wrapped under (id {', '.join(others)}): set the right key, or move them "
                "to this one with `goalport keys rotate-master` run under the old key"
            )

    @contextmanager
    def _custody_transaction(self, *, exclusive: bool) -> Iterator[sa.Connection]:
        """A transaction that key creation (shared) and rotation (exclusive) run in.

        Without it a key created while a rotation runs is wrapped under the old master key
        after the rotation read the table, and stays there: every later creation under the
        new key is then refused. PostgreSQL: a transaction-level advisory lock, shared by
        creators, exclusive for a rotation, taken before anything is read. SQLite: BEGIN
        IMMEDIATE, the database's write lock, for both."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
                conn.execute(sa.text(f"SELECT {lock}(:id)"), {"id": CUSTODY_LOCK_ID})
            elif conn.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    # ------------------------------------------------------------ operations

    def ensure_user_key(self, user_id: str) -> str:
        """The user's recipient, creating and storing their identity on first use."""
        recipient = self.ensure_user_keys([user_id]).get(user_id)
        if recipient is None:
            raise UserErasedError(f"user {subject_ref(user_id)} was erased: no key is created")
        return recipient

    def ensure_user_keys(self, user_ids: Sequence[str]) -> dict[str, str]:
        """Recipients for a batch of users, creating the missing identities in one go; an
        erased user (the erasure fence) gets none and is left out."""
        master = self._master()
        user_ids = list(dict.fromkeys(user_ids))
        with self._custody_transaction(exclusive=False) as conn:
            self._check_custody(conn, master)
            existing = self._recipients(conn, user_ids)
            erased = fence_users(conn, [u for u in user_ids if u not in existing])
            missing = [u for u in user_ids if u not in existing and u not in erased]
            if missing:
                now = dt.datetime.now(dt.UTC)
                rows = []
                for user_id in missing:
                    identity, recipient = age.generate_identity()
                    rows.append(
                        {
                            "userId": user_id,
                            "recipient": recipient,
                            "wrappedIdentity": wrap_identity(master, user_id, identity),
                            "masterKeyId": master_key_id(master),
                            "createdAt": now,
                        }
                    )
                conn.execute(_insert_ignoring_existing(conn, rows))
                # A concurrent run may have created some of them first: its keys win.
                existing.update(self._recipients(conn, missing))
        return {u: existing[u] for u in user_ids if u in existing}

    @staticmethod
    def _recipients(conn: sa.Connection, user_ids: Sequence[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        rows = conn.execute(
            sa.select(user_key.c.userId, user_key.c.recipient).where(
                user_key.c.userId.in_(list(user_ids))
            )
        )
        return {user_id: recipient for user_id, recipient in rows}

    def recipient(self, user_id: str) -> str | None:
        """The user's public recipient (no master key needed), or None if they have no key."""
        with self.engine.connect() as conn:
            return self._recipients(conn, [user_id]).get(user_id)

    def _stored_row(self, user_id: str) -> sa.Row:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(user_key).where(user_key.c.userId == user_id)
            ).one_or_none()
        if row is None:
            raise UserKeyNotFoundError(
                f"user {user_id} has no key: it was never created, or was destroyed when the "
                "user was erased (their encrypted backups can no longer be opened)"
            )
        return row

    def identity(self, user_id: str) -> str:
        """The user's unwrapped identity, for restores and `goalport keys export`."""
        master = self._master()
        return _open_row(master, self._stored_row(user_id))

    def identity_file(self, user_id: str) -> str:
        """The user's identity in age's identity-file format (what `age -d -i FILE` reads)."""
        master = self._master()
        row = self._stored_row(user_id)
        return age.format_identity_file(_open_row(master, row), row.createdAt, row.recipient)

    def wrap_secret(self, context: str, secret: bytes) -> tuple[bytes, str]:
        """`secret` wrapped as identities are (AES-256-GCM under the master key, a random
        nonce first), bound to `context` as associated data; and the master key's id."""
        master = self._master()
        nonce = os.urandom(_NONCE_SIZE)
        sealed = AESGCM(master).encrypt(nonce, secret, context.encode())
        return nonce + sealed, master_key_id(master)

    def unwrap_secret(self, context: str, wrapped: bytes, wrapped_under: str) -> bytes:
        """The secret `wrap_secret` wrapped under the master key `wrapped_under` for `context`."""
        return _unwrap_secret(self._master(), context, wrapped, wrapped_under)

    def destroy_user_key(self, user_id: str) -> bool:
        """Crypto-shred the user's key; True if there was one. Needs no master key."""
        with self.engine.begin() as conn:
            deleted = conn.execute(sa.delete(user_key).where(user_key.c.userId == user_id))
        return deleted.rowcount > 0

    def rotate_master(self, new_master_key: str) -> int:
        """Rewrap every stored key under `new_master_key`, all in one transaction, while
        no key can be created (see `_custody_transaction`).

        Needs the current master key configured. Rows already under the new key (a rotation
        run twice) are checked and left alone. Returns the number of rows rewrapped; the
        operator then sets GOALPORT_MASTER_KEY to the new key.
        """
        old = self._master()
        new = decode_master_key(new_master_key, "the new master key")
        old_id, new_id = master_key_id(old), master_key_id(new)
        with self._custody_transaction(exclusive=True) as conn:
            rows = conn.execute(sa.select(user_key).with_for_update()).all()
            updates = []
            for row in rows:
                if row.masterKeyId == new_id and new_id != old_id:
                    _open_row(new, row)
                    continue
                identity = _open_row(old, row)
                updates.append(
                    {
                        "key_user_id": row.userId,
                        "key_wrapped": wrap_identity(new, row.userId, identity),
                        "key_master_id": new_id,
                    }
                )
            if updates:
                conn.execute(
                    sa.update(user_key)
                    .where(user_key.c.userId == sa.bindparam("key_user_id"))
                    .values(
                        wrappedIdentity=sa.bindparam("key_wrapped"),
                        masterKeyId=sa.bindparam("key_master_id"),
                    ),
                    updates,
                )
            updates.extend(_rewrap_destination_secrets(conn, old, new))
        return len(updates)


def destination_secret_context(subject: str, destination_url: str) -> str:
    """The associated data of a destination's wrapped secrets: the row cannot be moved to
    another user or another destination."""
    return f"DestinationCredential\n{subject}\n{destination_url}"


def _unwrap_secret(master: bytes, context: str, wrapped: bytes, wrapped_under: str) -> bytes:
    current = master_key_id(master)
    if wrapped_under != current:
        raise WrongMasterKeyError(
            f"a secret is wrapped under master key {wrapped_under}, but the configured master "
            f"key is {current}; {_HOW_TO_SET} with the right key"
        )
    try:
        return AESGCM(master).decrypt(
            wrapped[:_NONCE_SIZE], wrapped[_NONCE_SIZE:], context.encode()
        )
    except InvalidTag:
        raise WrongMasterKeyError(
            "a stored secret does not open with the master key: the row was altered or moved"
        ) from None


def _rewrap_destination_secrets(conn: sa.Connection, old: bytes, new: bytes) -> list[dict]:
    """Inside a rotation: every destination's secrets rewrapped under the new master key."""
    table = destination_credential
    new_id = master_key_id(new)
    updates = []
    for row in conn.execute(sa.select(table).with_for_update()).all():
        if row.masterKeyId == new_id:
            continue
        context = destination_secret_context(row.subjectRef, row.destinationUrl)
        secret = _unwrap_secret(old, context, row.wrappedSecrets, row.masterKeyId)
        nonce = os.urandom(_NONCE_SIZE)
        updates.append(
            {
                "secret_id": row.id,
                "secret_wrapped": nonce + AESGCM(new).encrypt(nonce, secret, context.encode()),
            }
        )
    if updates:
        conn.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("secret_id"))
            .values(wrappedSecrets=sa.bindparam("secret_wrapped"), masterKeyId=new_id),
            updates,
        )
    return updates


def _open_row(master: bytes, row: sa.Row) -> str:
    current = master_key_id(master)
    if row.masterKeyId != current:
        raise WrongMasterKeyError(
            f"the key of user {row.userId} is wrapped under master key {row.masterKeyId}, but "
            f"the configured master key is {current}; {_HOW_TO_SET} with the right key"
        )
    identity = unwrap_identity(master, row.userId, row.wrappedIdentity)
    if age.recipient_from_identity(identity) != row.recipient:
        raise WrongMasterKeyError(
            f"the stored recipient of user {row.userId} does not match their identity: "
            "the row was altered"
        )
    return identity


def _insert_ignoring_existing(conn: sa.Connection, rows: list[dict]) -> sa.Insert:
    statement: postgresql.Insert | sqlite.Insert
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement = postgresql_insert(user_key)
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(user_key)
    else:  # pragma: no cover - goalport runs on PostgreSQL and SQLite only
        raise KeyCustodyError(f"unsupported database {conn.dialect.name}")
    return statement.values(rows).on_conflict_do_nothing(index_elements=["userId"])
