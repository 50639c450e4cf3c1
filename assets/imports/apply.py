"""Running an import without Dagster: job rows, preview, apply in one transaction, undo.

The CLI and the Dagster assets both call these functions, so an import takes one path:

1. `create_import_job` inserts the `DataImportJob` row (pending).
2. `preview_import` reads the file (`assets.imports.detect`), stages it for the user
   (`assets.imports.staging`), diffs it against their data (`assets.imports.diff`), stores the
   plan in object storage and the preview on the job (`previewData`, counts,
   `conflictsDetected`, `planFingerprint`: a hash of the user's rows as previewed). Nothing
   is written to the app's tables.
3. `apply_import` applies that stored plan in ONE transaction: bulk writes (on PostgreSQL,
   COPY into the table or into a temporary table followed by one UPDATE ... FROM), an
   `ImportChange` row with the before and after of every touched row, ExternalRef upserts,
   the job row and an audit entry. It refuses, changing nothing, when the user's rows no
   longer hash to the previewed fingerprint, or when conflicts are left unresolved.
4. `undo_import` puts every touched row back as it was, in one transaction, and refuses
   (naming the rows) when any of them changed after the import.

On PostgreSQL the apply and the undo run at REPEATABLE READ: the fingerprint is checked in
the same snapshot as the writes, and a row someone else changes meanwhile makes the
transaction fail rather than be overwritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from assets.imports.detect import DEFAULT_LIMITS, DetectedImport, ImportLimits, detect_import
from assets.imports.diff import (
    ImportPlan,
    check_request,
    diff_import,
    plan_from_bytes,
    plan_to_bytes,
    rows_as_json,
    rows_json_array,
)
from assets.imports.parsers.base import collector_paused
from assets.imports.staging import (
    DEFAULT_MAX_BAD_SHARE,
    REFERENCES_FROM,
    TABLE_NAMES,
    StagedImport,
    app_columns,
    stage_import,
)
from resources import schema
from resources.audit import new_id, record_audit, utc_now
from resources.database import AppDatabase
from resources.sources import RUN, read_source
from resources.storage import ObjectStorage

APPLY_STATUSES = ("previewed", "confirmed")
TABLES = {str(t.name): t for t in schema.APP_TABLES}
REF_COLUMNS = [c.name for c in schema.external_ref.columns]
REF_SCHEMA = schema.arrow_schema(schema.external_ref)
CHANGE_SCHEMA = schema.arrow_schema(schema.import_change)
TIME = REF_SCHEMA.field("createdAt").type

StatementHook = Callable[[int, str], None]
# rows per CSV chunk sent to COPY: small enough that the server ingests one chunk while
# the next is written (one large chunk would leave the server idle while it is written)
COPY_BATCH_ROWS = 8_192


class ImportJobError(RuntimeError):
    """An import step refused; the message says why and what to do."""


class StalePreviewError(ImportJobError):
    """The user's data changed after the preview: a new preview is needed."""


class UndoRefusedError(ImportJobError):
    """Rows touched by the import changed afterwards: undoing would lose those changes."""


class TooManyBadRowsError(ImportJobError):
    """More of the file's rows are invalid than the import accepts."""

    def __init__(self, staged: StagedImport):
        super().__init__(staged.bad_rows_message())
        self.staged = staged


@dataclass
class UserState:
    """The user's rows now (app tables and ExternalRefs) and their fingerprint."""

    tables: dict[str, pa.Table]
    refs: pa.Table
    fingerprint: str
    user_exists: bool


@dataclass
class ApplyResult:
    job_id: str
    counts: dict[str, dict[str, int]]
    rows_written: int
    changes_recorded: int
    seconds: float
    statements: int


@dataclass
class UndoResult:
    job_id: str
    rows_restored: int
    seconds: float


@dataclass
class PreviewResult:
    job_id: str
    plan: ImportPlan
    detected: DetectedImport | None = None
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- job rows


