"""The export request queue: a `DataExportJob` row from request to download to expiry.

Anything that wants an export (the app, the CLI, a schedule, the Dagster UI) inserts a
`pending` row. A claimer (the Dagster sensor, or `goalport exports process` on installs
without the daemon) takes pending rows, groups them into batches (same format and filters,
one row per user per batch, a size cap) and marks them `processing` with the batch id. A
batch is exported through `assets.exports.batches` like every other export, and
`ExportBatchProgress` keeps the rows in step: `recordsTotal` once extracted, each row
`completed` with its file, size, checksum and expiry as soon as its user is written (or
`failed` with the reason), one audit row per export, a notification in the outbox.
`expire_exports` later deletes files past their expiry and marks their rows `expired`.

Claims are safe under concurrency. On PostgreSQL, `SELECT ... FOR UPDATE SKIP LOCKED` lets
concurrent claimers take disjoint rows without waiting for each other. On SQLite,
`BEGIN IMMEDIATE` takes the database's single write lock before reading, so claims queue.
Completing a row is guarded by its status and batch id, so a row is exported once even if
an operator re-queues it while a run still holds it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from assets.exports.batches import (
    EXPORT_FORMATS,
    BatchExportResult,
    ExportedFile,
    ExportRequestError,
    check_formats,
    make_filter,
    write_batch,
)
from resources import schema
from resources.audit import new_id, record_audit, utc_now
from resources.database import AppDatabase, ExtractedBatch, ExtractFilter
from resources.storage import ObjectStorage

log = logging.getLogger(__name__)

PENDING, PROCESSING, COMPLETED, FAILED, EXPIRED = (
    "pending",
    "processing",
    "completed",
    "failed",
    "expired",
)
EXPORT_TYPES = ("full", "selective", "template", "backup", "gdpr")
DEFAULT_EXPIRY = dt.timedelta(days=7)
DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_PER_CLAIM = 1000
# Batch ids say who claimed them: the sensor's claims are checked against Dagster's runs.
SENSOR_BATCH_PREFIX, LOCAL_BATCH_PREFIX, ADOPTED_BATCH_PREFIX = "sb_", "lb_", "rb_"

job_table = schema.data_export_job
outbox_table = schema.notification_outbox


def export_expiry() -> dt.timedelta:
    """How long a finished export stays downloadable: GOALPORT_EXPORT_EXPIRY_DAYS, else 7."""
    raw = os.environ.get("GOALPORT_EXPORT_EXPIRY_DAYS", "").strip()
    if not raw:
        return DEFAULT_EXPIRY
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if days <= 0:
        raise ExportRequestError(
            f"GOALPORT_EXPORT_EXPIRY_DAYS={raw!r}: give a positive number of days"
        )
    return dt.timedelta(days=days)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; every timestamp goalport stores is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


@dataclass(frozen=True)
class ExportJob:
    """One `DataExportJob` row."""

    id: str
    user_id: str
    export_type: str
    format: str
    filters: dict
    status: str
    batch_id: str | None
    run_id: str | None
    requested_by: str | None
    records_processed: int
    records_total: int | None
    file_url: str | None
    file_size_bytes: int | None
    checksum: str | None
    completeness: dict | None
    error_message: str | None
    attempts: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    expires_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: Mapping) -> ExportJob:
        return cls(
            id=row["id"],
            user_id=row["userId"],
            export_type=row["exportType"],
            format=row["format"],
            filters=json.loads(row["filters"]) if row["filters"] else {},
            status=row["status"],
            batch_id=row["batchId"],
            run_id=row["runId"],
            requested_by=row["requestedBy"],
            records_processed=row["recordsProcessed"],
            records_total=row["recordsTotal"],
            file_url=row["fileUrl"],
            file_size_bytes=row["fileSizeBytes"],
            checksum=row["checksum"],
            completeness=json.loads(row["completeness"]) if row["completeness"] else None,
            error_message=row["errorMessage"],
            attempts=row["attempts"],
            created_at=_aware(row["createdAt"]),
            started_at=_aware(row["startedAt"]),
            completed_at=_aware(row["completedAt"]),
            expires_at=_aware(row["expiresAt"]),
        )

    @property
    def extract_filter(self) -> ExtractFilter:
        return filter_from_dict(self.filters)

    def as_dict(self) -> dict:
        """The row as JSON-ready values, named as in the table."""
        values = {
            "id": self.id,
            "userId": self.user_id,
            "exportType": self.export_type,
            "format": self.format,
            "filters": self.filters,
            "status": self.status,
            "batchId": self.batch_id,
            "runId": self.run_id,
            "requestedBy": self.requested_by,
            "recordsProcessed": self.records_processed,
            "recordsTotal": self.records_total,
            "fileUrl": self.file_url,
            "fileSizeBytes": self.file_size_bytes,
            "checksum": self.checksum,
            "completeness": self.completeness,
            "errorMessage": self.error_message,
            "attempts": self.attempts,
            "createdAt": self.created_at,
            "startedAt": self.started_at,
            "completedAt": self.completed_at,
            "expiresAt": self.expires_at,
        }
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in values.items()}


def filters_json(filters: ExtractFilter) -> str:
    """The canonical text of a filter: equal filters give equal text (batches group on it)."""
    return json.dumps(filters.as_dict(), sort_keys=True)


def filter_from_dict(filters: Mapping | None) -> ExtractFilter:
    filters = filters or {}
    return make_filter(filters.get("modules"), filters.get("since"), filters.get("until"))


# ---------------------------------------------------------------- requesting and reading


def request_export(
    engine: sa.Engine,
    user_id: str,
    fmt: str,
    *,
    modules: Sequence[str] | None = None,
    since: str | None = None,
    until: str | None = None,
    export_type: str | None = None,
    requested_by: str | None = None,
) -> str:
    """Queue an export of one user's data in one format; returns the new job id.

    Raises ExportRequestError for an unknown user, format, export type or a bad date range.
    """
    formats = check_formats([fmt])
    if len(formats) != 1:
        raise ExportRequestError("one format per export request")
    filters = make_filter(modules, since, until)
    selective = filters.modules is not None or filters.since or filters.until
    export_type = export_type or ("selective" if selective else "full")
    if export_type not in EXPORT_TYPES:
        raise ExportRequestError(
            f"unknown export type {export_type!r}: choose from {', '.join(EXPORT_TYPES)}"
        )
    job_id = new_id("exp_")
    with engine.begin() as conn:
        found = conn.execute(sa.select(schema.user.c.id).where(schema.user.c.id == user_id)).first()
        if found is None:
            raise ExportRequestError(f"unknown user id: {user_id}")
        conn.execute(
            job_table.insert().values(
                id=job_id,
                userId=user_id,
                exportType=export_type,
                format=formats[0],
                filters=filters_json(filters),
                status=PENDING,
                requestedBy=requested_by,
                recordsProcessed=0,
                attempts=0,
                createdAt=utc_now(),
            )
        )
    return job_id


def get_export(engine: sa.Engine, job_id: str) -> ExportJob:
    with engine.connect() as conn:
        row = conn.execute(sa.select(job_table).where(job_table.c.id == job_id)).mappings().first()
    if row is None:
        raise ExportRequestError(f"no export job with id {job_id!r}")
    return ExportJob.from_row(row)


def list_exports(engine: sa.Engine, user_id: str, limit: int = 100) -> list[ExportJob]:
    """A user's export requests, newest first."""
    query = (
        sa.select(job_table)
        .where(job_table.c.userId == user_id)
        .order_by(job_table.c.createdAt.desc(), job_table.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [ExportJob.from_row(r) for r in conn.execute(query).mappings()]


def _jobs_by_id(conn: sa.Connection, job_ids: Iterable[str]) -> list[ExportJob]:
    rows = conn.execute(sa.select(job_table).where(job_table.c.id.in_(list(job_ids)))).mappings()
    return sorted((ExportJob.from_row(r) for r in rows), key=lambda j: (j.created_at, j.id))


# ---------------------------------------------------------------- claiming


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
        .where(job_table.c.status == PENDING, job_table.c.format.in_(list(EXPORT_FORMATS)))
        .order_by(job_table.c.createdAt, job_table.c.id)
        .limit(max_requests)
    )
    with _claim_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).mappings().all()
        batches = group_into_batches(rows, batch_size, prefix=prefix)
        for batch in batches:
            conn.execute(
                job_table.update()
                .where(job_table.c.id.in_(batch.job_ids), job_table.c.status == PENDING)
                .values(
                    status=PROCESSING,
                    batchId=batch.batch_id,
                    runId=None,
                    startedAt=now,
                    completedAt=None,
                    errorMessage=None,
                    recordsProcessed=0,
                    attempts=job_table.c.attempts + 1,
                )
            )
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


