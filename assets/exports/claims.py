"""Claiming pending export requests in batches: what the request sensor (and `goalport
exports process`) does before anything is exported.

A claim takes pending rows oldest first, groups them into batches (same format and filters,
one row per user per batch, a size cap) and marks them `processing` under the batch id in
the same transaction. Claims are safe under concurrency. On PostgreSQL, `SELECT ... FOR
UPDATE SKIP LOCKED` lets concurrent claimers take disjoint rows without waiting for each
other. On SQLite, `BEGIN IMMEDIATE` takes the database's single write lock before reading,
so claims queue.

A claim outlives its worker only as long as its heartbeat: the claimant renews
`heartbeatAt` while it works (`assets.exports.progress.ClaimHeartbeat`), and every claimer
first requeues rows whose heartbeat is older than GOALPORT_STALE_AFTER
(`requeue_stale_claims`), deleting whatever file the dead claim left under the row's key;
a row whose claimants died MAX_STALE_CLAIMS times fails with the reason instead.

Batch ids say who claimed them (`sb_` the sensor, `lb_` a local processor, `rb_` a run
launched by hand that recorded its own rows): the sensor's claims are checked against
Dagster's runs, and put back if the sensor died between claiming and launching.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.exports.job_rows import filter_from_dict, filters_json
from assets.exports.job_status import (
    ExportStatus,
    claim_jobs,
    fail_stale_jobs,
    job_table,
    last_sign_of_life,
    requeue_stale_jobs,
    requeue_unlaunched_claims,
)
from assets.formats.registry import REQUESTABLE_FORMATS
from resources.audit import new_id, utc_now
from resources.database import ExtractFilter
from resources.storage import ObjectStorage
from resources.storage_layout import export_folder

DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_PER_CLAIM = 1000
SENSOR_BATCH_PREFIX, LOCAL_BATCH_PREFIX, ADOPTED_BATCH_PREFIX = "sb_", "lb_", "rb_"
# A row claimed this many times by workers that all died is failed, not requeued again:
# a request that kills its worker (out of memory, a crash in a library) must not loop.
MAX_STALE_CLAIMS = 3


@dataclass(frozen=True)
class ClaimedBatch:
    """Requests claimed together: one format, one filter, each user at most once."""

    batch_id: str
    format: str
    filters: dict
    job_ids: tuple[str, ...]
    user_ids: tuple[str, ...]

    @property
    def extract_filter(self) -> ExtractFilter:
        return filter_from_dict(self.filters)


@dataclass
class _OpenBatch:
    format: str
    filters: str
    job_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)


def group_into_batches(
    rows: Iterable[Mapping], batch_size: int, *, prefix: str = LOCAL_BATCH_PREFIX
) -> list[ClaimedBatch]:
    """Group request rows (oldest first) into batches of at most `batch_size`.

    Rows share a batch when they have the same format and filters; a user's second request
    goes to the next batch, so each request gets its own file.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    groups: dict[tuple[str, str], list[_OpenBatch]] = {}
    ordered: list[_OpenBatch] = []
    for row in rows:
        key = (row["format"], row["filters"] or filters_json(ExtractFilter()))
        batches = groups.setdefault(key, [])
        target = next(
            (b for b in batches if len(b.job_ids) < batch_size and row["userId"] not in b.user_ids),
            None,
        )
        if target is None:
            target = _OpenBatch(format=key[0], filters=key[1])
            batches.append(target)
            ordered.append(target)
        target.job_ids.append(row["id"])
        target.user_ids.append(row["userId"])
    return [
        ClaimedBatch(
            batch_id=new_id(prefix),
            format=b.format,
            filters=json.loads(b.filters),
            job_ids=tuple(b.job_ids),
            user_ids=tuple(b.user_ids),
        )
        for b in ordered
    ]