def create_import_job(
    engine: sa.Engine,
    *,
    user_id: str,
    file_name: str,
    file_url: str | None = None,
    mode: str = "merge",
    conflict_policy: str = "fail",
    modules: Sequence[str] | None = None,
    requested_by: str | None = None,
    job_id: str | None = None,
) -> str:
    """Insert a pending DataImportJob; returns its id (an existing `job_id` is kept as is,
    so a sensor that retries does not create a second job)."""
    chosen = check_request(mode, conflict_policy, modules)
    job_id = job_id or new_id("imp_")
    with engine.begin() as conn:
        exists = conn.execute(
            sa.select(schema.data_import_job.c.id).where(schema.data_import_job.c.id == job_id)
        ).first()
        if exists:
            return job_id
        conn.execute(
            schema.data_import_job.insert().values(
                id=job_id,
                userId=user_id,
                status="pending",
                fileName=file_name,
                fileUrl=file_url,
                mode=mode,
                conflictPolicy=conflict_policy,
                modules=json.dumps(list(chosen)) if chosen else None,
                requestedBy=requested_by,
                createdAt=utc_now(),
            )
        )
    return job_id


def get_import_job(engine: sa.Engine, job_id: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(schema.data_import_job).where(schema.data_import_job.c.id == job_id)
        ).first()
    if row is None:
        raise ImportJobError(f"no import job {job_id}")
    return dict(row._mapping)


def list_import_jobs(engine: sa.Engine, user_id: str) -> list[dict]:
    """The user's import jobs, newest first (without the large preview)."""
    job = schema.data_import_job
    columns = [c for c in job.columns if c.name != "previewData"]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(*columns).where(job.c.userId == user_id).order_by(job.c.createdAt.desc())
        )
        return [dict(r._mapping) for r in rows]


def _update_job(engine_or_conn, job_id: str, **values) -> None:
    statement = (
        schema.data_import_job.update()
        .where(schema.data_import_job.c.id == job_id)
        .values(**values)
    )
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.begin() as conn:
            conn.execute(statement)
    else:
        engine_or_conn.execute(statement)


def fail_job(
    engine: sa.Engine, job_id: str, message: str, status: str = "failed", **values
) -> None:
    _update_job(engine, job_id, status=status, errorMessage=message[:4000], **values)


def plan_key(user_id: str, job_id: str) -> str:
    """Where a job's plan waits between preview and apply (under the user's prefix)."""
    return f"imports/plans/{user_id}/{job_id}.plan"


# ---------------------------------------------------------------- the user's state


def fingerprint_user_data(conn: sa.Connection, user_id: str) -> str:
    """A hash of every row the user has (app tables and ExternalRefs), computed in the
    caller's transaction: equal fingerprints mean the same rows and values."""
    tables = [*schema.APP_TABLES, schema.external_ref]
    digest = hashlib.sha256()
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
        parts = []
        for table in tables:
            owner = "id" if table.name == "User" else "userId"
            # each row hashed from its values (no text form to build, no sort: 4x faster
            # than an md5 of the rows' text), the 64-bit hashes added up
            parts.append(
                f"SELECT '{table.name}' AS t, count(*) AS n, "
                f"coalesce(sum(hash_record_extended(x, 0)::numeric), 0)::text AS h "
                f'FROM "{table.name}" x WHERE x."{owner}" = :u'
            )
        for name, count, hashed in conn.execute(sa.text(" UNION ALL ".join(parts)), {"u": user_id}):
            digest.update(f"{name}:{count}:{hashed};".encode())
        return digest.hexdigest()
    for table in tables:
        owner = table.c.id if table.name == "User" else table.c.userId
        rows = conn.execute(sa.select(table).where(owner == user_id).order_by(table.c.id))
        count = 0
        for row in rows:
            digest.update(repr(tuple(row)).encode())
            count += 1
        digest.update(f"{table.name}:{count};".encode())
    return digest.hexdigest()


def _fingerprint(engine: sa.Engine, user_id: str) -> str:
    with engine.begin() as conn:
        return fingerprint_user_data(conn, user_id)