# ---------------------------------------------------------------- one batch, kept in step


@dataclass
class BatchOutcome:
    batch_id: str
    completed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_written: int = 0
    error: str | None = None


class ExportBatchProgress:
    """Keeps the `DataExportJob` rows of one batch in step with its export.

    `started` after extraction (records total, run id), `user_done` as each user's files
    are stored (row completed, audit row, outbox notification: one transaction per user),
    `finished` at the end (whoever has no file is failed with the reason), `abort` if the
    export raised.
    """

    def __init__(
        self,
        engine: sa.Engine,
        jobs: Sequence[ExportJob],
        *,
        batch_id: str,
        run_id: str | None = None,
        expires_in: dt.timedelta | None = None,
    ):
        self.engine = engine
        self.jobs = list(jobs)
        self.batch_id = batch_id
        self.run_id = run_id
        self.expires_in = expires_in or export_expiry()
        self.outcome = BatchOutcome(batch_id)
        self.notification_ids: list[str] = []
        self._by_user: dict[str, list[ExportJob]] = {}
        for job in self.jobs:
            self._by_user.setdefault(job.user_id, []).append(job)

    @classmethod
    def load(
        cls,
        engine: sa.Engine,
        job_ids: Sequence[str],
        *,
        batch_id: str | None = None,
        run_id: str | None = None,
        expires_in: dt.timedelta | None = None,
        reclaim_failed: bool = False,
    ) -> ExportBatchProgress:
        """The batch's rows that are still `processing` under this batch id.

        With `reclaim_failed`, rows of this batch that failed in an earlier run are taken
        back first: a re-execution of the batch's run (from the Dagster UI) is a retry of
        those rows. Rows failed by this same run (e.g. by its data-quality check) stay failed.
        """
        with engine.begin() as conn:
            jobs = _jobs_by_id(conn, job_ids)
            batch_id = batch_id or next((j.batch_id for j in jobs if j.batch_id), None) or ""
            if reclaim_failed and any(j.status == FAILED for j in jobs):
                conn.execute(
                    job_table.update()
                    .where(
                        job_table.c.id.in_(list(job_ids)),
                        job_table.c.status == FAILED,
                        job_table.c.batchId == batch_id,
                        sa.or_(job_table.c.runId.is_(None), job_table.c.runId != (run_id or "")),
                    )
                    .values(
                        status=PROCESSING,
                        errorMessage=None,
                        completedAt=None,
                        startedAt=utc_now(),
                        attempts=job_table.c.attempts + 1,
                    )
                )
                jobs = _jobs_by_id(conn, job_ids)
        held = [j for j in jobs if j.status == PROCESSING and j.batch_id == batch_id]
        for job in jobs:
            if job not in held:
                log.warning(
                    "export job %s is %s (batch %s), not processing in batch %s: skipped",
                    job.id,
                    job.status,
                    job.batch_id,
                    batch_id,
                )
        return cls(engine, held, batch_id=batch_id, run_id=run_id, expires_in=expires_in)

    @classmethod
    def adopt(
        cls,
        engine: sa.Engine,
        user_ids: Sequence[str],
        formats: Sequence[str],
        filters: ExtractFilter,
        *,
        run_id: str | None,
        requested_by: str,
        expires_in: dt.timedelta | None = None,
    ) -> ExportBatchProgress:
        """Rows for an export that was launched directly (e.g. from the Launchpad), so that
        it is tracked, audited and expired like a queued request."""
        now = utc_now()
        batch_id = ADOPTED_BATCH_PREFIX + (run_id or new_id())
        selective = filters.modules is not None or filters.since or filters.until
        rows = [
            {
                "id": new_id("exp_"),
                "userId": user_id,
                "exportType": "selective" if selective else "full",
                "format": fmt,
                "filters": filters_json(filters),
                "status": PROCESSING,
                "batchId": batch_id,
                "runId": run_id,
                "requestedBy": requested_by,
                "recordsProcessed": 0,
                "attempts": 1,
                "createdAt": now,
                "startedAt": now,
            }
            for user_id in dict.fromkeys(user_ids)
            for fmt in formats
        ]
        with engine.begin() as conn:
            if rows:
                conn.execute(job_table.insert(), rows)
            jobs = _jobs_by_id(conn, [r["id"] for r in rows])
        return cls(engine, jobs, batch_id=batch_id, run_id=run_id, expires_in=expires_in)

    @property
    def job_ids(self) -> list[str]:
        return [j.id for j in self.jobs]

    @property
    def user_ids(self) -> list[str]:
        return list(self._by_user)

    def key_suffix(self, user_id: str) -> str:
        """Each request's file is named after it; a user with several formats shares one."""
        jobs = self._by_user.get(user_id, [])
        return jobs[0].id if len(jobs) == 1 else self.batch_id

    def started(self, extracted: ExtractedBatch) -> None:
        """Record each row's total and the run; fail rows whose user does not exist."""
        totals = records_per_user(extracted)
        found = extracted.found_user_ids
        updates = [
            {"job_id": job.id, "total": totals.get(job.user_id, 0)}
            for job in self.jobs
            if job.user_id in found
        ]
        if updates:
            with self.engine.begin() as conn:
                conn.execute(
                    job_table.update()
                    .where(
                        job_table.c.id == sa.bindparam("job_id"),
                        job_table.c.status == PROCESSING,
                        job_table.c.batchId == self.batch_id,
                    )
                    .values(recordsTotal=sa.bindparam("total"), runId=self.run_id),
                    updates,
                )
        missing = {u: f"no user with id {u!r}" for u in self._by_user if u not in found}
        self._fail_users(missing)

    def user_done(self, user_id: str, files: Sequence[ExportedFile]) -> None:
        """Mark the user's rows completed with their files (one transaction per user)."""
        now = utc_now()
        by_format = {f.format: f for f in files}
        with self.engine.begin() as conn:
            for job in self._by_user.get(user_id, []):
                exported = by_format.get(job.format)
                if exported is None:
                    continue
                done = conn.execute(
                    job_table.update()
                    .where(
                        job_table.c.id == job.id,
                        job_table.c.status == PROCESSING,
                        job_table.c.batchId == self.batch_id,
                    )
                    .values(
                        status=COMPLETED,
                        recordsProcessed=exported.records,
                        recordsTotal=exported.records,
                        fileUrl=exported.stored.url,
                        fileSizeBytes=exported.stored.size,
                        checksum="sha256:" + exported.stored.sha256,
                        completeness=_completeness_json(exported),
                        completedAt=now,
                        expiresAt=now + self.expires_in,
                        errorMessage=None,
                        runId=self.run_id,
                    )
                )
                if done.rowcount != 1:
                    log.warning("export job %s was taken from batch %s", job.id, self.batch_id)
                    continue
                record_audit(
                    conn,
                    user_id=job.user_id,
                    operation="export",
                    operation_type=job.export_type,
                    data_types=[t for t, n in exported.row_counts.items() if n],
                    record_count=exported.records,
                    actor=job.requested_by,
                    details={
                        "jobId": job.id,
                        "batchId": self.batch_id,
                        "runId": self.run_id,
                        "format": job.format,
                        "filters": job.filters,
                        "fileUrl": exported.stored.url,
                        "fileSizeBytes": exported.stored.size,
                        "checksum": "sha256:" + exported.stored.sha256,
                    },
                )
                self.notification_ids.append(
                    _queue_notification(
                        conn,
                        job,
                        "export.completed",
                        {
                            "recordsTotal": exported.records,
                            "fileSizeBytes": exported.stored.size,
                            "checksum": "sha256:" + exported.stored.sha256,
                            "completedAt": now.isoformat(),
                            "expiresAt": (now + self.expires_in).isoformat(),
                        },
                    )
                )
                self.outcome.completed.append(job.id)
                self.outcome.bytes_written += exported.stored.size

    def finished(self, result: BatchExportResult) -> BatchOutcome:
        """Fail every row that got no file, saying why; returns what happened."""
        # `failed_users` (data-quality gates) appears on BatchExportResult with that work.
        failed_users: dict[str, str] = dict(getattr(result, "failed_users", None) or {})
        for user_id in result.missing_user_ids:
            failed_users.setdefault(user_id, f"no user with id {user_id!r}")
        self._fail_users(failed_users)
        leftover = {
            j.user_id: "the export ended without writing this user's file"
            for j in self.jobs
            if j.id not in self.outcome.completed and j.id not in self.outcome.failed
        }
        self._fail_users(leftover)
        return self.outcome

    def abort(self, message: str) -> BatchOutcome:
        """The export raised: fail every row not yet completed with the message."""
        self.outcome.error = message
        self._fail_users(
            {j.user_id: message for j in self.jobs if j.id not in self.outcome.completed}
        )
        return self.outcome

    def _fail_users(self, messages: Mapping[str, str]) -> None:
        jobs = [
            job
            for user_id in messages
            for job in self._by_user.get(user_id, [])
            if job.id not in self.outcome.completed and job.id not in self.outcome.failed
        ]
        if not jobs:
            return
        with self.engine.begin() as conn:
            for job in jobs:
                message = messages[job.user_id]
                if _mark_failed(conn, job, message, batch_id=self.batch_id, run_id=self.run_id):
                    self.notification_ids.append(
                        _queue_notification(conn, job, "export.failed", {"error": message})
                    )
                self.outcome.failed[job.id] = message


