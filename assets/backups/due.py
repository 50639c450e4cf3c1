"""Who is due for a backup, and queueing their backups as batched `DataExportJob` rows.

Each `BackupConfig` is due when it is enabled and its `nextBackupAt` is empty (a new
configuration: backed up at the next hourly tick) or has passed (when that is:
`assets.backups.config.next_backup_after`). The hourly tick runs on the hour (UTC), so
users in zones with half-hour offsets are backed up at the tick after their local 02:00.

Queueing writes one row per due user in the export queue table (exportType "backup",
in flight under a backup batch id, so operators see them beside the other requests) and
groups the users into batches of one Dagster run each, never a run per user.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.backups.config import (
    BACKUP_EXPORT_TYPE,
    BackupConfig,
    BackupError,
    backup_job_format,
    load_configs,
)
from assets.exports.job_rows import jobs_by_id
from assets.exports.job_status import (
    IN_FLIGHT,
    ExportStatus,
    claim_jobs,
    fail_jobs,
    in_flight_request,
    insert_jobs,
)
from assets.exports.notifications import queue_failure_notification
from resources import schema
from resources.audit import new_id, utc_now
from resources.database import transaction
from resources.schema import backup_config as config_table
from resources.schema import data_export_job as job_table

# A queued backup whose run has not finished after this long was lost (the run was never
# launched, or died without the failure sensor noticing): it is failed and re-queued.
STALE_AFTER = dt.timedelta(hours=6)
BACKUP_BATCH_PREFIX = "bk_"
DEFAULT_BATCH_SIZE = 50
DEFAULT_MAX_PER_TICK = 5000


def is_due(config: BackupConfig, now: dt.datetime) -> bool:
    return config.enabled and (config.next_backup_at is None or config.next_backup_at <= now)


def users_due(now: dt.datetime, configs: Iterable[BackupConfig]) -> list[str]:
    """The users whose backups are due at `now`, most overdue first (new configs first)."""
    due = [c for c in configs if is_due(c, now)]
    due.sort(key=lambda c: (c.next_backup_at is not None, c.next_backup_at or now, c.user_id))
    return [c.user_id for c in due]


def load_due_configs(
    engine: sa.Engine, now: dt.datetime, limit: int | None = None
) -> list[BackupConfig]:
    """Enabled configurations due at `now` (the same rule as `users_due`, in SQL)."""
    query = (
        sa.select(config_table)
        .where(
            config_table.c.enabled.is_(True),
            sa.or_(config_table.c.nextBackupAt.is_(None), config_table.c.nextBackupAt <= now),
        )
        .order_by(config_table.c.nextBackupAt.asc().nulls_first(), config_table.c.userId)
    )
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [BackupConfig.from_row(r) for r in conn.execute(query).mappings()]


@dataclass(frozen=True)
class QueuedBackups:
    """Backup requests queued together for one run."""

    batch_id: str
    job_ids: tuple[str, ...]
    user_ids: tuple[str, ...]


@dataclass
class QueueOutcome:
    batches: list[QueuedBackups] = field(default_factory=list)
    skipped_in_flight: list[str] = field(default_factory=list)
    skipped_no_key: list[str] = field(default_factory=list)
    stale_failed: list[str] = field(default_factory=list)
    key_problem: str | None = None

    @property
    def user_count(self) -> int:
        return sum(len(b.user_ids) for b in self.batches)


def fail_stale_backups(engine: sa.Engine, now: dt.datetime) -> list[str]:
    """Fail backup requests still in flight after STALE_AFTER; returns their ids."""
    cutoff = now - STALE_AFTER
    with engine.begin() as conn:
        stale = (
            conn.execute(
                sa.select(job_table.c.id).where(
                    job_table.c.exportType == BACKUP_EXPORT_TYPE,
                    job_table.c.status == ExportStatus.PROCESSING.value,
                    job_table.c.startedAt < cutoff,
                )
            )
            .scalars()
            .all()
        )
        if stale:
            message = (
                f"the backup did not finish within {STALE_AFTER} "
                "(its run was lost); it is queued again while the user is due"
            )
            failed = fail_jobs(conn, stale, message, now=now)
            for job in jobs_by_id(conn, failed):
                queue_failure_notification(conn, job, message)
    return list(stale)


def _in_flight_users(conn: sa.Connection, user_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(user_ids), 5000):
        chunk = list(user_ids[start : start + 5000])
        found.update(
            conn.execute(
                sa.select(job_table.c.userId)
                .where(
                    job_table.c.exportType == BACKUP_EXPORT_TYPE,
                    job_table.c.status.in_([s.value for s in IN_FLIGHT]),
                    job_table.c.userId.in_(chunk),
                )
                .distinct()
            ).scalars()
        )
    return found


def queue_due_backups(
    engine: sa.Engine,
    now: dt.datetime,
    *,
    encryption_available: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_users: int = DEFAULT_MAX_PER_TICK,
    requested_by: str = "schedule",
) -> QueueOutcome:
    """Queue a backup request (`DataExportJob`, exportType "backup", processing under a
    backup batch id) for every user due at `now` who has none in flight, in batches.

    Pending backup rows (a failed backup re-queued with `goalport exports retry`) are
    claimed into the same batches. Without encryption keys, users whose backups encrypt are
    left for a later tick, named in the outcome.
    """
    outcome = QueueOutcome(stale_failed=fail_stale_backups(engine, now))
    configs = {c.user_id: c for c in load_due_configs(engine, now, limit=max_users)}
    due = users_due(now, configs.values())
    rows: list[dict] = []
    with engine.begin() as conn:
        in_flight = _in_flight_users(conn, due)
        pending = conn.execute(
            sa.select(job_table.c.id, job_table.c.userId)
            .where(
                job_table.c.exportType == BACKUP_EXPORT_TYPE,
                job_table.c.status == ExportStatus.PENDING.value,
                job_table.c.format.like(backup_job_format("%")),
            )
            .order_by(job_table.c.createdAt)
            .limit(max_users)
        ).all()
        pending_users = {user_id for _, user_id in pending}
        for user_id in due:
            if user_id in in_flight and user_id not in pending_users:
                outcome.skipped_in_flight.append(user_id)
                continue
            if user_id in pending_users:
                continue
            config = configs[user_id]
            if config.encrypt and not encryption_available:
                outcome.skipped_no_key.append(user_id)
                continue
            rows.append(_request_row(user_id, config.job_format, requested_by, now))
        claimed = [(job_id, user_id) for job_id, user_id in pending]
        if not encryption_available:
            encrypting = _encrypting_users(conn, [u for _, u in claimed])
            outcome.skipped_no_key.extend(u for _, u in claimed if u in encrypting)
            claimed = [(j, u) for j, u in claimed if u not in encrypting]
        work = [(j, u) for j, u in claimed] + [(r["id"], r["userId"]) for r in rows]
        batches = []
        for start in range(0, len(work), batch_size):
            part = work[start : start + batch_size]
            batches.append(
                QueuedBackups(
                    batch_id=new_id(BACKUP_BATCH_PREFIX),
                    job_ids=tuple(j for j, _ in part),
                    user_ids=tuple(u for _, u in part),
                )
            )
        batch_of = {j: b.batch_id for b in batches for j in b.job_ids}
        for row in rows:
            row["batchId"] = batch_of[row["id"]]
        insert_jobs(conn, rows, ExportStatus.PROCESSING)
        for batch in batches:
            claim_jobs(conn, batch.job_ids, batch_id=batch.batch_id, now=now)
    outcome.batches = batches
    return outcome


def _encrypting_users(conn: sa.Connection, user_ids: Sequence[str]) -> set[str]:
    if not user_ids:
        return set()
    plain = set(
        conn.execute(
            sa.select(config_table.c.userId).where(
                config_table.c.userId.in_(list(user_ids)), config_table.c.encrypt.is_(False)
            )
        ).scalars()
    )
    return set(user_ids) - plain


def _request_row(user_id: str, job_format: str, requested_by: str, now: dt.datetime) -> dict:
    return {
        "id": new_id("exp_"),
        "userId": user_id,
        "exportType": BACKUP_EXPORT_TYPE,
        "format": job_format,
        "filters": None,
        "batchId": None,
        "requestedBy": requested_by,
        "recordsProcessed": 0,
        "attempts": 1,
        "createdAt": now,
        "startedAt": now,
    }


def queue_backup_now(
    engine: sa.Engine, user_ids: Sequence[str], *, requested_by: str
) -> QueuedBackups:
    """Backup requests for `user_ids` now, whatever their schedule (CLI, Launchpad)."""
    now = utc_now()
    batch_id = new_id(BACKUP_BATCH_PREFIX)
    user_ids = list(dict.fromkeys(user_ids))
    configs = load_configs(engine, user_ids)
    rows = []
    with engine.begin() as conn:
        known = set(
            conn.execute(
                sa.select(schema.user.c.id).where(schema.user.c.id.in_(user_ids))
            ).scalars()
        )
        unknown = [u for u in user_ids if u not in known]
        if unknown:
            raise BackupError(f"unknown user id: {', '.join(unknown)}")
        for user_id in user_ids:
            config = configs.get(user_id) or BackupConfig(user_id=user_id)
            row = _request_row(user_id, config.job_format, requested_by, now)
            row["batchId"] = batch_id
            rows.append(row)
        insert_jobs(conn, rows, ExportStatus.PROCESSING)
    return QueuedBackups(batch_id, tuple(r["id"] for r in rows), tuple(user_ids))


def request_backup(
    bind: sa.Engine | sa.Connection, user_id: str, *, requested_by: str
) -> tuple[str, bool]:
    """ "Back up now" for one user: a pending backup row that `backup_request_sensor` (or
    the next hourly tick) claims and runs. A user with a backup already queued or running
    gets that one: returns (job id, whether it was queued just now). Given a connection,
    the row joins its transaction."""
    now = utc_now()
    with transaction(bind) as conn:
        saved = (
            conn.execute(sa.select(config_table).where(config_table.c.userId == user_id))
            .mappings()
            .first()
        )
        config = BackupConfig.from_row(saved) if saved else BackupConfig(user_id=user_id)
        if (
            conn.execute(sa.select(schema.user.c.id).where(schema.user.c.id == user_id)).first()
            is None
        ):
            raise BackupError(f"unknown user id: {user_id}")
        in_flight = in_flight_request(conn, user_id, BACKUP_EXPORT_TYPE)
        if in_flight is not None:
            return in_flight, False
        row = _request_row(user_id, config.job_format, requested_by, now)
        row.update(attempts=0, startedAt=None)
        insert_jobs(conn, [row], ExportStatus.PENDING)
    return row["id"], True


def claim_requested_backups(
    engine: sa.Engine,
    now: dt.datetime,
    *,
    encryption_available: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_users: int = DEFAULT_MAX_PER_TICK,
) -> QueueOutcome:
    """Claim the pending backup rows ("back up now", or a retried backup) into batches of
    one run each, without waiting for the hourly tick. Users whose backups encrypt are
    left pending while no master key is usable (named in the outcome)."""
    outcome = QueueOutcome()
    query = (
        sa.select(job_table.c.id, job_table.c.userId)
        .where(
            job_table.c.exportType == BACKUP_EXPORT_TYPE,
            job_table.c.status == ExportStatus.PENDING.value,
            job_table.c.format.like(backup_job_format("%")),
        )
        .order_by(job_table.c.createdAt, job_table.c.id)
        .limit(max_users)
    )
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        pending = [(job_id, user_id) for job_id, user_id in conn.execute(query).all()]
        if not encryption_available:
            encrypting = _encrypting_users(conn, [u for _, u in pending])
            outcome.skipped_no_key.extend(u for _, u in pending if u in encrypting)
            pending = [(j, u) for j, u in pending if u not in encrypting]
        for start in range(0, len(pending), batch_size):
            part = pending[start : start + batch_size]
            batch_id = new_id(BACKUP_BATCH_PREFIX)
            claimed = set(claim_jobs(conn, [j for j, _ in part], batch_id=batch_id, now=now))
            part = [(j, u) for j, u in part if j in claimed]
            if part:
                outcome.batches.append(
                    QueuedBackups(batch_id, tuple(j for j, _ in part), tuple(u for _, u in part))
                )
    return outcome


def queued_by(engine: sa.Engine, requested_by: str) -> QueuedBackups | None:
    """The backup requests `queue_backup_now` queued for `requested_by` (a run queues once:
    its retried step finds them here instead of queueing the users again)."""
    table = schema.data_export_job
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(table.c.id, table.c.userId, table.c.batchId)
            .where(
                table.c.requestedBy == requested_by,
                table.c.exportType == BACKUP_EXPORT_TYPE,
            )
            .order_by(table.c.id)
        ).all()
    if not rows:
        return None
    return QueuedBackups(rows[0].batchId, tuple(r.id for r in rows), tuple(r.userId for r in rows))
