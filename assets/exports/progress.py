"""A batch's export, kept in step with its `DataExportJob` rows.

`ExportBatchProgress` is the bookkeeping of one batch, whoever runs it (the Dagster export
run, `goalport exports process`): `recordsTotal` once extracted, each row `completed` with
its file, size, checksum and expiry as soon as its user is written (or `failed` with the
reason), one audit row per export, a notification in the outbox. Completing a row is
guarded by its status and batch id, so a row is exported once even if an operator re-queues
it while a run still holds it.

`process_claimed_batch` runs one claimed batch in this process with the same steps the
Dagster run takes, for installs without the daemon.

`ClaimHeartbeat` keeps a claim alive while its claimant works (a thread renewing the rows'
`heartbeatAt`); when the process dies, the beats stop and the next claimer requeues the
rows (`assets.exports.claims.requeue_stale_claims`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from assets.exports.batches import BatchExportResult, ExportedFile, write_batch
from assets.exports.claims import (
    ADOPTED_BATCH_PREFIX,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PER_CLAIM,
    ClaimedBatch,
    StaleClaims,
    claim_pending_exports,
    requeue_stale_claims,
)
from assets.exports.encryption import Encryption, load_encryptions
from assets.exports.job_rows import ExportJob, default_export_type, filters_json, jobs_by_id
from assets.exports.job_status import (
    ExportStatus,
    beat_claims,
    complete_job,
    fail_jobs,
    insert_jobs,
    job_table,
    reclaim_failed_jobs,
)
from assets.exports.notifications import (
    EXPORT_COMPLETED,
    queue_failure_notification,
    queue_notification,
)
from resources import settings
from resources.audit import UserErasedError, new_id, record_audit, utc_now
from resources.database import AppDatabase, ExtractedBatch, ExtractFilter
from resources.erasure_fence import delete_stored, erased_users, fenced_transaction
from resources.schema import owner_column
from resources.storage import ObjectStorage

log = logging.getLogger(__name__)


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
        self.expires_in = expires_in or settings.export_expiry()
        self.outcome = BatchOutcome(batch_id)
        self.notification_ids: list[str] = []
        self._encryptions: dict[str, Encryption] = {}
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
            jobs = jobs_by_id(conn, job_ids)
            batch_id = batch_id or next((j.batch_id for j in jobs if j.batch_id), None) or ""
            if reclaim_failed and any(j.status == ExportStatus.FAILED for j in jobs):
                if reclaim_failed_jobs(conn, job_ids, batch_id=batch_id, run_id=run_id):
                    jobs = jobs_by_id(conn, job_ids)
        held = [j for j in jobs if j.status == ExportStatus.PROCESSING and j.batch_id == batch_id]
        for job in jobs:
            if job not in held:
                log.warning(
                    "export job %s is %s (batch %s), not processing in batch %s: skipped",
                    job.id,
                    job.status,
                    job.batch_id,
                    batch_id,
                )
        progress = cls(engine, held, batch_id=batch_id, run_id=run_id, expires_in=expires_in)
        progress._load_encryptions()
        return progress

    def _load_encryptions(self) -> None:
        """The encrypted requests' encryptions (passphrases unwrapped, held only in this
        object); a request whose encryption cannot be used fails now, with the reason, and
        leaves the batch: it is never exported unencrypted."""
        self._encryptions, problems = load_encryptions(self.engine, self.job_ids)
        if not problems:
            return
        by_user = {j.user_id: problems[j.id] for j in self.jobs if j.id in problems}
        self._fail_users(by_user)
        self.jobs = [j for j in self.jobs if j.user_id not in by_user]
        for user_id in by_user:
            self._by_user.pop(user_id, None)

    def sealer(self, user_id: str) -> Callable[[bytes], bytes] | None:
        """How the user's file is encrypted, for an encrypted request (else None)."""
        for job in self._by_user.get(user_id, []):
            encryption = self._encryptions.get(job.id)
            if encryption is not None:
                return encryption.seal
        return None

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
        if run_id is not None:
            with engine.connect() as conn:
                recorded = conn.execute(
                    sa.select(job_table.c.id).where(job_table.c.batchId == batch_id)
                ).scalars()
                earlier = list(recorded)
            if earlier:  # a retried step of the same run: its rows exist already
                return cls.load(engine, earlier, batch_id=batch_id, run_id=run_id)
        rows: list[dict[str, Any]] = [
            {
                "id": new_id("exp_"),
                "userId": user_id,
                "exportType": default_export_type(filters),
                "format": fmt,
                "filters": filters_json(filters),
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
            insert_jobs(conn, rows, ExportStatus.PROCESSING)
            jobs = jobs_by_id(conn, [r["id"] for r in rows])
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
                        job_table.c.status == ExportStatus.PROCESSING.value,
                        job_table.c.batchId == self.batch_id,
                    )
                    .values(recordsTotal=sa.bindparam("total"), runId=self.run_id),
                    updates,
                )
        missing = {u: f"no user with id {u!r}" for u in self._by_user if u not in found}
        self._fail_users(missing)

    def user_done(self, user_id: str, files: Sequence[ExportedFile]) -> None:
        """Mark the user's rows completed with their files (one transaction per user); if
        the user was erased meanwhile, delete the files instead (the erasure took the rows)."""
        try:
            self._complete_user(user_id, files)
        except UserErasedError:
            log.warning("export jobs %s: the user was erased meanwhile", self._job_ids_of(user_id))

    def is_erased(self, user_id: str) -> bool:
        """The fence before publishing a file: the user was erased after extraction."""
        return bool(erased_users(self.engine, [user_id]))

    def _job_ids_of(self, user_id: str) -> list[str]:
        return [j.id for j in self._by_user.get(user_id, [])]

    def _complete_user(self, user_id: str, files: Sequence[ExportedFile]) -> None:
        now = utc_now()
        by_format = {f.format: f for f in files}
        undo = lambda: delete_stored(f.stored for f in files)  # noqa: E731
        with fenced_transaction(self.engine, user_id, undo=undo) as conn:
            for job in self._by_user.get(user_id, []):
                exported = by_format.get(job.format)
                if exported is None:
                    continue
                done = complete_job(
                    conn,
                    job.id,
                    batch_id=self.batch_id,
                    run_id=self.run_id,
                    records=exported.records,
                    file_url=exported.stored.url,
                    file_size_bytes=exported.stored.size,
                    checksum="sha256:" + exported.stored.sha256,
                    completed_at=now,
                    expires_at=now + self.expires_in,
                    completeness=_completeness_json(exported),
                )
                if not done:
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
                    queue_notification(
                        conn,
                        job,
                        EXPORT_COMPLETED,
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
        """The export raised: fail every row not yet completed with the message, each row's
        copy with the other users of the batch taken out (an error about one user's file
        names its key, and the row's message reaches its own user through the API and
        webhooks)."""
        self.outcome.error = message
        batch_users = {j.user_id for j in self.jobs}
        self._fail_users(
            {
                j.user_id: _without_others(message, j.user_id, batch_users)
                for j in self.jobs
                if j.id not in self.outcome.completed
            }
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
                if fail_jobs(conn, [job.id], message, batch_id=self.batch_id, run_id=self.run_id):
                    self.notification_ids.append(queue_failure_notification(conn, job, message))
                self.outcome.failed[job.id] = message


def _without_others(message: str, own_user: str, batch_users: Iterable[str]) -> str:
    for user_id in batch_users:
        if user_id != own_user and user_id in message:
            message = message.replace(user_id, "<another user>")
    return message


def _completeness_json(exported: ExportedFile) -> str | None:
    # The completeness proof arrives on ExportedFile with the data-quality work.
    completeness = getattr(exported, "completeness", None)
    return json.dumps(completeness, sort_keys=True, default=str) if completeness else None


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
        name: table.filter(pc.is_in(table[owner_column(name)], keep))
        for name, table in extracted.tables.items()
    }
    return ExtractedBatch(user_ids=tuple(wanted), tables=tables, filters=extracted.filters)


def records_per_user(extracted: ExtractedBatch) -> dict[str, int]:
    """How many rows each user of the batch has across every extracted table."""
    totals: dict[str, int] = {}
    for name, table in extracted.tables.items():
        if table.num_rows == 0:
            continue
        counts = pc.value_counts(table[owner_column(name)]).to_pylist()
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
    after_extraction: Callable[[], object] | None = None,
) -> BatchOutcome:
    """Export one claimed batch in this process and keep its rows in step.

    The same steps the Dagster run takes (`assets.exports.defs`), without a run: for
    `goalport exports process`. An error fails the batch's unfinished rows with its message
    and is returned in the outcome, so one bad batch does not stop the next.
    `after_extraction` is called between extraction and writing (a test pauses there).
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

    pause_after = settings.test_pause_after_users()

    def user_done(user_id: str, files: list[ExportedFile]) -> None:
        progress.user_done(user_id, files)
        if on_user_done is not None:
            on_user_done(user_id)
        if pause_after is not None and len(progress.outcome.completed) >= pause_after:
            pause_for_fault_injection()

    try:
        with ClaimHeartbeat(database.engine, batch.batch_id):
            extracted = database.extract(progress.user_ids, batch.extract_filter)
            progress.started(extracted)
            if after_extraction is not None:
                after_extraction()
            result = write_batch(
                extracted,
                storage,
                [batch.format],
                exported_at=utc_now(),
                on_user_done=user_done,
                workers=workers,
                key_suffix=progress.key_suffix,
                skip_user=progress.is_erased,
                seal=progress.sealer,
            )
            outcome = progress.finished(result)
    except Exception as exc:  # the rows must say why, whatever broke
        log.exception("export batch %s failed", batch.batch_id)
        outcome = progress.abort(f"{type(exc).__name__}: {exc}")
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
    """Claim and export pending requests until none is left; returns each batch's outcome.
    Claims whose worker died (no heartbeat for GOALPORT_STALE_AFTER) are requeued first."""
    outcomes: list[BatchOutcome] = []
    requeue_dead_claims(database, storage)
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


class ClaimHeartbeat:
    """Renews the heartbeat of the rows `batch_id` holds every `interval` seconds (a
    quarter of GOALPORT_STALE_AFTER), in a thread, for as long as the `with` block runs.
    A beat that fails (the database away for a moment) is logged and tried at the next one."""

    def __init__(self, engine: sa.Engine, batch_id: str, interval: float | None = None):
        self.engine = engine
        self.batch_id = batch_id
        self.interval = interval if interval is not None else settings.heartbeat_interval()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> int:
        with self.engine.begin() as conn:
            return beat_claims(conn, self.batch_id, now=utc_now())

    def __enter__(self) -> ClaimHeartbeat:
        self.beat()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{self.batch_id}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except sa.exc.SQLAlchemyError as exc:
                log.warning("heartbeat of batch %s failed: %s", self.batch_id, exc)


def pause_for_fault_injection() -> None:
    """The test hook of GOALPORT_TEST_PAUSE_AFTER_USERS: wait here, mid-batch, until the
    test kills the process (its heartbeat goes on until then, as a live worker's would)."""
    log.warning("paused by %s for a fault-injection test", settings.PAUSE_AFTER_USERS_ENV)
    while True:
        time.sleep(3600)


def requeue_dead_claims(database: AppDatabase, storage: ObjectStorage) -> StaleClaims:
    """What a local claimer does before claiming: requeue (or fail, at the last try) the
    rows whose claimant stopped beating GOALPORT_STALE_AFTER ago, deleting their files."""
    stale = requeue_stale_claims(
        database.engine, older_than=settings.stale_claim_after(), storage=storage
    )
    if stale.requeued or stale.failed:
        log.warning(
            "claims whose worker died: %d requeued, %d failed for good, %d files deleted",
            len(stale.requeued),
            len(stale.failed),
            len(stale.files_deleted),
        )
    return stale
