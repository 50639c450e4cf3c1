"""Stored plans: where an import's plan waits between its preview and its apply.

The preview stores the whole `ImportPlan` in object storage under the user's prefix
(`resources.storage_layout.plan_key`, so erasing the user removes it), and the apply reads it back and writes exactly what it
holds: one zip of Arrow IPC files and a JSON header, stored uncompressed since it lives
for minutes.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import orjson
import pyarrow as pa

from assets.imports.plan import (
    EXTERNAL_REF_SCHEMA,
    PLAN_VERSION,
    ImportPlan,
    ImportPlanError,
    TablePlan,
)
from assets.imports.staging import TABLE_NAMES, with_blank_staging_columns
from resources.schema import APP_ARROW_SCHEMAS


def plan_to_bytes(plan: ImportPlan) -> bytes:
    """The whole plan as one zip of Arrow IPC files and a JSON header (stored uncompressed:
    it lives for minutes, between preview and apply)."""
    header = {
        "version": PLAN_VERSION,
        "userId": plan.user_id,
        "mode": plan.mode,
        "conflictPolicy": plan.conflict_policy,
        "modules": list(plan.modules) if plan.modules else None,
        "sourceApp": plan.source_app,
        "fileName": plan.file_name,
        "exportedAt": plan.exported_at.isoformat() if plan.exported_at else None,
        "unresolvedConflicts": plan.unresolved_conflicts,
        "fingerprint": plan.fingerprint,
        "counts": plan.counts,
        "preview": plan.preview(),
    }
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("plan.json", orjson.dumps(header))
        for name, table_plan in plan.tables.items():
            for part in ("creates", "updates", "before", "deletes"):
                table = getattr(table_plan, part)
                if table.num_rows:
                    archive.writestr(f"{name}.{part}.arrow", _ipc_bytes(table))
        if plan.external_refs.num_rows:
            archive.writestr("ExternalRef.arrow", _ipc_bytes(plan.external_refs))
    return sink.getvalue()


def plan_from_bytes(data: bytes) -> ImportPlan:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        header = orjson.loads(archive.read("plan.json"))
        if header.get("version") != PLAN_VERSION:
            raise ImportPlanError("the stored plan was written by another goalport version")
        names = set(archive.namelist())

        def part(name: str, kind: str, staged_columns: bool) -> pa.Table:
            member = f"{name}.{kind}.arrow"
            if member in names:
                return _from_ipc(archive.read(member))
            table = APP_ARROW_SCHEMAS[name].empty_table()
            return with_blank_staging_columns(table) if staged_columns else table

        tables = {}
        for name in TABLE_NAMES:
            tables[name] = TablePlan(
                creates=part(name, "creates", True),
                updates=part(name, "updates", True),
                before=part(name, "before", False),
                deletes=part(name, "deletes", False),
                counts=header["counts"][name],
            )
        refs = (
            _from_ipc(archive.read("ExternalRef.arrow"))
            if "ExternalRef.arrow" in names
            else EXTERNAL_REF_SCHEMA.empty_table()
        )
    preview = header["preview"]
    plan = ImportPlan(
        user_id=header["userId"],
        mode=header["mode"],
        conflict_policy=header["conflictPolicy"],
        modules=tuple(header["modules"]) if header["modules"] else None,
        source_app=header["sourceApp"],
        file_name=header["fileName"],
        exported_at=dt.datetime.fromisoformat(header["exportedAt"])
        if header["exportedAt"]
        else None,
        tables=tables,
        external_refs=refs,
        conflicts=preview["conflicts"],
        unresolved_conflicts=header["unresolvedConflicts"],
        refused=preview["refused"],
        issues=preview["invalidRows"],
        warnings=preview["warnings"],
        changes=preview["changes"],
        fingerprint=header["fingerprint"],
        total_rows=preview["rowsInFile"],
        file=preview["file"],
    )
    return plan


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_file(pa.BufferReader(data)).read_all()
