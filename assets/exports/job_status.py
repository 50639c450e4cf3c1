"""The one status machine of `DataExportJob`, and the only code that writes its status.

Requests, backups and GDPR exports share the table, so they share its life:

    pending --claim--> processing --complete--> completed --expire--> expired
                       processing --fail-----> failed
                       processing --requeue--> pending      (a claim that never became a run,
                                                             or whose heartbeat stopped)
    failed, expired --retry--> pending                      (an operator's retry)
    failed --reclaim--> processing                          (a re-executed run takes its rows back)

A job that ends (completed, failed, expired) loses its encrypted request's passphrase in the
same UPDATE's transaction (`assets.exports.encryption`).

A row is created `pending` (a request), `processing` (work that starts at once: a backup,
a run launched by hand) or `completed` (an export finished before it was recorded).

Each writer below is one named transition: an UPDATE guarded by `status IN (<its sources>)`
plus whatever else the caller must still hold (the batch id), returning the ids it changed.
A row that moved on in the meantime (re-queued by an operator, failed by the run-failure
sensor) is left alone and missing from the answer; the caller decides what that means. The
strings are the ones the table has always held, so the database does not change.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from resources import schema
from resources.audit import utc_now

job_table = schema.data_export_job
MAX_ERROR_MESSAGE = 4000


class ExportStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"


# A job in one of these has ended: an encrypted request's passphrase is wiped on the way in.
ENDS = frozenset({ExportStatus.COMPLETED, ExportStatus.FAILED, ExportStatus.EXPIRED})
# Queued or running: a user with such a row already has that export in flight.
IN_FLIGHT = (ExportStatus.PENDING, ExportStatus.PROCESSING)


def in_flight_request(conn: sa.Connection, user_id: str, export_type: str) -> str | None:
    """The id of the user's newest request of `export_type` still pending or processing
    (someone asking again gets that one instead of a second)."""
    return conn.execute(
        sa.select(job_table.c.id)
        .where(
            job_table.c.userId == user_id,
            job_table.c.exportType == export_type,
            job_table.c.status.in_([s.value for s in IN_FLIGHT]),
        )
        .order_by(job_table.c.createdAt.desc())
        .limit(1)
    ).scalar()


INITIAL_STATUSES = frozenset(
    {ExportStatus.PENDING, ExportStatus.PROCESSING, ExportStatus.COMPLETED}
)


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[ExportStatus]
    target: ExportStatus


CLAIM = Transition("claim", frozenset({ExportStatus.PENDING}), ExportStatus.PROCESSING)
RECLAIM = Transition("reclaim", frozenset({ExportStatus.FAILED}), ExportStatus.PROCESSING)
COMPLETE = Transition("complete", frozenset({ExportStatus.PROCESSING}), ExportStatus.COMPLETED)
FAIL = Transition("fail", frozenset({ExportStatus.PROCESSING}), ExportStatus.FAILED)
REQUEUE = Transition("requeue", frozenset({ExportStatus.PROCESSING}), ExportStatus.PENDING)
RETRY = Transition(
    "retry", frozenset({ExportStatus.FAILED, ExportStatus.EXPIRED}), ExportStatus.PENDING
)
EXPIRE = Transition("expire", frozenset({ExportStatus.COMPLETED}), ExportStatus.EXPIRED)
TRANSITIONS = (CLAIM, RECLAIM, COMPLETE, FAIL, REQUEUE, RETRY, EXPIRE)


def allowed_moves() -> dict[ExportStatus, frozenset[ExportStatus]]:
    """Every status and the statuses a row in it may move to."""
    moves: dict[ExportStatus, set[ExportStatus]] = {s: set() for s in ExportStatus}
    for transition in TRANSITIONS:
        for source in transition.sources:
            moves[source].add(transition.target)
    return {s: frozenset(targets) for s, targets in moves.items()}


def _move(
    conn: sa.Connection,
    transition: Transition,
    where: Iterable[sa.ColumnElement[bool]],
    values: Mapping[str, Any],
) -> list[str]:
    """The one UPDATE of the status column: guarded by the transition's sources."""
    sources = sorted(s.value for s in transition.sources)
    statement = (
        job_table.update()
        .where(*where, job_table.c.status.in_(sources))
        .values(status=transition.target.value, **values)
        .returning(job_table.c.id)
    )
    moved = list(conn.execute(statement).scalars())
    if moved and transition.target in ENDS:
        _wipe_passphrases(conn, moved)
    return moved