def _completeness_json(exported: ExportedFile) -> str | None:
    # The completeness proof arrives on ExportedFile with the data-quality work.
    completeness = getattr(exported, "completeness", None)
    return json.dumps(completeness, sort_keys=True, default=str) if completeness else None


def _mark_failed(
    conn: sa.Connection, job: ExportJob, message: str, *, batch_id: str, run_id: str | None
) -> bool:
    result = conn.execute(
        job_table.update()
        .where(
            job_table.c.id == job.id,
            job_table.c.status == PROCESSING,
            job_table.c.batchId == batch_id,
        )
        .values(
            status=FAILED,
            errorMessage=message[:4000],
            completedAt=utc_now(),
            runId=sa.func.coalesce(job_table.c.runId, run_id),
        )
    )
    return result.rowcount == 1


def track_export_run(
    engine: sa.Engine,
    *,
    job_ids: Sequence[str],
    batch_id: str | None,
    user_ids: Sequence[str],
    formats: Sequence[str],
    filters: ExtractFilter,
    run_id: str | None,
    requested_by: str = "dagster",
) -> ExportBatchProgress:
    """The rows a Dagster export run answers: the queued requests it was launched for, or,
    for a run launched by hand without them, new rows that record it."""
    if job_ids:
        return ExportBatchProgress.load(
            engine, job_ids, batch_id=batch_id, run_id=run_id, reclaim_failed=True
        )
    return ExportBatchProgress.adopt(
        engine, user_ids, formats, filters, run_id=run_id, requested_by=requested_by
    )


