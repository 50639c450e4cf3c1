"""The preview step of an import: read the job's file, stage it for the user, diff it
against their data, store the plan and put the preview on the job. No app row is written.

`stage_job` and `preview_staged` are the two halves the Dagster run executes as two steps
(with the data-quality check between them); `preview_import` is both in one call, for the
CLI. The plan is stored (`assets.imports.stored_plans`) with the fingerprint of the user's
data it was computed from (`assets.imports.user_state`): the apply refuses if that data
has changed since.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc

from assets.exports.notifications import IMPORT_PREVIEWED, queue_event
from assets.imports.detect import DEFAULT_LIMITS, DetectedImport, ImportLimits, detect_import
from assets.imports.diff import diff_import
from assets.imports.jobs import (
    ImportJobError,
    StalePreviewError,
    fail_job,
    get_import_job,
    update_job,
)
from assets.imports.parsers.base import ImportFormatError, collector_paused
from assets.imports.plan import ImportPlan
from assets.imports.staging import DEFAULT_MAX_BAD_SHARE, StagedImport, stage_import
from assets.imports.stored_plans import plan_to_bytes
from assets.imports.user_state import (
    UserState,
    current_fingerprint,
    ids_owned_by_others,
    load_user_state,
)
from resources.audit import UserErasedError, record_audit
from resources.database import AppDatabase
from resources.erasure_fence import erased_users, fenced_transaction
from resources.sources import RUN, read_source
from resources.storage import ObjectStorage
from resources.storage_layout import plan_key


class TooManyBadRowsError(ImportJobError):
    """More of the file's rows are invalid than the import accepts."""

    def __init__(self, staged: StagedImport):
        super().__init__(staged.bad_rows_message())
        self.staged = staged


@dataclass
class PreviewResult:
    job_id: str
    plan: ImportPlan
    detected: DetectedImport | None = None
    warnings: list[str] = field(default_factory=list)


def read_job_file(storage: ObjectStorage, url: str) -> bytes:
    """The bytes of an import job's file, which must be an object in goalport's storage (a
    job row never makes a run read a local path or another location: `resources.sources`)."""
    return read_source(url, storage, rules=RUN).data


def user_identities(database: AppDatabase, user_id: str) -> Callable[[], list[str]]:
    """The user's backup identity from the key vault, fetched only if a file needs it."""

    def fetch() -> list[str]:
        from resources.keys import KeyCustodyError, KeyVault  # ~30 ms; encrypted files only

        try:
            return [KeyVault(database_url=database.resolved_url).identity(user_id)]
        except KeyCustodyError as exc:
            raise ImportJobError(
                f"the file is encrypted to a key, and the user's backup key cannot open it: {exc}"
            ) from exc

    return fetch


