"""The erasure fence, and the table of every place goalport wrote a user's file.

**The fence.** Work in flight can outlive an erasure: an export, backup or GDPR-bundle run
that read a user before the erasure would otherwise write their file, audit row or key row
afterwards. So the erasure leaves a tombstone (`ErasureTombstone`, keyed by the audit
pseudonym, never the id), and every writer asks the fence, in one line:

- before publishing a file, `erased_users(engine, user_ids)`: skip the erased ones;
- in its final transaction, `fence_users(conn, user_ids)` (or `fenced_transaction`): the
  erased ones among them, whose rows it must not write, and whose files it deletes.

On PostgreSQL the fence takes a shared transaction-level advisory lock per user that the
erasure takes exclusively before it places the tombstone. So a writer's transaction either
commits before the erasure's begins (and the erasure deletes what it wrote) or sees the
tombstone; no commit slips in between. (SQLite serialises writers by itself.) A tombstone
is forever: user ids are random and never reused.

**File locations.** `FileLocation` rows name every file goalport wrote about a user outside
their folders of the main storage (`goalport export --out`, `goalport gdpr export --out`, the
bulk job's `out_url`, backups at a destination of their choosing) and every GDPR bundle.
They are keyed by pseudonym, not by user id, for the same reason as the tombstone: an
erasure that is re-run after the user's rows are gone still finds them. Erasure deletes the
files at each location (and the user's folders below each storage root) and then the rows;
expiry deletes what is past `expiresAt`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa

from resources import schema
from resources.audit import UserErasedError, new_id, subject_ref, utc_now
from resources.storage import ObjectStorage, StoredObject

tombstone_table = schema.erasure_tombstone
location_table = schema.file_location

__all__ = [
    "FileLocation",
    "UserErasedError",
    "erased_users",
    "fence_users",
    "fenced_transaction",
    "lock_subject_exclusively",
    "place_tombstone",
    "record_file_locations",
]


def _lock_key(subject: str) -> int:
    """A signed 64-bit advisory-lock key for a pseudonym."""
    return int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big", signed=True)


def _tombstoned(conn: sa.Connection, subjects: Sequence[str]) -> set[str]:
    if not subjects:
        return set()
    return set(
        conn.execute(
            sa.select(tombstone_table.c.subjectRef).where(
                tombstone_table.c.subjectRef.in_(list(subjects))
            )
        ).scalars()
    )


def erased_users(engine_or_conn: sa.Engine | sa.Connection, user_ids: Iterable[str]) -> set[str]:
    """The erased users among `user_ids` (a quick check before publishing a file)."""
    by_subject = {subject_ref(u): u for u in dict.fromkeys(user_ids)}
    if isinstance(engine_or_conn, sa.Connection):
        return {by_subject[s] for s in _tombstoned(engine_or_conn, list(by_subject))}
    with engine_or_conn.connect() as conn:
        return {by_subject[s] for s in _tombstoned(conn, list(by_subject))}


def fence_users(conn: sa.Connection, user_ids: Iterable[str]) -> set[str]:
    """Inside a writer's final transaction: hold off erasures of `user_ids` until it commits,
    and return the ones already erased (the writer must not write about them)."""
    by_subject = {subject_ref(u): u for u in dict.fromkeys(user_ids)}
    if conn.dialect.name == "postgresql" and by_subject:
        keys = sorted({_lock_key(s) for s in by_subject})  # one order: no deadlock
        conn.execute(
            sa.text(
                "SELECT pg_advisory_xact_lock_shared(k) FROM unnest(CAST(:keys AS bigint[])) k"
            ),
            {"keys": keys},
        )
    return {by_subject[s] for s in _tombstoned(conn, list(by_subject))}


@contextmanager
def fenced_transaction(
    engine: sa.Engine, user_id: str, *, undo: Callable[[], object] = lambda: None
) -> Iterator[sa.Connection]:
    """A writer's final transaction about one user. If the user was erased, `undo` runs
    (delete the files written) and UserErasedError is raised before anything is written."""
    with engine.begin() as conn:
        if fence_users(conn, [user_id]):
            undo()
            raise UserErasedError(f"user {subject_ref(user_id)} was erased meanwhile")
        yield conn


def lock_subject_exclusively(conn: sa.Connection, subject: str) -> None:
    """The erasure's side of the fence: wait for writers of this user to commit."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_lock_key(subject))))