def restrict_batch(extracted: ExtractedBatch, user_ids: Iterable[str]) -> ExtractedBatch:
    """The part of an extracted batch that belongs to `user_ids`."""
    wanted = list(dict.fromkeys(user_ids))
    if set(wanted) == set(extracted.user_ids):
        return extracted
    keep = pa.array(wanted, type=pa.string())
    tables = {
        name: table.filter(pc.is_in(table["id" if name == "User" else "userId"], keep))
        for name, table in extracted.tables.items()
    }
    return ExtractedBatch(user_ids=tuple(wanted), tables=tables, filters=extracted.filters)


def records_per_user(extracted: ExtractedBatch) -> dict[str, int]:
    """How many rows each user of the batch has across every extracted table."""
    totals: dict[str, int] = {}
    for name, table in extracted.tables.items():
        if table.num_rows == 0:
            continue
        owner = "id" if name == "User" else "userId"
        counts = pc.value_counts(table[owner]).to_pylist()
        for entry in counts:
            totals[entry["values"]] = totals.get(entry["values"], 0) + entry["counts"]
    return totals


def process_claimed_batch(
    database: AppDatabase,
    storage: ObjectStorage,
    batch: ClaimedBatch,
    *,
    run_id: str | None = None,
    expires_in: dt.timedelta | None = None,
    workers: int | None = None,
    on_user_done: Callable[[str], None] | None = None,
) -> BatchOutcome:
    """Export one claimed batch in this process and keep its rows in step.

    The same steps the Dagster run takes (`assets.exports.defs.assets`), without a run: for
    `goalport exports process`. An error fails the batch's unfinished rows with its message
    and is returned in the outcome, so one bad batch does not stop the next.
    """
    progress = ExportBatchProgress.load(
        database.engine,
        batch.job_ids,
        batch_id=batch.batch_id,
        run_id=run_id,
        expires_in=expires_in,
    )
    if not progress.jobs:
        return progress.outcome

    def user_done(user_id: str, files: list[ExportedFile]) -> None:
        progress.user_done(user_id, files)
        if on_user_done is not None:
            on_user_done(user_id)

    try:
        extracted = database.extract(progress.user_ids, batch.extract_filter)
        progress.started(extracted)
        result = write_batch(
            extracted,
            storage,
            [batch.format],
            exported_at=utc_now(),
            on_user_done=user_done,
            workers=workers,
            key_suffix=progress.key_suffix,
        )
        outcome = progress.finished(result)
    except Exception as exc:  # the rows must say why, whatever broke
        log.exception("export batch %s failed", batch.batch_id)
        outcome = progress.abort(f"{type(exc).__name__}: {exc}")
    deliver_notifications(database.engine, ids=progress.notification_ids)
    return outcome


