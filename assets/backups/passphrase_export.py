"""Passphrase exports: on-demand, age scrypt-encrypted copies of a user's backup archive for
the user to download, stored and expiring like any export.

The passphrase is an argument only: never stored, never logged, never in an audit row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from assets.backups.archive import (
    BackupVerificationError,
    build_backup_archive,
    open_backup,
)
from assets.backups.config import (
    BACKUP_EXPORT_TYPE,
    BackupError,
    backup_job_format,
    check_backup_format,
)
from assets.backups.runner import BackupResult
from assets.exports.batches import render_batch
from assets.exports.job_status import ExportStatus, insert_jobs
from resources import age
from resources.audit import new_id, record_audit, utc_now
from resources.database import AppDatabase, ExtractFilter
from resources.erasure_fence import (
    erased_users,
    fenced_transaction,
    is_main_storage,
    record_file_locations,
)
from resources.settings import export_expiry
from resources.storage import ObjectStorage
from resources.storage_layout import passphrase_export_key


def write_passphrase_export(
    database: AppDatabase,
    storage: ObjectStorage,
    user_id: str,
    passphrase: str,
    *,
    fmt: str = "json",
    include: Sequence[str] | None = None,
    requested_by: str = "cli",
    work_factor: int = age.DEFAULT_WORK_FACTOR,
) -> BackupResult:
    """An on-demand backup encrypted with the user's passphrase (age scrypt), stored under
    exports/<user>/ and expiring like any export; verified with the same passphrase before
    it is recorded. The passphrase is used here and forgotten: never stored or logged."""
    fmt = check_backup_format(fmt)
    if not passphrase:
        raise BackupError("the passphrase is empty")
    include = tuple(include) if include else None
    extracted = database.extract([user_id], ExtractFilter(modules=include))
    if user_id not in extracted.found_user_ids:
        raise BackupError(f"unknown user id: {user_id}")
    tables = extracted.per_user()[user_id]
    counts = {name: t.num_rows for name, t in tables.items()}
    created_at = utc_now()
    ((_uid, files),) = render_batch(
        {user_id: tables},
        [fmt],
        exported_at=created_at,
        filters=extracted.filters.as_dict(),
        workers=1,
    )
    archive, _ = build_backup_archive(
        user_id=user_id,
        created_at=created_at,
        fmt=fmt,
        export=files[fmt],
        row_counts=counts,
        include=include,
    )
    payload = age.encrypt(archive, passphrase=passphrase, work_factor=work_factor)
    job_id = new_id("exp_")
    key = passphrase_export_key(user_id, created_at, job_id)
    if erased_users(database.engine, [user_id]):  # the fence, before a file is written
        raise BackupError(f"user {user_id} was erased meanwhile: nothing is written")
    stored = storage.write_bytes(key, payload)
    try:
        opened = open_backup(
            storage.read_bytes(key),
            file_name=stored.url,
            passphrase=passphrase,
            max_work_factor=max(work_factor, age.DEFAULT_MAX_WORK_FACTOR),
        )
        if opened.records != sum(counts.values()):
            raise BackupVerificationError("the export read back does not hold every row")
    except BackupError:
        storage.delete(key)
        raise
    now = utc_now()
    records = sum(counts.values())
    undo = lambda: storage.delete(key)  # noqa: E731
    with fenced_transaction(database.engine, user_id, undo=undo) as conn:
        if not is_main_storage(storage):  # `--out`: erasure must find it there
            record_file_locations(conn, storage, [(user_id, key)], "export")
        row = {
            "id": job_id,
            "userId": user_id,
            "exportType": BACKUP_EXPORT_TYPE,
            "format": backup_job_format(fmt),
            "filters": json.dumps(extracted.filters.as_dict()),
            "requestedBy": requested_by,
            "recordsProcessed": records,
            "recordsTotal": records,
            "fileUrl": stored.url,
            "fileSizeBytes": stored.size,
            "checksum": "sha256:" + stored.sha256,
            "attempts": 1,
            "createdAt": created_at,
            "startedAt": created_at,
            "completedAt": now,
            "expiresAt": now + export_expiry(),
        }
        insert_jobs(conn, [row], ExportStatus.COMPLETED)
        record_audit(
            conn,
            user_id=user_id,
            operation="backup",
            operation_type="passphrase_export",
            data_types=[t for t, n in counts.items() if n],
            record_count=records,
            actor=requested_by,
            details={
                "jobId": job_id,
                "format": fmt,
                "fileUrl": stored.url,
                "fileSizeBytes": stored.size,
                "checksum": "sha256:" + stored.sha256,
                "encrypted": "passphrase",
            },
        )
    return BackupResult.of_stored(
        stored,
        job_id=job_id,
        user_id=user_id,
        row_counts=counts,
        encrypted=True,
        created_at=created_at,
    )