def one_line(exc: BaseException) -> str:
    """An error as the one line a user reads: its own message, or what kind of failure it
    was (a RecursionError's or MemoryError's message says nothing)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (ImportFormatError, ImportJobError)) and text:
        return text
    if isinstance(exc, RecursionError):
        return "the file is nested too deeply to read"
    if isinstance(exc, MemoryError):
        return "the file is too large to read in memory"
    if isinstance(exc, UnicodeError):
        return f"the file's text cannot be decoded ({text[:200]})"
    return f"the import failed unexpectedly ({type(exc).__name__}: {text[:300]})"


@contextmanager
def job_failed_on_error(engine, job_id: str, **values: Any) -> Iterator[None]:
    """Any error in the block ends the job `failed` with one clear line (never `pending`,
    never a traceback on the row) and is raised again as an ImportFormatError or
    ImportJobError carrying that line."""
    try:
        yield
    except (ImportFormatError, ImportJobError) as exc:
        fail_job(engine, job_id, one_line(exc), **values)
        raise
    except Exception as exc:
        message = one_line(exc)
        fail_job(engine, job_id, message, **values)
        raise ImportJobError(message) from None


@collector_paused()
def stage_job(
    database: AppDatabase,
    job_id: str,
    data: bytes,
    *,
    passphrase: str | None = None,
    identities=None,
    limits: ImportLimits = DEFAULT_LIMITS,
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
) -> tuple[StagedImport, DetectedImport, UserState]:
    """Detect and stage a job's file; the job row records the file and, on error, why."""
    engine = database.engine
    job = get_import_job(engine, job_id)
    if job["status"] not in ("pending", "staged", "previewed", "stale", "failed"):
        raise ImportJobError(f"import job {job_id} is {job['status']}; it cannot be staged again")
    user_id = job["userId"]
    if identities is None:
        identities = user_identities(database, user_id)
    state = load_user_state(database, user_id)
    users = state.tables["User"]
    timezone = users["timezone"][0].as_py() if users.num_rows else None
    with job_failed_on_error(engine, job_id, fileChecksum=hashlib.sha256(data).hexdigest()):
        detected = detect_import(
            data,
            file_name=job["fileName"] or "upload",
            passphrase=passphrase,
            identities=identities,
            limits=limits,
            timezone=timezone,
        )
    restores_account = (
        detected.is_goalport
        and detected.source_user_id == user_id
        and detected.tables["User"].num_rows > 0
    )
    if not state.user_exists and not restores_account:
        # only an account's own export can bring the account back (after an erasure)
        message = f"unknown user {user_id}: import into an existing account"
        fail_job(engine, job_id, message)
        raise ImportJobError(message)
    known = state.refs.filter(pc.equal(state.refs["sourceApp"], detected.source_app))
    with job_failed_on_error(engine, job_id):
        staged = stage_import(
            detected,
            user_id=user_id,
            current=state.tables,
            known_refs=known,
            user_exists=state.user_exists,
            id_seed=job_id,
            mode=job["mode"],
            max_bad_share=max_bad_share,
        )
    update_job(
        engine,
        job_id,
        status="staged" if not staged.too_many_bad_rows else "failed",
        sourceApp=detected.source_app,
        format=detected.format + ("+age" if detected.encrypted else ""),
        fileChecksum=detected.sha256,
        recordsTotal=detected.total_rows,
        errorMessage=staged.bad_rows_message() if staged.too_many_bad_rows else None,
        previewData=json.dumps(
            {
                "invalidRows": [i.as_dict() for i in staged.issues[:200]],
                "invalidRowCount": len(staged.issues),
            }
        )
        if staged.too_many_bad_rows
        else None,
    )
    return staged, detected, state


@collector_paused()
def preview_staged(
    database: AppDatabase,
    storage: ObjectStorage,
    job_id: str,
    staged: StagedImport,
    detected: DetectedImport,
    state: UserState | None = None,
    staged_fingerprint: str | None = None,
) -> ImportPlan:
    """Diff staged rows against the user's data, store the plan and the preview.

    The rows were staged against the user's data as it was (`state`, or its fingerprint):
    if that data changed since, the job is stale and nothing is stored."""
    engine = database.engine
    job = get_import_job(engine, job_id)
    if staged.too_many_bad_rows:
        raise TooManyBadRowsError(staged)
    expected = state.fingerprint if state is not None else staged_fingerprint
    if state is not None and current_fingerprint(engine, staged.user_id) == state.fingerprint:
        fresh = state
    else:
        fresh = load_user_state(database, staged.user_id)
    if expected is not None and fresh.fingerprint != expected:
        message = "the user's data changed while the file was being staged; preview again"
        fail_job(engine, job_id, message, status="stale")
        raise StalePreviewError(message)
    known = fresh.refs.filter(pc.equal(fresh.refs["sourceApp"], staged.source_app))
    with engine.connect() as conn:
        other_ids, taken_emails = ids_owned_by_others(conn, staged)
    invalid_ids: dict[str, set[str]] = {}
    for issue in staged.issues:
        if issue.row_id:
            invalid_ids.setdefault(issue.table, set()).add(issue.row_id)
    modules = json.loads(job["modules"]) if job["modules"] else None
    with job_failed_on_error(engine, job_id):
        plan = diff_import(
            staged,
            fresh.tables,
            mode=job["mode"],
            conflict_policy=job["conflictPolicy"],
            modules=modules,
            other_owner_ids=other_ids,
            taken_emails=taken_emails,
            known_refs=known,
            invalid_ids=invalid_ids,
        )
    if not fresh.user_exists and plan.tables["User"].creates.num_rows == 0:
        reasons = "; ".join(r["reason"] for r in plan.refused if r["table"] == "User")
        message = f"cannot re-create the account {staged.user_id}: {reasons or 'no account row'}"
        fail_job(engine, job_id, message)
        raise ImportJobError(message)
    plan.fingerprint = fresh.fingerprint
    plan.file = {
        "name": detected.file_name,
        "format": detected.format,
        "sourceApp": detected.source_app,
        "encrypted": detected.encrypted,
        "sha256": detected.sha256,
        "bytes": detected.size,
        "exportedAt": detected.exported_at.isoformat() if detected.exported_at else None,
        "sourceUserId": detected.source_user_id,
        "report": [_report_entry(e) for e in _report_sample(detected.report)],
    }
    if not detected.is_goalport:
        plan.file["mapping"] = mapping_summary(detected)
    key = plan_key(staged.user_id, job_id)
    if erased_users(engine, [staged.user_id]):  # the fence, before a file is written
        raise UserErasedError(f"import {job_id}: the user was erased; no plan is stored")
    storage.write_bytes(key, plan_to_bytes(plan))
    preview = plan.preview()
    undo = lambda: storage.delete(key)  # noqa: E731
    with fenced_transaction(engine, staged.user_id, undo=undo) as conn:
        update_job(
            conn,
            job_id,
            status="previewed",
            previewData=json.dumps(preview, default=str),
            planFingerprint=plan.fingerprint,
            recordsTotal=plan.total_rows,
            conflictsDetected=plan.totals()["conflict"],
            errorMessage=None,
        )
        record_audit(
            conn,
            user_id=staged.user_id,
            operation="import",
            operation_type="preview",
            data_types=[n for n, c in plan.counts.items() if any(c.values())],
            record_count=plan.total_rows,
            actor=job["requestedBy"],
            details={"jobId": job_id, "sourceApp": staged.source_app, "totals": plan.totals()},
        )
        queue_event(
            conn,
            staged.user_id,
            IMPORT_PREVIEWED,
            {
                "jobId": job_id,
                "sourceApp": staged.source_app,
                "totals": plan.totals(),
                "unresolvedConflicts": plan.unresolved_conflicts,
            },
        )
    return plan


