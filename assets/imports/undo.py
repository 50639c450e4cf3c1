"""Undoing an applied import: every row it touched put back as it was, in one transaction.

The apply recorded the JSON before and after of every touched row
(`assets.imports.change_journal`); `undo_import` re-inserts what it deleted, reverts what it
updated and deletes what it created, and refuses, naming the rows, when any of them changed after the import or when
rows added since point at a row it created: undoing would lose those changes. Like the
apply, it runs at REPEATABLE READ on PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
import pyarrow as pa
import sqlalchemy as sa

from assets.formats.common import column_from_values
from assets.imports.bulk_sql import BulkWriter, begin_repeatable_read, in_ids
from assets.imports.change_journal import RecordedChange, import_changes
from assets.imports.jobs import ImportJobError, lock_job, update_job
from assets.imports.row_json import rows_as_json
from assets.imports.staging import REFERENCES_FROM, TABLE_NAMES
from assets.imports.user_state import read_rows_by_id
from resources import schema
from resources.audit import record_audit, utc_now
from resources.database import AppDatabase


class UndoRefusedError(ImportJobError):
    """Rows touched by the import changed afterwards: undoing would lose those changes."""


@dataclass
class UndoResult:
    job_id: str
    rows_restored: int
    seconds: float


def undo_import(
    database: AppDatabase,
    job_id: str,
    *,
    actor: str | None = None,
    within: Callable[[sa.Connection], object] | None = None,
) -> UndoResult:
    """Restore every row the import touched, in one transaction, or refuse saying which
    rows changed after the import. `within` is called with that transaction's connection
    just before it commits (the API writes its audit row there)."""
    started = time.perf_counter()
    engine = database.engine
    with begin_repeatable_read(engine) as conn, conn.begin():
        job = lock_job(conn, job_id)
        if job["status"] != "applied":
            raise ImportJobError(
                f"import job {job_id} is {job['status']}; only an applied import can be undone"
            )
        user_id = job["userId"]
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
        by_table: dict[str, list[RecordedChange]] = {}
        for recorded in import_changes(conn, job_id):
            by_table.setdefault(recorded.table, []).append(recorded)
        all_tables = [*TABLE_NAMES, "ExternalRef"]

        def to_arrow(name: str, rows: list[dict]) -> pa.Table:
            target = schema.arrow_schema(schema.metadata.tables[name])
            arrays = [
                column_from_values(
                    [r[f.name] for r in rows], f, lambda i: f"ImportChange of {name} #{i}"
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
            table = schema.metadata.tables[name]
            ids = [e.row_id for e in entries]
            current = read_rows_by_id(conn, table, ids)
            now_json = dict(zip(current["id"].to_pylist(), rows_as_json(current), strict=True))
            created = [e for e in entries if e.action == "create"]
            updated = [e for e in entries if e.action == "update"]
            deleted = [e for e in entries if e.action == "delete"]
            for e in created + updated:
                if e.row_id not in now_json:
                    problems.append(f"{name} {e.row_id} was deleted after the import")
                elif orjson.loads(now_json[e.row_id]) != e.after:
                    problems.append(f"{name} {e.row_id} was changed after the import")
            for e in deleted:
                if e.row_id in now_json:
                    problems.append(f"{name} {e.row_id} was created again after the import")
            plan[name] = {
                "created": [e.row_id for e in created],
                "restore": to_arrow(name, [e.before for e in deleted if e.before is not None]),
                "revert": to_arrow(name, [e.before for e in updated if e.before is not None]),
            }
        problems += _rows_added_under(conn, plan, user_id)
        if problems:
            shown = "; ".join(problems[:10])
            more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
            raise UndoRefusedError(
                f"cannot undo import {job_id}: rows it touched changed afterwards, and undoing "
                f"would lose those changes: {shown}{more}"
            )
        writer = BulkWriter(conn, None)
        restored = 0
        for name in all_tables:
            if name in plan:
                writer.insert(schema.metadata.tables[name], plan[name]["restore"])
                restored += plan[name]["restore"].num_rows
        for name in all_tables:
            if name in plan:
                writer.update(schema.metadata.tables[name], plan[name]["revert"], user_id)
                restored += plan[name]["revert"].num_rows
        for name in reversed(all_tables):
            if name in plan:
                writer.delete(schema.metadata.tables[name], plan[name]["created"], user_id)
                restored += len(plan[name]["created"])
        update_job(conn, job_id, status="undone", completedAt=utc_now())
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
        if within is not None:
            within(conn)
    return UndoResult(job_id, restored, time.perf_counter() - started)


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
                table = schema.metadata.tables[child]
                for clause in in_ids(conn, table.c[ref.column], sorted(ids)):
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