def load_user_state(database: AppDatabase, user_id: str) -> UserState:
    """The user's data as the preview sees it; the fingerprint is taken before and after
    reading, and the read repeated if the data moved meanwhile."""
    engine = database.engine
    for _ in range(5):
        before = _fingerprint(engine, user_id)
        tables = {
            name: t for name, t in database.extract([user_id]).per_user().get(user_id, {}).items()
        } or schema.empty_app_tables()
        refs = _read_refs(engine, user_id)
        if _fingerprint(engine, user_id) == before:
            exists = tables["User"].num_rows > 0
            return UserState(tables, refs, before, exists)
    raise ImportJobError(f"user {user_id}'s data keeps changing; try the import again later")


def _read_refs(engine_or_conn, user_id: str) -> pa.Table:
    ref = schema.external_ref
    query = sa.select(ref).where(ref.c.userId == user_id)
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.connect() as conn:
            rows = conn.execute(query).fetchall()
    else:
        rows = engine_or_conn.execute(query).fetchall()
    return _arrow_rows(ref, rows)


def _arrow_rows(table: sa.Table, rows) -> pa.Table:
    target = schema.arrow_schema(table)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in target]
    arrays = []
    for values, f in zip(columns, target, strict=True):
        if pa.types.is_timestamp(f.type):
            values = [
                v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None else v
                for v in values
            ]
        arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=target)


def _ids_owned_by_others(
    conn: sa.Connection, staged: StagedImport
) -> tuple[dict[str, pa.Array], list[str]]:
    """Staged ids that exist for another user, per table; e-mails other accounts use."""
    found: dict[str, pa.Array] = {}
    user_id = staged.user_id
    for name, table in staged.tables.items():
        if name == "User" or table.num_rows == 0:
            continue
        t = TABLES[name]
        ids = table["id"].to_pylist()
        hits: list[str] = []
        for clause in _in_ids(conn, t.c.id, ids):
            hits += [
                r[0] for r in conn.execute(sa.select(t.c.id).where(clause, t.c.userId != user_id))
            ]
        if hits:
            found[name] = pa.array(hits, pa.string())
    emails: list[str] = []
    users = staged.tables["User"]
    if users.num_rows:
        wanted = [e for e in users["email"].to_pylist() if e]
        emails = [
            r[0]
            for r in conn.execute(
                sa.select(schema.user.c.email).where(
                    schema.user.c.email.in_(wanted), schema.user.c.id != user_id
                )
            )
        ]
    return found, emails