REPORT_LIMIT = 500


def mapping_summary(detected: DetectedImport) -> dict:
    """The mapping report in brief: rows per target table, items skipped, flattened and
    adjusted to fit the app's rules, rows that could not be mapped, the guessed encodings."""
    counts = {str(n): c for n, c in detected.row_counts().items() if c}
    report = detected.report
    return {
        "imported": dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
        "skipped": sum(e.count for e in report if e.action == "skipped"),
        "unmappable": sum(e.count for e in report if getattr(e, "bad", False)),
        "flattened": sum(e.count for e in report if e.action == "flattened"),
        "adjusted": sum(1 for e in report if getattr(e, "adjustments", None)),
        "decoded": [e.reason for e in report if e.action == "decoded"],
        "entries": len(report),
    }


def _report_sample(report: list) -> list:
    """At most REPORT_LIMIT entries for the preview: first every one that says something
    (decoded, skipped, flattened, adjusted), then plain imports, each in file order."""
    telling = [e for e in report if e.action != "imported"]
    plain = [e for e in report if e.action == "imported"]
    return (telling + plain)[:REPORT_LIMIT]


def _report_entry(entry) -> dict:
    described = {
        "source": entry.source_item,
        "externalKey": entry.external_key,
        "table": entry.target_table,
        "action": entry.action,
        "reason": entry.reason,
        "count": entry.count,
    }
    if getattr(entry, "adjustments", None):
        described["adjustments"] = list(entry.adjustments)
    return described


def preview_import(
    database: AppDatabase, storage: ObjectStorage, job_id: str, data: bytes, **stage_options: Any
) -> PreviewResult:
    """Stage and diff a job's file; store the plan and the preview. Writes no app rows.

    `stage_options` are `stage_job`'s (passphrase, identities, limits, max_bad_share)."""
    staged, detected, state = stage_job(database, job_id, data, **stage_options)
    plan = preview_staged(database, storage, job_id, staged, detected, state)
    return PreviewResult(job_id, plan, detected, plan.warnings)


def preview_job_file(database: AppDatabase, storage: ObjectStorage, job_id: str) -> PreviewResult:
    """Preview a pending job whose file is already in goalport's storage (an upload through
    the API): the work of `import_staging_job`, in one call, as the CLI does it."""
    job = get_import_job(database.engine, job_id)
    with job_failed_on_error(database.engine, job_id):
        data = read_job_file(storage, job["fileUrl"])
    return preview_import(database, storage, job_id, data)