def claim_pending_exports(
    engine: sa.Engine,
    *,
    max_requests: int = DEFAULT_MAX_PER_CLAIM,
    batch_size: int = DEFAULT_BATCH_SIZE,
    claimant: str = "local",
    now: dt.datetime | None = None,
) -> list[ClaimedBatch]:
    """Claim up to `max_requests` pending requests, oldest first, as batches.

    Only formats this processor renders are claimed: rows in other formats stay pending for
    the code that handles them. Each claimed row is `processing`, with its batch id, start
    time and one more attempt, before this returns; no other claimer can take it.
    """
    prefix = SENSOR_BATCH_PREFIX if claimant == "sensor" else LOCAL_BATCH_PREFIX
    now = now or utc_now()
    query = (
        sa.select(job_table.c.id, job_table.c.userId, job_table.c.format, job_table.c.filters)
        .where(
            job_table.c.status == ExportStatus.PENDING.value,
            job_table.c.format.in_(list(REQUESTABLE_FORMATS)),
        )
        .order_by(job_table.c.createdAt, job_table.c.id)
        .limit(max_requests)
    )
    with _claim_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).mappings().all()
        batches = group_into_batches(rows, batch_size, prefix=prefix)
        for batch in batches:
            claim_jobs(conn, batch.job_ids, batch_id=batch.batch_id, now=now)
    return batches


def wait_for_pending_exports(
    engine: sa.Engine,
    *,
    timeout: float,
    poll: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Whether a pending request appears within `timeout` seconds, asking every `poll`.

    The request sensor waits here when it finds nothing to claim: Dagster evaluates sensors
    at most every 5 s, so a tick that waits most of that time answers a request in a
    fraction of a second instead of 2.5 s on average. One indexed `LIMIT 1` query a poll."""
    query = (
        sa.select(job_table.c.id)
        .where(
            job_table.c.status == ExportStatus.PENDING.value,
            job_table.c.format.in_(list(REQUESTABLE_FORMATS)),
        )
        .limit(1)
    )
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while True:
            if conn.execute(query).first() is not None:
                return True
            conn.rollback()  # the next poll sees rows committed since
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sleep(min(poll, left))


@contextmanager
def _claim_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction holding the claim lock: row locks on PostgreSQL; on SQLite the write
    lock, taken up front with BEGIN IMMEDIATE so two claimers never read the same rows."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def requeue_stranded_claims(
    engine: sa.Engine,
    *,
    older_than: dt.timedelta,
    has_run: Callable[[str], bool],
    now: dt.datetime | None = None,
) -> list[str]:
    """Put back to pending the sensor's claims that never became a run (the sensor died
    between claiming and launching). Returns the batch ids requeued."""
    cutoff = (now or utc_now()) - older_than
    with engine.connect() as conn:
        batch_ids = (
            conn.execute(
                sa.select(job_table.c.batchId)
                .where(
                    job_table.c.status == ExportStatus.PROCESSING.value,
                    job_table.c.runId.is_(None),
                    job_table.c.batchId.like(SENSOR_BATCH_PREFIX + "%"),
                    job_table.c.startedAt < cutoff,
                )
                .distinct()
            )
            .scalars()
            .all()
        )
    stranded = [b for b in batch_ids if not has_run(b)]
    if stranded:
        with engine.begin() as conn:
            requeue_unlaunched_claims(conn, stranded)
    return stranded


@dataclass
class StaleClaims:
    """What `requeue_stale_claims` did: rows back to pending, rows failed for good, and the
    files of dead claims deleted."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    dead_batches: set[str] = field(default_factory=set)
    # stale rows left as they were, with why (their files could not be deleted): the next
    # claimer tries again
    kept: dict[str, str] = field(default_factory=dict)


