"""GDPR bundles a user asks for (`POST /api/v1/gdpr/export`), delivered as export jobs.

A request is a `DataExportJob` row like any export (exportType "gdpr", format
"gdpr-bundle"), so its status, progress, download link, expiry, audit row and "export
ready" notification are the export queue's. The generic export claimer takes only the
formats of `assets.formats.registry`, so these rows wait for `gdpr_request_sensor`
(`assets.gdpr.defs`), or for `process_pending_gdpr_exports` (`goalport exports process`):
both claim them here into batches (`gd_` batch ids) and write each user's bundle with the
bulk path's `GdprBundleExporter` (`render_gdpr_bundle`, stored at
`resources.storage_layout.gdpr_bundle_key`), completing each row through
`assets.exports.progress.ExportBatchProgress`. A claim keeps a heartbeat while it works; a
claim whose heartbeat stopped is requeued (or failed, at the last try) by the next claimer.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from assets.exports.batches import BatchExportResult, ExportedFile
from assets.exports.claims import StaleClaims, requeue_stale_claims
from assets.exports.job_status import (
    ExportStatus,
    claim_jobs,
    in_flight_request,
    insert_jobs,
    job_table,
)
from assets.exports.progress import BatchOutcome, ClaimHeartbeat, ExportBatchProgress
from assets.gdpr.bulk import GdprBundleExporter, GdprBundleFile
from resources import schema, settings
from resources.audit import new_id, utc_now
from resources.database import AppDatabase, transaction
from resources.storage import ObjectStorage

log = logging.getLogger(__name__)

GDPR_EXPORT_TYPE = "gdpr"
GDPR_JOB_FORMAT = "gdpr-bundle"
GDPR_BATCH_PREFIX = "gd_"
DEFAULT_BATCH_SIZE = 20
DEFAULT_MAX_PER_CLAIM = 200


class GdprRequestError(ValueError):
    """The request cannot be queued (an unknown user); the message says why."""


@dataclass(frozen=True)
class ClaimedGdprBatch:
    batch_id: str
    job_ids: tuple[str, ...]
    user_ids: tuple[str, ...]


def request_gdpr_export(
    bind: sa.Engine | sa.Connection, user_id: str, *, requested_by: str | None = None
) -> tuple[str, bool]:
    """Queue a GDPR bundle of `user_id`: returns (job id, whether it was queued just now).
    A user whose bundle is already queued or being made gets that job instead of a second.
    Given a connection, the row joins its transaction."""
    with transaction(bind) as conn:
        found = conn.execute(sa.select(schema.user.c.id).where(schema.user.c.id == user_id))
        if found.first() is None:
            raise GdprRequestError(f"unknown user id: {user_id}")
        in_flight = in_flight_request(conn, user_id, GDPR_EXPORT_TYPE)
        if in_flight is not None:
            return in_flight, False
        job_id = new_id("exp_")
        row = {
            "id": job_id,
            "userId": user_id,
            "exportType": GDPR_EXPORT_TYPE,
            "format": GDPR_JOB_FORMAT,
            "filters": None,
            "requestedBy": requested_by,
            "recordsProcessed": 0,
            "attempts": 0,
            "createdAt": utc_now(),
        }
        insert_jobs(conn, [row], ExportStatus.PENDING)
    return job_id, True


def claim_gdpr_requests(
    engine: sa.Engine,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_requests: int = DEFAULT_MAX_PER_CLAIM,
    now: dt.datetime | None = None,
) -> list[ClaimedGdprBatch]:
    """Claim pending GDPR requests, oldest first, into batches (each user once per batch);
    every claimed row is `processing` under its batch id before this returns."""
    now = now or utc_now()
    query = (
        sa.select(job_table.c.id, job_table.c.userId)
        .where(
            job_table.c.status == ExportStatus.PENDING.value,
            job_table.c.exportType == GDPR_EXPORT_TYPE,
            job_table.c.format == GDPR_JOB_FORMAT,
        )
        .order_by(job_table.c.createdAt, job_table.c.id)
        .limit(max_requests)
    )
    batches: list[ClaimedGdprBatch] = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        open_batches: list[list[tuple[str, str]]] = []
        for job_id, user_id in conn.execute(query).all():
            target = next(
                (
                    b
                    for b in open_batches
                    if len(b) < batch_size and user_id not in {u for _, u in b}
                ),
                None,
            )
            if target is None:
                target = []
                open_batches.append(target)
            target.append((job_id, user_id))
        for rows in open_batches:
            batch_id = new_id(GDPR_BATCH_PREFIX)
            claimed = set(claim_jobs(conn, [j for j, _ in rows], batch_id=batch_id, now=now))
            rows = [(j, u) for j, u in rows if j in claimed]
            if rows:
                batches.append(
                    ClaimedGdprBatch(batch_id, tuple(j for j, _ in rows), tuple(u for _, u in rows))
                )
    return batches


def requeue_stale_gdpr_claims(engine: sa.Engine, *, is_waiting=None) -> StaleClaims:
    """Requeue (or fail, at the last try) GDPR claims whose heartbeat stopped
    GOALPORT_STALE_AFTER ago. A dead claim's bundle, if it wrote one, stays in the user's
    `gdpr/` folder (erased with the user) and expires with its `FileLocation`."""
    return requeue_stale_claims(
        engine,
        older_than=settings.stale_claim_after(),
        is_waiting=is_waiting,
        prefixes=(GDPR_BATCH_PREFIX,),
    )


def _as_exported(bundle: GdprBundleFile) -> ExportedFile:
    return ExportedFile(
        bundle.user_id,
        GDPR_JOB_FORMAT,
        bundle.stored,
        bundle.row_counts,
        completeness={"passed": bundle.complete, "check": "live row counts (manifest.json)"},
    )


def process_gdpr_batch(
    database: AppDatabase,
    storage: ObjectStorage,
    job_ids: tuple[str, ...] | list[str],
    batch_id: str,
    *,
    run_id: str | None = None,
    texts: Mapping | None = None,
    workers: int | None = None,
) -> BatchOutcome:
    """Write the bundle of every user of a claimed batch and complete their rows (file,
    size, checksum, expiry, audit row, notification) as each is written; a row whose bundle
    could not be made fails with the reason. An error fails the unfinished rows with its
    message and is returned in the outcome."""
    progress = ExportBatchProgress.load(
        database.engine, list(job_ids), batch_id=batch_id, run_id=run_id, reclaim_failed=True
    )
    if not progress.jobs:
        return progress.outcome
    try:
        with (
            ClaimHeartbeat(database.engine, batch_id),
            GdprBundleExporter(
                database,
                storage,
                texts=texts,
                workers=workers,
                actor="gdpr-request",
                # the row's own audit entry is written with its completion
                record_audit=False,
            ) as exporter,
        ):
            result = exporter.export(
                progress.user_ids,
                on_user_done=lambda b: progress.user_done(b.user_id, [_as_exported(b)]),
            )
        outcome = progress.finished(
            BatchExportResult(missing_user_ids=result.missing_user_ids, failed_users=result.failed)
        )
    except Exception as exc:  # the rows must say why, whatever broke
        log.exception("GDPR request batch %s failed", batch_id)
        outcome = progress.abort(f"{type(exc).__name__}: {exc}")
    return outcome


def process_pending_gdpr_exports(
    database: AppDatabase,
    storage: ObjectStorage,
    *,
    texts: Mapping | None = None,
    workers: int | None = None,
) -> list[BatchOutcome]:
    """Claim and write pending GDPR requests until none is left, in this process (for
    `goalport exports process`, without the daemon); dead claims are requeued first."""
    requeue_stale_gdpr_claims(database.engine)
    outcomes = []
    while batches := claim_gdpr_requests(database.engine):
        for batch in batches:
            outcomes.append(
                process_gdpr_batch(
                    database, storage, batch.job_ids, batch.batch_id, texts=texts, workers=workers
                )
            )
    return outcomes
