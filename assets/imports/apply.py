"""The apply step of an import: the previewed plan written in ONE transaction.

`apply_import` reads the plan the preview stored (`assets.imports.stored_plans`) and writes
it with bulk statements (`assets.imports.bulk_sql`: on PostgreSQL, COPY into the table or
into a temporary table followed by one UPDATE ... FROM), together with the change journal
(`assets.imports.change_journal`: the before and after of every touched row, what
`assets.imports.undo` puts back), the ExternalRef upserts, the job row and an audit entry.
It refuses, changing nothing, when the user's rows no longer hash to the previewed
fingerprint, or when conflicts are left unresolved.

On PostgreSQL the transaction runs at REPEATABLE READ: the fingerprint is checked in the
same snapshot as the writes, and a row someone else changes meanwhile makes the
transaction fail rather than be overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from assets.exports.notifications import IMPORT_APPLIED, queue_event
from assets.imports.bulk_sql import BulkWriter, StatementHook, begin_repeatable_read
from assets.imports.change_journal import ChangeJournal
from assets.imports.jobs import (
    ImportJobError,
    StalePreviewError,
    fail_job,
    get_import_job,
    lock_job,
    update_job,
)
from assets.imports.parsers.base import collector_paused
from assets.imports.plan import ImportPlan
from assets.imports.row_json import rows_json_array
from assets.imports.staging import TABLE_NAMES, app_columns
from assets.imports.stored_plans import plan_from_bytes
from assets.imports.user_state import fingerprint_user_data
from resources import schema
from resources.audit import record_audit, utc_now
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from resources.storage_layout import plan_key

APPLY_STATUSES = ("previewed", "confirmed")
REF_SCHEMA = schema.arrow_schema(schema.external_ref)
TIME = REF_SCHEMA.field("createdAt").type


@dataclass
class ApplyResult:
    job_id: str
    counts: dict[str, dict[str, int]]
    rows_written: int
    changes_recorded: int
    seconds: float
    statements: int


def apply_import(
    database: AppDatabase,
    storage: ObjectStorage,
    job_id: str,
    *,
    actor: str | None = None,
    on_statement: StatementHook | None = None,
) -> ApplyResult:
    """Apply the job's previewed plan in one transaction (see the module docstring)."""
    started = time.perf_counter()
    engine = database.engine
    job = get_import_job(engine, job_id)
    if job["status"] not in APPLY_STATUSES:
        raise ImportJobError(_status_message(job))
    key = plan_key(job["userId"], job_id)
    if not storage.exists(key):
        raise ImportJobError(f"import job {job_id} has no stored plan; preview it again")
    plan = plan_from_bytes(storage.read_bytes(key))
    if plan.unresolved_conflicts:
        raise ImportJobError(
            f"{plan.unresolved_conflicts} rows are in conflict and the policy is 'fail': "
            "preview again with --on-conflict keep-existing, take-incoming or newest-wins"
        )
    try:
        with begin_repeatable_read(engine) as conn, conn.begin():
            locked = lock_job(conn, job_id)
            if locked["status"] not in APPLY_STATUSES:
                raise ImportJobError(_status_message(locked))
            if fingerprint_user_data(conn, plan.user_id) != locked["planFingerprint"]:
                raise StalePreviewError(
                    f"user {plan.user_id}'s data changed after the preview of import {job_id}: "
                    "nothing was applied; preview the file again"
                )
            writer = BulkWriter(conn, on_statement)
            changes = _write_plan(writer, plan, job_id)
            totals = plan.totals()
            update_job(
                conn,
                job_id,
                status="applied",
                recordsImported=plan.row_writes,
                completedAt=utc_now(),
                errorMessage=None,
            )
            record_audit(
                conn,
                user_id=plan.user_id,
                operation="import",
                operation_type=plan.mode,
                data_types=[n for n, p in plan.tables.items() if p.writes],
                record_count=plan.row_writes,
                actor=actor or job["requestedBy"],
                details={
                    "jobId": job_id,
                    "sourceApp": plan.source_app,
                    "conflictPolicy": plan.conflict_policy,
                    "totals": totals,
                },
            )
            queue_event(
                conn,
                plan.user_id,
                IMPORT_APPLIED,
                {
                    "jobId": job_id,
                    "sourceApp": plan.source_app,
                    "recordsImported": plan.row_writes,
                    "totals": totals,
                },
            )
    except StalePreviewError as exc:
        fail_job(engine, job_id, str(exc), status="stale")
        raise
    except sa.exc.DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in ("40001", "40P01"):
            message = (
                f"user {plan.user_id}'s rows were changed by someone else while import "
                f"{job_id} was being applied: nothing was applied; preview the file again"
            )
            fail_job(engine, job_id, message, status="stale")
            raise StalePreviewError(message) from exc
        if isinstance(exc, sa.exc.IntegrityError):
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise ImportJobError(
                f"the database refused import {job_id} ({reason}): nothing was applied"
            ) from exc
        raise
    storage.delete(key)
    return ApplyResult(
        job_id=job_id,
        counts=plan.counts,
        rows_written=plan.row_writes,
        changes_recorded=changes,
        seconds=time.perf_counter() - started,
        statements=writer.statements,
    )


def _status_message(job: dict) -> str:
    status = job["status"]
    if status == "applied":
        return f"import job {job['id']} was already applied"
    if status == "undone":
        return f"import job {job['id']} was applied and then undone; import the file again"
    if status == "stale":
        return f"import job {job['id']} is stale (the data changed after its preview); import the file again"
    if status == "failed":
        return f"import job {job['id']} failed: {job['errorMessage']}"
    return f"import job {job['id']} is {status}; only a previewed job can be applied"


