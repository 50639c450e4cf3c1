"""A batch run of backups: extract, render, encrypt, write, verify by a restore drill,
record, then apply retention.

The hourly schedule, `goalport backup run` and a Dagster run launched by hand all end in
`run_backup_batch` over rows queued by `assets.backups.due`, so a backup takes one path
whoever asks for it. One extraction per batch (per format and module selection), never
one per user.

**The restore drill.** Right after writing, the file is read back from the destination,
decrypted with the identity the key vault holds, every SHA-256 in the manifest checked and
the data parsed with the format's reader: its row counts must equal the manifest's and
the extraction's. Only then are `lastBackupAt`, `nextBackupAt`, `lastVerifiedAt` and
`lastVerifiedUrl` set, the `DataExportJob` row completed and an audit row written. A file
that fails the drill is deleted and its row failed with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.backups.archive import (
    BackupVerificationError,
    OpenedBackup,
    build_backup_archive,
    open_backup,
)
from assets.backups.config import (
    BACKUP_EXPORT_TYPE,
    BackupConfig,
    BackupError,
    load_configs,
    next_backup_after,
)
from assets.backups.places import backup_places, current_destination, forget_emptied_place
from assets.backups.retention import apply_retention
from assets.exports.batches import render_batch
from assets.exports.job_rows import ExportJob
from assets.exports.job_status import ExportStatus, complete_job, fail_jobs
from assets.exports.notifications import queue_failure_notification, queue_notification
from resources import age
from resources.audit import UserErasedError, record_audit, subject_ref, utc_now
from resources.database import AppDatabase, ExtractFilter
from resources.destinations.errors import DestinationCredentialError, DestinationError
from resources.erasure_fence import (
    erased_users,
    fenced_transaction,
    is_main_storage,
    record_file_locations,
)
from resources.keys import KeyCustodyError, KeyVault
from resources.schema import backup_config as config_table
from resources.schema import data_export_job as job_table
from resources.storage import ObjectStorage, StorageError, StoredObject
from resources.storage_layout import backup_folder, backup_key

log = logging.getLogger(__name__)


class BackupKeyUnavailableError(BackupError):
    """Encrypted backups cannot run: no usable master key (GOALPORT_MASTER_KEY)."""


@dataclass
class BackupResult:
    """One user's backup, written and verified."""

    job_id: str
    user_id: str
    url: str
    size: int
    sha256: str
    records: int
    row_counts: dict[str, int]
    encrypted: bool
    created_at: dt.datetime
    next_backup_at: dt.datetime | None
    retention_deleted: list[str] = field(default_factory=list)

    @classmethod
    def of_stored(
        cls,
        stored: StoredObject,
        *,
        job_id: str,
        user_id: str,
        row_counts: dict[str, int],
        encrypted: bool,
        created_at: dt.datetime,
        next_backup_at: dt.datetime | None = None,
    ) -> BackupResult:
        """The result for the file `stored`, holding `row_counts` rows per table."""
        return cls(
            job_id=job_id,
            user_id=user_id,
            url=stored.url,
            size=stored.size,
            sha256=stored.sha256,
            records=sum(row_counts.values()),
            row_counts=row_counts,
            encrypted=encrypted,
            created_at=created_at,
            next_backup_at=next_backup_at,
        )