def place_tombstone(conn: sa.Connection, subject: str, now: dt.datetime | None = None) -> None:
    """Mark the user erased (idempotent); call after `lock_subject_exclusively`."""
    if not _tombstoned(conn, [subject]):
        conn.execute(tombstone_table.insert().values(subjectRef=subject, erasedAt=now or utc_now()))


# ---------------------------------------------------------------- file locations


@dataclass(frozen=True)
class FileLocation:
    id: str
    storage_url: str
    key: str
    kind: str
    expires_at: dt.datetime | None

    def storage(self) -> ObjectStorage:
        return ObjectStorage(url=self.storage_url)


def record_file_locations(
    conn: sa.Connection,
    storage: ObjectStorage,
    files: Iterable[tuple[str, str]],
    kind: str,
    *,
    expires_at: dt.datetime | None = None,
) -> None:
    """Remember (user id, key) files written to `storage`; a place already known is kept."""
    root = storage.root
    rows = {
        (subject_ref(user_id), key): {
            "id": new_id("loc_"),
            "subjectRef": subject_ref(user_id),
            "storageUrl": root,
            "key": key,
            "kind": kind,
            "createdAt": utc_now(),
            "expiresAt": expires_at,
        }
        for user_id, key in files
    }
    if not rows:
        return
    known = conn.execute(
        sa.select(location_table.c.subjectRef, location_table.c.key).where(
            location_table.c.storageUrl == root,
            location_table.c.subjectRef.in_(sorted({s for s, _ in rows})),
            location_table.c.key.in_(sorted({k for _, k in rows})),
        )
    ).all()
    for subject, key in known:
        rows.pop((subject, key), None)
    if rows:
        conn.execute(location_table.insert(), list(rows.values()))


def file_locations(conn: sa.Connection, subject: str) -> list[FileLocation]:
    rows = conn.execute(
        sa.select(location_table)
        .where(location_table.c.subjectRef == subject)
        .order_by(location_table.c.createdAt, location_table.c.id)
    )
    return [
        FileLocation(r.id, r.storageUrl, r.key, r.kind, schema.as_utc(r.expiresAt)) for r in rows
    ]


def forget_file_locations(conn: sa.Connection, ids: Sequence[str]) -> int:
    if not ids:
        return 0
    return conn.execute(location_table.delete().where(location_table.c.id.in_(list(ids)))).rowcount


def expired_file_locations(
    conn: sa.Connection, now: dt.datetime, limit: int = 1000
) -> list[FileLocation]:
    rows = conn.execute(
        sa.select(location_table)
        .where(location_table.c.expiresAt <= now)
        .order_by(location_table.c.expiresAt)
        .limit(limit)
    )
    return [
        FileLocation(r.id, r.storageUrl, r.key, r.kind, schema.as_utc(r.expiresAt)) for r in rows
    ]


def delete_stored(stored: Iterable[StoredObject]) -> int:
    """Delete files a writer stored (by their URLs): what it does when the fence says the
    user was erased meanwhile. Returns how many existed."""
    deleted = 0
    for item in stored:
        root = item.url[: len(item.url) - len(item.key)].rstrip("/")
        deleted += ObjectStorage(url=root).delete(item.key)
    return deleted


def is_main_storage(storage: ObjectStorage) -> bool:
    """Whether `storage` is goalport's own (GOALPORT_STORAGE_URL), whose per-user folders
    erasure sweeps anyway; elsewhere a writer records each file's location."""
    return storage.root == ObjectStorage().root