def process_pending_exports(
    database: AppDatabase,
    storage: ObjectStorage,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_requests: int = DEFAULT_MAX_PER_CLAIM,
    workers: int | None = None,
    expires_in: dt.timedelta | None = None,
    on_batch_done: Callable[[ClaimedBatch, BatchOutcome], None] | None = None,
) -> list[BatchOutcome]:
    """Claim and export pending requests until none is left; returns each batch's outcome."""
    outcomes = []
    while True:
        batches = claim_pending_exports(
            database.engine, max_requests=max_requests, batch_size=batch_size
        )
        if not batches:
            return outcomes
        for batch in batches:
            outcome = process_claimed_batch(
                database, storage, batch, workers=workers, expires_in=expires_in
            )
            outcomes.append(outcome)
            if on_batch_done is not None:
                on_batch_done(batch, outcome)


# ---------------------------------------------------------------- failure, retry, recovery


def fail_exports(
    engine: sa.Engine,
    message: str,
    *,
    job_ids: Sequence[str] = (),
    batch_ids: Sequence[str] = (),
    run_id: str | None = None,
) -> list[str]:
    """Fail the rows of a batch (or the named rows) that are still processing."""
    conditions = []
    if job_ids:
        conditions.append(job_table.c.id.in_(list(job_ids)))
    if batch_ids:
        conditions.append(job_table.c.batchId.in_(list(batch_ids)))
    if not conditions:
        return []
    failed = []
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(job_table).where(sa.or_(*conditions), job_table.c.status == PROCESSING)
        ).mappings()
        for job in [ExportJob.from_row(r) for r in rows]:
            if _mark_failed(conn, job, message, batch_id=job.batch_id or "", run_id=run_id):
                _queue_notification(conn, job, "export.failed", {"error": message})
                failed.append(job.id)
    return failed