@dataclass
class BackupBatchOutcome:
    batch_id: str
    completed: list[BackupResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # user id -> why

    @property
    def bytes_written(self) -> int:
        return sum(r.size for r in self.completed)


def _load_backup_jobs(engine: sa.Engine, job_ids: Sequence[str], batch_id: str) -> list[dict]:
    with engine.connect() as conn:
        rows = (
            conn.execute(sa.select(job_table).where(job_table.c.id.in_(list(job_ids))))
            .mappings()
            .all()
        )
    held = []
    for row in rows:
        if (
            row["status"] == ExportStatus.PROCESSING
            and row["batchId"] == batch_id
            and row["exportType"] == BACKUP_EXPORT_TYPE
        ):
            held.append(dict(row))
        else:
            log.warning(
                "backup request %s is %s in batch %s, not processing in %s: skipped",
                row["id"],
                row["status"],
                row["batchId"],
                batch_id,
            )
    return held


# The notification a backup whose destination refused its credentials sends: the user
# must reconnect it, and no backup is made until they do. Any other failure: `backup.failed`.
BACKUP_DESTINATION_FAILED = "backup.destination_failed"


def _fail_job(
    engine: sa.Engine, job: dict, message: str, run_id: str | None, *, notify: bool = False
) -> None:
    """The row failed with the reason, and a notification for its user: reconnect the
    destination (`notify`, its credentials were refused), else `backup.failed`."""
    with engine.begin() as conn:
        if fail_jobs(conn, [job["id"]], message, batch_id=job["batchId"], run_id=run_id):
            if notify:
                queue_notification(
                    conn, ExportJob.from_row(job), BACKUP_DESTINATION_FAILED, {"error": message}
                )
            else:
                queue_failure_notification(conn, ExportJob.from_row(job), message)


def check_encryption_keys(keys: KeyVault) -> str:
    """The master key's id, or BackupKeyUnavailableError saying how to set one."""
    try:
        return keys.current_master_key_id()
    except KeyCustodyError as exc:
        raise BackupKeyUnavailableError(
            f"encrypted backups refuse to run: {exc}. Backups with encryption turned off "
            "(`goalport backup config USER --no-encrypt`) run without it."
        ) from None


def run_backup_batch(
    database: AppDatabase,
    storage: ObjectStorage,
    keys: KeyVault,
    job_ids: Sequence[str],
    batch_id: str,
    *,
    run_id: str | None = None,
    workers: int | None = None,
    on_user_done: Callable[[str, BackupResult | None, str | None], None] | None = None,
) -> BackupBatchOutcome:
    """Back up, verify and record every user of a queued batch.

    Raises BackupKeyUnavailableError (after failing the batch's rows with the message)
    when any backup must be encrypted and no usable master key is configured. A problem
    with one user fails that user's row and the batch goes on.
    """
    engine = database.engine
    outcome = BackupBatchOutcome(batch_id)
    jobs = _load_backup_jobs(engine, job_ids, batch_id)
    if not jobs:
        return outcome
    configs = load_configs(engine, [j["userId"] for j in jobs])
    config_of = {
        j["userId"]: configs.get(j["userId"]) or BackupConfig(user_id=j["userId"]) for j in jobs
    }

    def fail(job: dict, message: str, *, notify: bool = False) -> None:
        _fail_job(engine, job, message, run_id, notify=notify)
        outcome.failed[job["userId"]] = message
        if on_user_done is not None:
            on_user_done(job["userId"], None, message)

    encrypting = [j["userId"] for j in jobs if config_of[j["userId"]].encrypt]
    recipients: dict[str, str] = {}
    if encrypting:
        try:
            check_encryption_keys(keys)
            recipients = keys.ensure_user_keys(encrypting)
        except (BackupKeyUnavailableError, KeyCustodyError) as exc:
            message = str(exc)
            for job in jobs:
                fail(job, message)
            raise BackupKeyUnavailableError(message) from None

    groups: dict[tuple[str, tuple[str, ...] | None], list[dict]] = {}
    for job in jobs:
        config = config_of[job["userId"]]
        groups.setdefault((config.format, config.include), []).append(job)
    for (fmt, include), group in groups.items():
        by_user = {j["userId"]: j for j in group}
        try:
            extracted = database.extract(list(by_user), ExtractFilter(modules=include))
        except Exception as exc:  # the rows must say why, whatever broke
            for job in group:
                fail(job, f"extraction failed: {type(exc).__name__}: {exc}")
            continue
        for user_id in by_user:
            if user_id not in extracted.found_user_ids:
                fail(by_user[user_id], f"no user with id {user_id!r}")
        per_user = extracted.per_user()
        created_at = utc_now()
        rendered = render_batch(
            per_user,
            [fmt],
            exported_at=created_at,
            filters=extracted.filters.as_dict(),
            workers=workers,
        )
        for user_id, files in rendered:
            job = by_user[user_id]
            counts = {name: t.num_rows for name, t in per_user[user_id].items()}
            try:
                result = _write_and_verify(
                    engine,
                    storage,
                    keys,
                    job,
                    config_of[user_id],
                    files[fmt],
                    counts,
                    recipients.get(user_id),
                    created_at,
                    run_id,
                )
            except (
                BackupError,
                StorageError,
                KeyCustodyError,
                age.AgeError,
                OSError,
                UserErasedError,
                DestinationError,
            ) as exc:
                fail(job, str(exc), notify=isinstance(exc, DestinationCredentialError))
                continue
            outcome.completed.append(result)
            if on_user_done is not None:
                on_user_done(user_id, result, None)
    return outcome


def _write_and_verify(
    engine: sa.Engine,
    storage: ObjectStorage,
    keys: KeyVault,
    job: dict,
    config: BackupConfig,
    export: bytes,
    counts: dict[str, int],
    goalport_recipient: str | None,
    created_at: dt.datetime,
    run_id: str | None,
) -> BackupResult:
    user_id = job["userId"]
    if erased_users(engine, [user_id]):  # the fence, before a file is written
        raise UserErasedError(f"backup request {job['id']}: the user was erased meanwhile")
    archive, _manifest = build_backup_archive(
        user_id=user_id,
        created_at=created_at,
        fmt=config.format,
        export=export,
        row_counts=counts,
        include=config.include,
    )
    if config.encrypt:
        assert goalport_recipient is not None, "run_backup_batch keys every encrypting user"
        payload = age.encrypt(archive, recipients=[goalport_recipient, *config.recipients])
    else:
        payload = archive
    destination = current_destination(engine, keys, config, storage)
    key = backup_key(user_id, created_at, config.encrypt)
    stored = destination.write_bytes(key, payload)
    try:
        verified = _restore_drill(destination, keys, key, config, user_id, counts)
    except DestinationError:
        # the destination stopped answering between the write and the read: the file is
        # left unverified (listed as such) if it cannot be deleted either
        try:
            destination.delete(key)
        except (DestinationError, StorageError, OSError):
            pass
        raise
    except (BackupError, StorageError, KeyCustodyError) as exc:
        destination.delete(key)
        raise BackupVerificationError(
            f"the restore drill failed, the unverified file was deleted: {exc}"
        ) from None
    verified_at = utc_now()
    next_at = next_backup_after(verified_at, config.frequency, config.timezone)
    records = sum(counts.values())
    with fenced_transaction(engine, user_id, undo=lambda: destination.delete(key)) as conn:
        if not is_main_storage(destination):  # a destination of the user's: erasure goes there
            record_file_locations(conn, destination, [(user_id, backup_folder(user_id))], "backup")
        done = complete_job(
            conn,
            job["id"],
            batch_id=job["batchId"],
            run_id=run_id,
            records=records,
            file_url=stored.url,
            file_size_bytes=stored.size,
            checksum="sha256:" + stored.sha256,
            completed_at=verified_at,
        )
        if not done:
            raise BackupError(f"backup request {job['id']} was taken from batch {job['batchId']}")
        if config.id is not None:
            conn.execute(
                config_table.update()
                .where(
                    config_table.c.userId == user_id,
                    sa.or_(
                        config_table.c.lastBackupAt.is_(None),
                        config_table.c.lastBackupAt < created_at,
                    ),
                )
                .values(
                    lastBackupAt=created_at,
                    nextBackupAt=next_at,
                    lastVerifiedAt=verified_at,
                    lastVerifiedUrl=stored.url,
                    updatedAt=verified_at,
                )
            )
        record_audit(
            conn,
            user_id=user_id,
            operation="backup",
            operation_type=job["requestedBy"] or "backup",
            data_types=[t for t, n in counts.items() if n],
            record_count=records,
            actor=job["requestedBy"],
            details={
                "jobId": job["id"],
                "batchId": job["batchId"],
                "runId": run_id,
                "format": config.format,
                "fileUrl": stored.url,
                "fileSizeBytes": stored.size,
                "checksum": "sha256:" + stored.sha256,
                "encrypted": config.encrypt,
                "ownRecipients": len(config.recipients),
                "verifiedAt": verified_at.isoformat(),
                "verifiedRecords": verified.records,
            },
        )
    result = BackupResult.of_stored(
        stored,
        job_id=job["id"],
        user_id=user_id,
        row_counts=counts,
        encrypted=config.encrypt,
        created_at=created_at,
        next_backup_at=next_at if config.id is not None else None,
    )
    try:
        places = backup_places(engine, keys, storage, config, current=destination)
        result.retention_deleted = apply_retention(
            engine,
            destination,
            user_id,
            config.retention,
            newest_verified=key,
            timezone=config.timezone,
            earlier=places.earlier,
        )
        for place in places.earlier:
            forget_emptied_place(engine, place, user_id, [destination.root])
    except (StorageError, OSError, DestinationError) as exc:
        # the error names the user's storage key: the log line (Dagster's event log in
        # production) gets the pseudonym and the error's kind only
        log.warning(
            "retention of %s's backups failed (nothing lost): %s",
            subject_ref(user_id),
            type(exc).__name__,
        )
    return result


def _restore_drill(
    destination: ObjectStorage,
    keys: KeyVault,
    key: str,
    config: BackupConfig,
    user_id: str,
    counts: Mapping[str, int],
) -> OpenedBackup:
    """Read the file back from where it was stored and open it as a restore would."""
    data = destination.read_bytes(key)
    identities = [keys.identity(user_id)] if config.encrypt else []
    opened = open_backup(data, file_name=destination.object_url(key), identities=identities)
    if opened.user_id != user_id:
        raise BackupVerificationError(f"the backup read back is of {opened.user_id!r}")
    read_counts = {k: v for k, v in opened.row_counts.items() if v}
    if read_counts != {k: v for k, v in counts.items() if v}:
        raise BackupVerificationError(
            f"the backup read back holds {read_counts}, the database gave {dict(counts)}"
        )
    return opened