def _wipe_passphrases(conn: sa.Connection, job_ids: Sequence[str]) -> None:
    """A job that ended keeps no passphrase (`assets.exports.encryption`): wiped in the
    transaction that ends it, whatever the end."""
    table = schema.export_encryption
    conn.execute(
        table.update()
        .where(table.c.jobId.in_(list(job_ids)), table.c.wrappedPassphrase.is_not(None))
        .values(wrappedPassphrase=None)
    )


def insert_jobs(
    conn: sa.Connection, rows: Sequence[Mapping[str, Any]], status: ExportStatus
) -> None:
    """Insert new rows in `status` (pending, processing or completed): the column's only
    INSERT. The rows carry every other column."""
    if status not in INITIAL_STATUSES:
        raise ValueError(f"a new export job cannot start {status}")
    if rows:
        conn.execute(job_table.insert(), [{**row, "status": status.value} for row in rows])


def claim_jobs(
    conn: sa.Connection, job_ids: Sequence[str], *, batch_id: str, now: dt.datetime
) -> list[str]:
    """pending -> processing under `batch_id`: a fresh start, one more attempt."""
    return _move(
        conn,
        CLAIM,
        [job_table.c.id.in_(list(job_ids))],
        {
            "batchId": batch_id,
            "runId": None,
            "startedAt": now,
            "completedAt": None,
            "errorMessage": None,
            "recordsProcessed": 0,
            "attempts": job_table.c.attempts + 1,
            "heartbeatAt": now,
        },
    )


def beat_claims(conn: sa.Connection, batch_id: str, *, now: dt.datetime) -> int:
    """Renew the heartbeat of the rows `batch_id` still holds (their status is unchanged):
    the claimant is alive. Returns how many rows it still holds."""
    result = conn.execute(
        job_table.update()
        .where(
            job_table.c.batchId == batch_id,
            job_table.c.status == ExportStatus.PROCESSING.value,
        )
        .values(heartbeatAt=now)
    )
    return result.rowcount


def last_sign_of_life() -> sa.ColumnElement[Any]:
    """When a processing row's claimant was last known alive: its heartbeat, else its claim."""
    return sa.func.coalesce(job_table.c.heartbeatAt, job_table.c.startedAt)


def requeue_stale_jobs(
    conn: sa.Connection, job_ids: Sequence[str], *, batch_id: str, stale_before: dt.datetime
) -> list[str]:
    """processing -> pending for rows of `batch_id` whose claimant stopped beating before
    `stale_before` (a row that beat meanwhile is left alone)."""
    return _move(
        conn,
        REQUEUE,
        [
            job_table.c.id.in_(list(job_ids)),
            job_table.c.batchId == batch_id,
            last_sign_of_life() < stale_before,
        ],
        {"batchId": None, "runId": None, "startedAt": None, "heartbeatAt": None},
    )


def fail_stale_jobs(
    conn: sa.Connection,
    job_ids: Sequence[str],
    message: str,
    *,
    batch_id: str,
    stale_before: dt.datetime,
) -> list[str]:
    """processing -> failed for rows of `batch_id` whose claimant stopped beating before
    `stale_before`, with the reason: a row whose workers keep dying is not tried again."""
    return _move(
        conn,
        FAIL,
        [
            job_table.c.id.in_(list(job_ids)),
            job_table.c.batchId == batch_id,
            last_sign_of_life() < stale_before,
        ],
        {"errorMessage": message[:MAX_ERROR_MESSAGE], "completedAt": utc_now()},
    )