def retry_exports(engine: sa.Engine, job_ids: Sequence[str]) -> list[ExportJob]:
    """Re-queue failed (or expired) requests as pending; they keep their attempt count."""
    with engine.begin() as conn:
        jobs = {j.id: j for j in _jobs_by_id(conn, job_ids)}
        unknown = [i for i in job_ids if i not in jobs]
        if unknown:
            raise ExportRequestError(f"no export job with id {', '.join(map(repr, unknown))}")
        stuck = [j for j in jobs.values() if j.status not in (FAILED, EXPIRED)]
        if stuck:
            raise ExportRequestError(
                "only failed or expired exports can be retried: "
                + ", ".join(f"{j.id} is {j.status}" for j in stuck)
            )
        conn.execute(
            job_table.update()
            .where(job_table.c.id.in_(list(jobs)), job_table.c.status.in_([FAILED, EXPIRED]))
            .values(
                status=PENDING,
                batchId=None,
                runId=None,
                errorMessage=None,
                startedAt=None,
                completedAt=None,
                expiresAt=None,
                fileUrl=None,
                fileSizeBytes=None,
                checksum=None,
                completeness=None,
                recordsProcessed=0,
                recordsTotal=None,
            )
        )
        return _jobs_by_id(conn, job_ids)


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
                    job_table.c.status == PROCESSING,
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
            conn.execute(
                job_table.update()
                .where(
                    job_table.c.batchId.in_(stranded),
                    job_table.c.status == PROCESSING,
                    job_table.c.runId.is_(None),
                )
                .values(status=PENDING, batchId=None, startedAt=None)
            )
    return stranded