def requeue_stale_claims(
    engine: sa.Engine,
    *,
    older_than: dt.timedelta,
    storage: ObjectStorage | None = None,
    is_waiting: Callable[[str], bool] | None = None,
    now: dt.datetime | None = None,
    prefixes: Sequence[str] = (SENSOR_BATCH_PREFIX, LOCAL_BATCH_PREFIX, ADOPTED_BATCH_PREFIX),
) -> StaleClaims:
    """Requeue the processing rows whose claimant stopped beating `older_than` ago.

    `is_waiting(batch_id)` says that a batch has not started yet (its run still queued in
    Dagster): such a claim is alive although nobody beats it. A row on its MAX_STALE_CLAIMS-th
    claim fails with the reason instead. With `storage`, the file a dead claim may have
    stored under the row's key (finished but unrecorded, or a partial temporary file) is
    deleted before the row's move commits, so that no file is left that no row points at;
    a row whose files could not be deleted stays as it was (`kept`). `prefixes` are the
    batch id prefixes of the claims looked at (the export claims by default; the GDPR
    request sensor looks at its own).
    """
    stale_before = (now or utc_now()) - older_than
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(job_table.c.id, job_table.c.userId, job_table.c.batchId, job_table.c.attempts)
            .where(
                job_table.c.status == ExportStatus.PROCESSING.value,
                # only the claims made here beat; a backup (`bk_`) or an operator's run
                # has its own watch and must not be taken from it
                sa.or_(*(job_table.c.batchId.startswith(prefix) for prefix in prefixes)),
                last_sign_of_life() < stale_before,
            )
            .order_by(job_table.c.batchId, job_table.c.id)
        ).all()
    outcome = StaleClaims()
    waiting: dict[str, bool] = {}
    seconds = round(older_than.total_seconds())
    for row in rows:
        if is_waiting is not None:
            if row.batchId not in waiting:
                waiting[row.batchId] = is_waiting(row.batchId)
            if waiting[row.batchId]:
                continue
        try:
            # The dead claim's files go before the row's move commits, while the UPDATE
            # holds the row: a crash or a storage error in between rolls the move back, and
            # the row, still stale, is taken again by the next claimer; never a requeued
            # row whose old file is left behind.
            with engine.begin() as conn:
                if row.attempts >= MAX_STALE_CLAIMS:
                    message = (
                        f"the worker of each of its {row.attempts} claims stopped (no "
                        f"heartbeat for {seconds} s): not requeued again; retry it once the "
                        "cause is fixed"
                    )
                    moved = fail_stale_jobs(
                        conn, [row.id], message, batch_id=row.batchId, stale_before=stale_before
                    )
                else:
                    moved = requeue_stale_jobs(
                        conn, [row.id], batch_id=row.batchId, stale_before=stale_before
                    )
                deleted = (
                    delete_claim_files(storage, row.userId, row.id, stale_before)
                    if moved and storage is not None
                    else []
                )
        except Exception as exc:  # noqa: BLE001 - whatever stopped the clean-up, the row waits
            outcome.kept[row.id] = f"{type(exc).__name__}: {exc}"
            continue
        (outcome.failed if row.attempts >= MAX_STALE_CLAIMS else outcome.requeued).extend(moved)
        outcome.files_deleted.extend(deleted)
        if moved:
            outcome.dead_batches.add(row.batchId)
    return outcome


def delete_claim_files(
    storage: ObjectStorage, user_id: str, job_id: str, older_than: dt.datetime
) -> list[str]:
    """Delete the files a dead claim of `job_id` left: its export file (named
    `...-<job id>.<ext>`, one key per request) and, in a local folder, temporary files of
    writes it never finished (not touched since `older_than`). Returns the deleted keys."""
    folder = export_folder(user_id)
    deleted = [
        key
        for key in storage.list(folder)
        if f"-{job_id}." in key.rsplit("/", 1)[-1] and storage.delete(key)
    ]
    if storage.is_local:
        try:
            found = storage.fs.find(storage.path(folder), detail=True)
        except FileNotFoundError:
            found = {}
        for path, info in found.items():
            name = path.rsplit("/", 1)[-1]
            mtime = info.get("mtime") or info.get("created") or 0
            if name.startswith(".tmp-") and mtime < older_than.timestamp():
                storage.fs.rm_file(path)
                deleted.append(f"{folder}/{name}")
    return deleted