def reclaim_failed_jobs(
    conn: sa.Connection, job_ids: Sequence[str], *, batch_id: str, run_id: str | None
) -> list[str]:
    """failed -> processing for the rows of `batch_id` that an earlier run (not `run_id`)
    failed: a re-execution of the batch's run retries them."""
    return _move(
        conn,
        RECLAIM,
        [
            job_table.c.id.in_(list(job_ids)),
            job_table.c.batchId == batch_id,
            sa.or_(job_table.c.runId.is_(None), job_table.c.runId != (run_id or "")),
        ],
        {
            "errorMessage": None,
            "completedAt": None,
            "startedAt": utc_now(),
            "heartbeatAt": utc_now(),
            "attempts": job_table.c.attempts + 1,
        },
    )


def complete_job(
    conn: sa.Connection,
    job_id: str,
    *,
    batch_id: str,
    run_id: str | None,
    records: int,
    file_url: str,
    file_size_bytes: int,
    checksum: str,
    completed_at: dt.datetime,
    expires_at: dt.datetime | None = None,
    completeness: str | None = None,
) -> list[str]:
    """processing -> completed with its file, if the row is still held by `batch_id`."""
    return _move(
        conn,
        COMPLETE,
        [job_table.c.id == job_id, job_table.c.batchId == batch_id],
        {
            "recordsProcessed": records,
            "recordsTotal": records,
            "fileUrl": file_url,
            "fileSizeBytes": file_size_bytes,
            "checksum": checksum,
            "completeness": completeness,
            "completedAt": completed_at,
            "expiresAt": expires_at,
            "errorMessage": None,
            "runId": run_id,
        },
    )


def fail_jobs(
    conn: sa.Connection,
    job_ids: Sequence[str],
    message: str,
    *,
    batch_id: str | None = None,
    run_id: str | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """processing -> failed with the reason (held by `batch_id`, when given). The row keeps
    the run it already names, else takes `run_id`."""
    where: list[sa.ColumnElement[bool]] = [job_table.c.id.in_(list(job_ids))]
    if batch_id is not None:
        where.append(job_table.c.batchId == batch_id)
    return _move(
        conn,
        FAIL,
        where,
        {
            "errorMessage": message[:MAX_ERROR_MESSAGE],
            "completedAt": now or utc_now(),
            "runId": sa.func.coalesce(job_table.c.runId, run_id),
        },
    )


def requeue_unlaunched_claims(conn: sa.Connection, batch_ids: Sequence[str]) -> list[str]:
    """processing -> pending for the rows of claims that never became a run (no run id)."""
    return _move(
        conn,
        REQUEUE,
        [job_table.c.batchId.in_(list(batch_ids)), job_table.c.runId.is_(None)],
        {"batchId": None, "startedAt": None},
    )


def retry_jobs(conn: sa.Connection, job_ids: Sequence[str]) -> list[str]:
    """failed or expired -> pending, as a new request that keeps its attempt count."""
    return _move(
        conn,
        RETRY,
        [job_table.c.id.in_(list(job_ids))],
        {
            "batchId": None,
            "runId": None,
            "errorMessage": None,
            "startedAt": None,
            "completedAt": None,
            "expiresAt": None,
            "fileUrl": None,
            "fileSizeBytes": None,
            "checksum": None,
            "completeness": None,
            "recordsProcessed": 0,
            "recordsTotal": None,
        },
    )


def expire_jobs(
    conn: sa.Connection,
    *,
    job_ids: Sequence[str] | None = None,
    file_urls: Sequence[str] | None = None,
) -> list[str]:
    """completed -> expired, by id or by the file whose deletion ended them."""
    where = []
    if job_ids is not None:
        where.append(job_table.c.id.in_(list(job_ids)))
    if file_urls is not None:
        where.append(job_table.c.fileUrl.in_(list(file_urls)))
    if not where:
        raise ValueError("name the jobs to expire, by id or by file URL")
    return _move(conn, EXPIRE, where, {})