# ---------------------------------------------------------------- expiry


@dataclass
class ExpiryOutcome:
    expired: list[str] = field(default_factory=list)
    files_deleted: int = 0
    files_already_gone: int = 0
    not_in_storage: dict[str, str] = field(default_factory=dict)  # job id -> file URL


def storage_key_of(storage: ObjectStorage, url: str | None) -> str | None:
    """The key of an object URL below this storage's root, or None if it lies elsewhere."""
    if not url:
        return None
    root = ("file://" + storage.root if storage.is_local else storage.root).rstrip("/") + "/"
    return url[len(root) :] if url.startswith(root) else None


def expire_exports(
    engine: sa.Engine, storage: ObjectStorage, *, now: dt.datetime | None = None
) -> ExpiryOutcome:
    """Delete the files of completed exports past their expiry and mark the rows expired.

    A file outside this storage (the storage was moved) is left alone and its row stays
    completed, so the operator sees it in the outcome instead of losing track of it.
    """
    now = now or utc_now()
    outcome = ExpiryOutcome()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(job_table).where(
                job_table.c.status == COMPLETED, job_table.c.expiresAt <= now
            )
        ).mappings()
        due = [ExportJob.from_row(r) for r in rows]
    for job in due:
        key = storage_key_of(storage, job.file_url)
        if key is None:
            outcome.not_in_storage[job.id] = job.file_url or ""
            continue
        if storage.delete(key):
            outcome.files_deleted += 1
        else:
            outcome.files_already_gone += 1
        with engine.begin() as conn:
            marked = conn.execute(
                job_table.update()
                .where(job_table.c.id == job.id, job_table.c.status == COMPLETED)
                .values(status=EXPIRED)
            )
            if marked.rowcount == 1:
                record_audit(
                    conn,
                    user_id=job.user_id,
                    operation="export_expired",
                    operation_type=job.export_type,
                    details={"jobId": job.id, "format": job.format, "fileUrl": job.file_url},
                )
                outcome.expired.append(job.id)
    return outcome


