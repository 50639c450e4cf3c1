"""The import plan: what an import will write, table by table, and the preview it shows.

`assets.imports.diff` builds an `ImportPlan` from staged rows and the user's current data;
`assets.imports.stored_plans` keeps it between preview and apply; `assets.imports.apply`
writes exactly what it holds. The request it answers (mode, conflict policy, modules) is
checked here, and `ImportPlan.preview()` is the JSON stored on the `DataImportJob` and shown
by the CLI: counts, a sample of field-level changes, conflicts, refused and invalid rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from assets.formats.common import as_export_text
from assets.imports.staging import MODES, app_columns

POLICIES = ("keep-existing", "take-incoming", "newest-wins", "fail")
COUNT_KEYS = ("create", "update", "unchanged", "conflict", "delete", "refused", "invalid")
PLAN_VERSION = 1
SAMPLE_ROWS = 20
DETAIL_LIMIT = 200

CONFLICT_RULE = (
    "A row conflicts when the file's version differs from the database's and the database's "
    "row was modified (updatedAt) after the file's copy was taken (exportedAt), or, for other "
    "apps, after the row was last imported from that source."
)

EXTERNAL_REF_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("tableName", pa.string()),
        pa.field("externalId", pa.string()),
        pa.field("localId", pa.string()),
        pa.field("extra", pa.string()),
        pa.field("existed", pa.bool_()),
        pa.field("before", pa.string()),  # the ref row as JSON before the import, if any
    ]
)


class ImportPlanError(ValueError):
    """The request cannot be planned (bad mode, policy or module name); says which."""


@dataclass
class TablePlan:
    """What one table's rows become. Tables hold app columns (and staging's for incoming)."""

    creates: pa.Table
    updates: pa.Table
    before: pa.Table  # the current rows that `updates` replace, in the same order
    deletes: pa.Table  # the current rows to delete
    counts: dict[str, int]

    @property
    def writes(self) -> int:
        return self.creates.num_rows + self.updates.num_rows + self.deletes.num_rows


@dataclass
class ImportPlan:
    user_id: str
    mode: str
    conflict_policy: str
    modules: tuple[str, ...] | None
    source_app: str
    file_name: str
    exported_at: dt.datetime | None
    tables: dict[str, TablePlan]
    external_refs: pa.Table
    conflicts: list[dict] = field(default_factory=list)
    unresolved_conflicts: int = 0
    refused: list[dict] = field(default_factory=list)
    issues: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    changes: dict[str, list[dict]] = field(default_factory=dict)
    fingerprint: str = ""
    total_rows: int = 0
    file: dict = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(plan.counts) for name, plan in self.tables.items()}

    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys(COUNT_KEYS, 0)
        for plan in self.tables.values():
            for key in COUNT_KEYS:
                totals[key] += plan.counts.get(key, 0)
        return totals

    @property
    def row_writes(self) -> int:
        return sum(plan.writes for plan in self.tables.values())

    @property
    def has_changes(self) -> bool:
        return self.row_writes > 0 or self.external_refs.num_rows > 0

    def preview(self) -> dict:
        """The JSON preview stored on the DataImportJob and shown by the CLI."""
        return {
            "version": PLAN_VERSION,
            "file": self.file,
            "userId": self.user_id,
            "mode": self.mode,
            "conflictPolicy": self.conflict_policy,
            "modules": list(self.modules) if self.modules else None,
            "counts": self.counts,
            "totals": self.totals(),
            "rowsInFile": self.total_rows,
            "changes": self.changes,
            "conflicts": self.conflicts[:DETAIL_LIMIT],
            "unresolvedConflicts": self.unresolved_conflicts,
            "refused": self.refused[:DETAIL_LIMIT],
            "invalidRows": self.issues[:DETAIL_LIMIT],
            "invalidRowCount": len(self.issues),
            "warnings": self.warnings,
            "externalRefs": self.external_refs.num_rows,
            "conflictRule": CONFLICT_RULE,
        }


# ---------------------------------------------------------------- the request


def check_request(mode: str, policy: str, modules: Sequence[str] | None) -> tuple[str, ...] | None:
    """The chosen modules (lowercase, first spelling kept; None for all), once the mode and
    the conflict policy are known ones."""
    if mode not in MODES:
        raise ImportPlanError(f"unknown mode {mode!r}: choose from {', '.join(MODES)}")
    if policy not in POLICIES:
        raise ImportPlanError(
            f"unknown conflict policy {policy!r}: choose from {', '.join(POLICIES)}"
        )
    if not modules:
        return None
    return tuple(dict.fromkeys(m.strip().lower() for m in modules if m.strip())) or None


# ---------------------------------------------------------------- preview samples


def change_samples(plan: ImportPlan, limit: int) -> dict[str, list[dict]]:
    """The preview's field-level sample: up to `limit` creates, updates (the fields that
    differ, old and new) and deletes per table, values as the export formats write them."""
    samples: dict[str, list[dict]] = {}
    for name, table_plan in plan.tables.items():
        entries: list[dict] = []
        for row in _export_rows(app_columns(table_plan.creates, name).slice(0, limit)):
            entries.append({"action": "create", "id": row["id"], "row": row})
        updates = _export_rows(app_columns(table_plan.updates, name).slice(0, limit))
        befores = _export_rows(table_plan.before.slice(0, limit))
        for new, old in zip(updates, befores, strict=True):
            fields = {k: [old[k], new[k]] for k in new if old[k] != new[k]}
            entries.append({"action": "update", "id": new["id"], "fields": fields})
        for row in _export_rows(table_plan.deletes.slice(0, limit)):
            entries.append({"action": "delete", "id": row["id"], "row": row})
        if entries:
            samples[name] = entries
    return samples


def _export_rows(table: pa.Table) -> list[dict]:
    names = table.column_names
    columns = [as_export_text(table[n]).to_pylist() for n in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