def _chunks(values: list, size: int = 10_000):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _in_ids(conn: sa.Connection, column: sa.Column, ids: list[str]):
    """WHERE clauses selecting `column` IN `ids`: one array parameter on PostgreSQL (a bind
    per id costs seconds to compile for 50,000 ids), batches of binds elsewhere."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        yield column == sa.any_(sa.literal(list(ids), type_=ARRAY(sa.Text)))
        return
    for chunk in _chunks(list(ids), 500):
        yield column.in_(chunk)


# ---------------------------------------------------------------- preview


def read_job_file(storage: ObjectStorage, url: str) -> bytes:
    """The bytes of an import job's file, which must be an object in goalport's storage (a
    job row never makes a run read a local path or another location: `resources.sources`)."""
    return read_source(url, storage, rules=RUN).data


def user_identities(database: AppDatabase, user_id: str) -> Callable[[], list[str]]:
    """The user's backup identity from the key vault, fetched only if a file needs it."""

    def fetch() -> list[str]:
        from resources.keys import KeyCustodyError, KeyVault

        try:
            return [KeyVault(database_url=database.resolved_url).identity(user_id)]
        except KeyCustodyError as exc:
            raise ImportJobError(
                f"the file is encrypted to a key, and the user's backup key cannot open it: {exc}"
            ) from exc

    return fetch


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
    from assets.imports.detect import ImportFormatError

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
    try:
        detected = detect_import(
            data,
            file_name=job["fileName"] or "upload",
            passphrase=passphrase,
            identities=identities,
            limits=limits,
            timezone=timezone,
        )
    except (ImportFormatError, ImportJobError) as exc:
        fail_job(engine, job_id, str(exc), fileChecksum=hashlib.sha256(data).hexdigest())
        raise
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
    _update_job(
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
    if state is not None and _fingerprint(engine, staged.user_id) == state.fingerprint:
        fresh = state
    else:
        fresh = load_user_state(database, staged.user_id)
    if expected is not None and fresh.fingerprint != expected:
        message = "the user's data changed while the file was being staged; preview again"
        fail_job(engine, job_id, message, status="stale")
        raise StalePreviewError(message)
    known = fresh.refs.filter(pc.equal(fresh.refs["sourceApp"], staged.source_app))
    with engine.connect() as conn:
        other_ids, taken_emails = _ids_owned_by_others(conn, staged)
    invalid_ids: dict[str, set[str]] = {}
    for issue in staged.issues:
        if issue.row_id:
            invalid_ids.setdefault(issue.table, set()).add(issue.row_id)
    modules = json.loads(job["modules"]) if job["modules"] else None
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
        "report": [_report_entry(e) for e in detected.report[:500]],
    }
    if not detected.is_goalport:
        plan.file["mapping"] = mapping_summary(detected)
    storage.write_bytes(plan_key(staged.user_id, job_id), plan_to_bytes(plan))
    preview = plan.preview()
    with engine.begin() as conn:
        _update_job(
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
    return plan


def mapping_summary(detected: DetectedImport) -> dict:
    """The mapping report in brief: rows per target table, items skipped and flattened."""
    counts = {str(n): c for n, c in detected.row_counts().items() if c}
    return {
        "imported": dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
        "skipped": sum(e.count for e in detected.report if e.action == "skipped"),
        "flattened": sum(e.count for e in detected.report if e.action == "flattened"),
        "entries": len(detected.report),
    }


def _report_entry(entry) -> dict:
    return {
        "source": entry.source_item,
        "externalKey": entry.external_key,
        "table": entry.target_table,
        "action": entry.action,
        "reason": entry.reason,
        "count": entry.count,
    }


def preview_import(
    database: AppDatabase,
    storage: ObjectStorage,
    job_id: str,
    data: bytes,
    *,
    passphrase: str | None = None,
    identities=None,
    limits: ImportLimits = DEFAULT_LIMITS,
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
) -> PreviewResult:
    """Stage and diff a job's file; store the plan and the preview. Writes no app rows."""
    staged, detected, state = stage_job(
        database,
        job_id,
        data,
        passphrase=passphrase,
        identities=identities,
        limits=limits,
        max_bad_share=max_bad_share,
    )
    plan = preview_staged(database, storage, job_id, staged, detected, state)
    return PreviewResult(job_id, plan, detected, plan.warnings)


# ---------------------------------------------------------------- writing


class _Writer:
    """Bulk writes inside one transaction, counting statements (and calling a hook after
    each, which tests use to fail or to stop in the middle)."""

    def __init__(self, conn: sa.Connection, on_statement: StatementHook | None):
        self.conn = conn
        self.on_statement = on_statement
        self.statements = 0
        self.is_postgres = conn.dialect.name == "postgresql"

    def _done(self, what: str) -> None:
        self.statements += 1
        if self.on_statement is not None:
            self.on_statement(self.statements, what)

    def execute(self, statement, params=None, what: str = "statement"):
        result = (
            self.conn.execute(statement, params)
            if params is not None
            else self.conn.execute(statement)
        )
        self._done(what)
        return result

    def insert(self, table: sa.Table, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        rows = rows.select([c.name for c in table.columns])
        if self.is_postgres:
            self._copy(table.name, rows)
        else:
            self.conn.execute(table.insert(), rows.to_pylist())
        self._done(f"insert {rows.num_rows} into {table.name}")

    def update(self, table: sa.Table, rows: pa.Table, user_id: str) -> None:
        """Set every column of the rows with these ids (only the user's rows)."""
        if rows.num_rows == 0:
            return
        rows = rows.select([c.name for c in table.columns])
        owner = "id" if table.name == "User" else "userId"
        columns = [c.name for c in table.columns if c.name not in ("id", owner)]
        if self.is_postgres:
            temp = f"_gp_import_{table.name}"
            self.execute(
                sa.text(f'CREATE TEMP TABLE "{temp}" (LIKE "{table.name}") ON COMMIT DROP'),
                what=f"temp table for {table.name}",
            )
            self._copy(temp, rows)
            self._done(f"copy {rows.num_rows} updates of {table.name}")
            assignments = ", ".join(f'"{c}" = s."{c}"' for c in columns)
            result = self.execute(
                sa.text(
                    f'UPDATE "{table.name}" AS t SET {assignments} FROM "{temp}" AS s '
                    f'WHERE t.id = s.id AND t."{owner}" = :u'
                ),
                {"u": user_id},
                what=f"update {rows.num_rows} in {table.name}",
            )
            self.execute(sa.text(f'DROP TABLE "{temp}"'), what="drop temp table")
        else:
            statement = (
                table.update()
                .where(table.c.id == sa.bindparam("_id"), table.c[owner] == user_id)
                .values({c: sa.bindparam(c) for c in columns})
            )
            params = [
                {**{c: row[c] for c in columns}, "_id": row["id"]} for row in rows.to_pylist()
            ]
            result = self.execute(statement, params, what=f"update {rows.num_rows} in {table.name}")
        if result.rowcount not in (-1, rows.num_rows):
            raise ImportJobError(
                f"{table.name}: {rows.num_rows - result.rowcount} rows vanished while the import "
                "was applied; nothing was changed, preview again"
            )

    def delete(self, table: sa.Table, ids: list[str], user_id: str) -> None:
        if not ids:
            return
        owner = table.c.id if table.name == "User" else table.c.userId
        deleted = 0
        for clause in _in_ids(self.conn, table.c.id, ids):
            result = self.execute(
                sa.delete(table).where(clause, owner == user_id),
                what=f"delete from {table.name}",
            )
            deleted += result.rowcount
        if deleted != len(ids):
            raise ImportJobError(
                f"{table.name}: {len(ids) - deleted} rows to delete were already gone; nothing "
                "was changed, preview again"
            )

    def _copy(self, table_name: str, rows: pa.Table) -> None:
        import pyarrow.csv as pacsv

        cursor = self.conn.connection.driver_connection.cursor()
        columns = ", ".join(f'"{c}"' for c in rows.column_names)
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        with cursor.copy(f'COPY "{table_name}" ({columns}) FROM STDIN (FORMAT csv)') as copy:
            for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                copy.write(buffer.getbuffer())


def _parents_first() -> list[str]:
    return list(TABLE_NAMES)


def _begin(engine: sa.Engine):
    conn = engine.connect()
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _lock_job(conn: sa.Connection, job_id: str) -> dict:
    job = schema.data_import_job
    query = sa.select(job).where(job.c.id == job_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise ImportJobError(f"no import job {job_id}")
    return dict(row._mapping)


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
        with _begin(engine) as conn, conn.begin():
            locked = _lock_job(conn, job_id)
            if locked["status"] not in APPLY_STATUSES:
                raise ImportJobError(_status_message(locked))
            if fingerprint_user_data(conn, plan.user_id) != locked["planFingerprint"]:
                raise StalePreviewError(
                    f"user {plan.user_id}'s data changed after the preview of import {job_id}: "
                    "nothing was applied; preview the file again"
                )
            writer = _Writer(conn, on_statement)
            changes = _write_plan(writer, plan, job_id)
            totals = plan.totals()
            _update_job(
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
def _write_plan(writer: _Writer, plan: ImportPlan, job_id: str) -> int:
    now = utc_now()
    refs = _external_ref_rows(plan, now)
    with ThreadPoolExecutor(1) as helper:
        # The ImportChange rows need nothing but the plan: they are built in a second
        # thread while the database takes the rows (psycopg lets go of the GIL meanwhile).
        records = helper.submit(_change_records, plan, refs, job_id, now)
        for name in _parents_first():
            writer.insert(TABLES[name], app_columns(plan.tables[name].creates, name))
        for name in _parents_first():
            updates = app_columns(plan.tables[name].updates, name)
            writer.update(TABLES[name], updates, plan.user_id)
        for name in reversed(_parents_first()):
            deletes = plan.tables[name].deletes
            writer.delete(TABLES[name], deletes["id"].to_pylist(), plan.user_id)
        existed = plan.external_refs["existed"].combine_chunks()
        writer.insert(schema.external_ref, refs.filter(pc.invert(existed)))
        writer.update(schema.external_ref, refs.filter(existed), plan.user_id)
        changes = records.result()
    writer.insert(schema.import_change, changes)
    return changes.num_rows


def _change_records(plan: ImportPlan, refs: pa.Table, job_id: str, now: dt.datetime) -> pa.Table:
    """An ImportChange row for every row the plan writes, with its JSON before and after."""
    changes = _ChangeLog(job_id, plan.user_id, now)
    for name in _parents_first():
        creates = app_columns(plan.tables[name].creates, name)
        changes.add(name, "create", creates["id"], None, rows_json_array(creates))
    for name in _parents_first():
        table_plan = plan.tables[name]
        updates = app_columns(table_plan.updates, name)
        befores = rows_json_array(table_plan.before)
        changes.add(name, "update", updates["id"], befores, rows_json_array(updates))
    for name in reversed(_parents_first()):
        deletes = plan.tables[name].deletes
        changes.add(name, "delete", deletes["id"], rows_json_array(deletes), None)
    if refs.num_rows:
        existed = plan.external_refs["existed"].combine_chunks()
        actions = pc.if_else(existed, "update", "create")
        changes.add("ExternalRef", actions, refs["id"], _refs_before(plan), rows_json_array(refs))
    return changes.table()


class _ChangeLog:
    """The ImportChange rows of one apply, gathered column-wise: one Arrow table per
    batch of rows, numbered in the order they are added."""

    def __init__(self, job_id: str, user_id: str, now: dt.datetime):
        self.job_id = job_id
        self.user_id = user_id
        self.now = now
        self.parts: list[pa.Table] = []
        self.count = 0

    def add(self, name: str, action: str | pa.Array, ids, befores, afters) -> None:
        """One record per id (`action` one for all, or one each); `befores` / `afters`
        are the rows' JSON texts, or None when there is no such side."""
        n = len(ids)
        if n == 0:
            return
        numbers = range(self.count, self.count + n)
        self.count += n
        if isinstance(action, str):
            action = _repeat(action, n)
        self.parts.append(
            pa.Table.from_arrays(
                [
                    pa.array([f"chg_{self.job_id}_{i:07d}" for i in numbers], pa.string()),
                    _repeat(self.job_id, n),
                    _repeat(self.user_id, n),
                    _repeat(name, n),
                    ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids,
                    action,
                    _json_column(befores, n),
                    _json_column(afters, n),
                    pa.repeat(pa.scalar(self.now, TIME), n),
                ],
                schema=CHANGE_SCHEMA,
            )
        )

    def table(self) -> pa.Table:
        return pa.concat_tables([CHANGE_SCHEMA.empty_table(), *self.parts])


def _repeat(text: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(text, pa.string()), n)


def _json_column(texts: pa.Array | None, n: int) -> pa.Array:
    return pa.nulls(n, pa.string()) if texts is None else texts


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


# ---------------------------------------------------------------- undo


def undo_import(database: AppDatabase, job_id: str, *, actor: str | None = None) -> UndoResult:
    """Restore every row the import touched, in one transaction, or refuse saying which
    rows changed after the import."""
    from assets.formats.common import column_from_values

    started = time.perf_counter()
    engine = database.engine
    change = schema.import_change
    with _begin(engine) as conn, conn.begin():
        job = _lock_job(conn, job_id)
        if job["status"] != "applied":
            raise ImportJobError(
                f"import job {job_id} is {job['status']}; only an applied import can be undone"
            )
        user_id = job["userId"]
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
        recorded = conn.execute(
            sa.select(
                change.c.tableName, change.c.rowId, change.c.action, change.c.before, change.c.after
            )
            .where(change.c.importJobId == job_id)
            .order_by(change.c.id)
        ).fetchall()
        by_table: dict[str, list] = {}
        for row in recorded:
            by_table.setdefault(row.tableName, []).append(row)
        all_tables = [*TABLE_NAMES, "ExternalRef"]
        table_defs = {**TABLES, "ExternalRef": schema.external_ref}

        def to_arrow(name: str, texts: list[str]) -> pa.Table:
            target = schema.arrow_schema(table_defs[name])
            rows = [json.loads(t) for t in texts]
            arrays = [
                column_from_values(
                    [r[f.name] for r in rows], f, lambda i, n=name: f"ImportChange of {n} #{i}"
                )
                for f in target
            ]
            return pa.Table.from_arrays(arrays, schema=target)

        problems: list[str] = []
        plan: dict[str, dict[str, pa.Table]] = {}
        for name in all_tables:
            entries = by_table.get(name, [])
            if not entries:
                continue
            table = table_defs[name]
            ids = [e.rowId for e in entries]
            current = _read_rows_by_id(conn, table, ids)
            now_json = dict(zip(current["id"].to_pylist(), rows_as_json(current), strict=True))
            created = [e for e in entries if e.action == "create"]
            updated = [e for e in entries if e.action == "update"]
            deleted = [e for e in entries if e.action == "delete"]
            for e in created + updated:
                if e.rowId not in now_json:
                    problems.append(f"{name} {e.rowId} was deleted after the import")
                elif now_json[e.rowId] != e.after:
                    problems.append(f"{name} {e.rowId} was changed after the import")
            for e in deleted:
                if e.rowId in now_json:
                    problems.append(f"{name} {e.rowId} was created again after the import")
            plan[name] = {
                "created": [e.rowId for e in created],
                "restore": to_arrow(name, [e.before for e in deleted]),
                "revert": to_arrow(name, [e.before for e in updated]),
            }
        problems += _rows_added_under(conn, plan, user_id)
        if problems:
            shown = "; ".join(problems[:10])
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise UndoRefusedError(
                f"cannot undo import {job_id}: rows it touched changed afterwards, and undoing "
                f"would lose those changes: {shown}{more}"
            )
        writer = _Writer(conn, None)
        restored = 0
        for name in all_tables:
            if name in plan:
                writer.insert(table_defs[name], plan[name]["restore"])
                restored += plan[name]["restore"].num_rows
        for name in all_tables:
            if name in plan:
                writer.update(table_defs[name], plan[name]["revert"], user_id)
                restored += plan[name]["revert"].num_rows
        for name in reversed(all_tables):
            if name in plan:
                writer.delete(table_defs[name], plan[name]["created"], user_id)
                restored += len(plan[name]["created"])
        _update_job(conn, job_id, status="undone", completedAt=utc_now())
        record_audit(
            conn,
            user_id=user_id,
            operation="import",
            operation_type="undo",
            data_types=[n for n in plan if n != "ExternalRef"],
            record_count=restored,
            actor=actor,
            details={"jobId": job_id},
        )
    return UndoResult(job_id, restored, time.perf_counter() - started)


def _read_rows_by_id(conn: sa.Connection, table: sa.Table, ids: list[str]) -> pa.Table:
    rows = []
    for clause in _in_ids(conn, table.c.id, ids):
        rows += conn.execute(sa.select(table).where(clause)).fetchall()
    return _arrow_rows(table, rows)


def _rows_added_under(conn: sa.Connection, plan: dict, user_id: str) -> list[str]:
    """Rows that point at a row the import created but were neither created nor updated
    by it: added after the import, they would vanish (or lose their reference) with the
    undo. (A row the import updated to point there gets its old reference back.)"""
    problems = []
    created = {name: set(p["created"]) for name, p in plan.items()}
    touched = {name: created[name] | set(p["revert"]["id"].to_pylist()) for name, p in plan.items()}
    for name, ids in created.items():
        if not ids or name == "ExternalRef":
            continue
        for child, refs in REFERENCES_FROM.items():
            for ref in refs:
                if ref.target != name:
                    continue
                table = TABLES[child]
                for clause in _in_ids(conn, table.c[ref.column], sorted(ids)):
                    hits = conn.execute(
                        sa.select(table.c.id, table.c[ref.column]).where(
                            clause, table.c.userId == user_id
                        )
                    ).fetchall()
                    for child_id, parent_id in hits:
                        if child_id not in touched.get(child, set()):
                            problems.append(
                                f"{child} {child_id} was added after the import and refers to "
                                f"{name} {parent_id}, which the import created"
                            )
    return problems