# ---------------------------------------------------------------- notifications


def _queue_notification(conn: sa.Connection, job: ExportJob, kind: str, extra: dict) -> str:
    notification_id = new_id("ntf_")
    payload = {
        "event": kind,
        "notificationId": notification_id,
        "jobId": job.id,
        "userId": job.user_id,
        "exportType": job.export_type,
        "format": job.format,
        **extra,
    }
    conn.execute(
        outbox_table.insert().values(
            id=notification_id,
            userId=job.user_id,
            kind=kind,
            payload=json.dumps(payload, sort_keys=True),
            status="pending",
            attempts=0,
            createdAt=utc_now(),
        )
    )
    return notification_id


def sign_webhook_body(body: bytes, secret: str) -> str:
    """The `X-Goalport-Signature` header value: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class DeliveryOutcome:
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_configured: bool = False


def deliver_notifications(
    engine: sa.Engine,
    *,
    ids: Sequence[str] | None = None,
    url: str | None = None,
    secret: str | None = None,
    timeout: float = 10.0,
    max_attempts: int = 5,
) -> DeliveryOutcome:
    """POST pending outbox notifications to the webhook (GOALPORT_WEBHOOK_URL), signed
    under GOALPORT_WEBHOOK_SECRET. Without a URL the outbox is left for the app to read;
    without a secret nothing is sent (an unsigned webhook cannot be trusted).

    `ids` limits delivery to those notifications; otherwise every pending one is tried.
    Receivers should de-duplicate on `X-Goalport-Delivery`: a delivery whose response was
    lost is sent again.
    """
    url = url if url is not None else os.environ.get("GOALPORT_WEBHOOK_URL", "").strip()
    secret = secret if secret is not None else os.environ.get("GOALPORT_WEBHOOK_SECRET", "")
    outcome = DeliveryOutcome()
    if not url:
        outcome.not_configured = True
        return outcome
    if ids is not None and not ids:
        return outcome
    query = sa.select(outbox_table).where(
        outbox_table.c.status == "pending", outbox_table.c.attempts < max_attempts
    )
    if ids is not None:
        query = query.where(outbox_table.c.id.in_(list(ids)))
    with engine.connect() as conn:
        pending = conn.execute(query.order_by(outbox_table.c.createdAt)).mappings().all()
    for row in pending:
        error = (
            _post_webhook(url, secret, row["id"], row["kind"], row["payload"].encode(), timeout)
            if secret
            else "GOALPORT_WEBHOOK_SECRET is not set: refusing to send an unsigned webhook"
        )
        attempts = row["attempts"] + 1
        values = {"attempts": attempts, "lastError": error}
        if error is None:
            values.update(status="sent", sentAt=utc_now())
            outcome.sent.append(row["id"])
        else:
            values["status"] = "failed" if attempts >= max_attempts else "pending"
            outcome.failed[row["id"]] = error
        with engine.begin() as conn:
            conn.execute(outbox_table.update().where(outbox_table.c.id == row["id"]).values(values))
    return outcome


def _post_webhook(
    url: str, secret: str, delivery_id: str, kind: str, body: bytes, timeout: float
) -> str | None:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "goalport-webhook/1",
            "X-Goalport-Event": kind,
            "X-Goalport-Delivery": delivery_id,
            "X-Goalport-Signature": sign_webhook_body(body, secret),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        return f"webhook {url} answered {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return f"webhook {url} unreachable: {getattr(exc, 'reason', exc)}"
    return None