@collector_paused()
def _write_plan(writer: BulkWriter, plan: ImportPlan, job_id: str) -> int:
    now = utc_now()
    refs = _external_ref_rows(plan, now)
    with ThreadPoolExecutor(1) as helper:
        # The journal needs nothing but the plan: it is built in a second thread while
        # the database takes the rows (psycopg lets go of the GIL meanwhile).
        journal = helper.submit(_journal, plan, refs, job_id, now)
        for name in _parents_first():
            writer.insert(
                schema.metadata.tables[name], app_columns(plan.tables[name].creates, name)
            )
        for name in _parents_first():
            updates = app_columns(plan.tables[name].updates, name)
            writer.update(schema.metadata.tables[name], updates, plan.user_id)
        for name in reversed(_parents_first()):
            deletes = plan.tables[name].deletes
            writer.delete(schema.metadata.tables[name], deletes["id"].to_pylist(), plan.user_id)
        existed = plan.external_refs["existed"].combine_chunks()
        writer.insert(schema.external_ref, refs.filter(pc.invert(existed)))
        writer.update(schema.external_ref, refs.filter(existed), plan.user_id)
        changes = journal.result()
    writer.insert_records(schema.import_change, changes.records())
    return changes.rows


def record_row_changes(
    conn: sa.Connection,
    job_id: str,
    user_id: str,
    entries: list[tuple[str, str, str, str | None, str | None]],
) -> int:
    """Journal rows written outside an import plan (a sync push: `assets.sync.merge`) as
    an import's changes, so that `assets.imports.undo.undo_import` can put them back:
    (table, row id, create|update|delete, JSON before, JSON after) each, the JSON written
    by `assets.imports.row_json`. Call once per job. Returns how many were recorded."""
    journal = ChangeJournal(job_id, user_id, utc_now())
    for name, row_id, action, before, after in entries:
        journal.add(
            name,
            action,
            pa.array([row_id], pa.string()),
            None if before is None else pa.array([before], pa.string()),
            None if after is None else pa.array([after], pa.string()),
        )
    BulkWriter(conn, None).insert_records(schema.import_change, journal.records())
    return journal.rows


def _journal(plan: ImportPlan, refs: pa.Table, job_id: str, now: dt.datetime) -> ChangeJournal:
    """The change journal of every row the plan writes, with its JSON before and after."""
    journal = ChangeJournal(job_id, plan.user_id, now)
    for name in _parents_first():
        creates = app_columns(plan.tables[name].creates, name)
        journal.add(name, "create", creates["id"], None, rows_json_array(creates))
    for name in _parents_first():
        table_plan = plan.tables[name]
        updates = app_columns(table_plan.updates, name)
        befores = rows_json_array(table_plan.before)
        journal.add(name, "update", updates["id"], befores, rows_json_array(updates))
    for name in reversed(_parents_first()):
        deletes = plan.tables[name].deletes
        journal.add(name, "delete", deletes["id"], rows_json_array(deletes), None)
    if refs.num_rows:
        existed = plan.external_refs["existed"].combine_chunks()
        created = pc.invert(existed)
        afters = rows_json_array(refs)
        journal.add(
            "ExternalRef", "create", refs["id"].filter(created), None, afters.filter(created)
        )
        journal.add(
            "ExternalRef",
            "update",
            refs["id"].filter(existed),
            _refs_before(plan).filter(existed),
            afters.filter(existed),
        )
    return journal


def _repeat(text: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(text, pa.string()), n)


def _external_ref_rows(plan: ImportPlan, now: dt.datetime) -> pa.Table:
    """The plan's ExternalRef rows as they will be stored: a ref that existed keeps its
    creation time, and every one is updated now."""
    refs = plan.external_refs.combine_chunks()
    existed = refs["existed"].combine_chunks()
    befores = refs["before"].filter(existed).to_pylist()
    created_before = pa.array(
        [dt.datetime.fromisoformat(json.loads(b)["createdAt"]) for b in befores], TIME
    )
    n = refs.num_rows
    columns = {
        "userId": _repeat(plan.user_id, n),
        "sourceApp": _repeat(plan.source_app, n),
        "createdAt": pc.replace_with_mask(
            pa.repeat(pa.scalar(now, TIME), n), existed, created_before
        ),
        "updatedAt": pa.repeat(pa.scalar(now, TIME), n),
    }
    return pa.Table.from_arrays(
        [columns[f.name] if f.name in columns else refs[f.name] for f in REF_SCHEMA],
        schema=REF_SCHEMA,
    )


def _refs_before(plan: ImportPlan) -> pa.Array:
    """The JSON of each ref before the import (null for a new one), in the same form as
    `rows_as_json`: the stored JSON has ISO times."""
    refs = plan.external_refs.combine_chunks()
    existed = refs["existed"].combine_chunks()
    rows = [json.loads(before) for before in refs["before"].filter(existed).to_pylist()]
    for row in rows:
        for key in ("createdAt", "updatedAt"):
            if row.get(key):
                row[key] = dt.datetime.fromisoformat(row[key])
    texts = rows_json_array(pa.Table.from_pylist(rows, schema=REF_SCHEMA))
    return pc.replace_with_mask(pa.nulls(refs.num_rows, pa.string()), existed, texts)


def _parents_first() -> list[str]:
    return list(TABLE_NAMES)
