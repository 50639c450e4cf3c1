"""Claiming pending export requests in batches: what the request sensor (and `goalport
exports process`) does before anything is exported.

A claim takes pending rows oldest first, groups them into batches (same format and filters,
one row per user per batch, a size cap) and marks them `processing` under the batch id in
the same transaction. Claims are safe under concurrency. On PostgreSQL, `SELECT ... FOR
UPDATE SKIP LOCKED` lets concurrent claimers take disjoint rows without waiting for each
other. On SQLite, `BEGIN IMMEDIATE` takes the database's single write lock before reading,
so claims queue.

Batch ids say who claimed them (`sb_` the sensor, `lb_` a local processor, `rb_` a run
launched by hand that recorded its own rows): the sensor's claims are checked against
Dagster's runs, and put back if the sensor died between claiming and launching.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.exports.job_rows import filter_from_dict, filters_json
from assets.exports.job_status import (
    ExportStatus,
    claim_jobs,
    job_table,
    requeue_unlaunched_claims,
)
from assets.formats.registry import REQUESTABLE_FORMATS
from resources.audit import new_id, utc_now
from resources.database import ExtractFilter

DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_PER_CLAIM = 1000
SENSOR_BATCH_PREFIX, LOCAL_BATCH_PREFIX, ADOPTED_BATCH_PREFIX = "sb_", "lb_", "rb_"


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
