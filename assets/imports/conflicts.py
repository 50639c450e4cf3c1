"""Conflicts: when a staged row and the user's row both changed, and which one a policy keeps.

**The rule.** A row is in conflict when it changed on both sides since the last time the
file's source and the database agreed on it. goalport only knows that moment, not the
row's history, so the rule uses timestamps:

- the *sync time* of a row is when the file's copy was taken (`exportedAt` of a goalport
  export), or, for other apps, when this row was last imported from that source (the
  `updatedAt` of its ExternalRef);
- a row conflicts when the file's version differs from the database's AND the database's
  row was modified after the sync time (its `updatedAt` is later). The file then brings a
  different version of a row the user has edited since: applying it blindly would lose that
  edit. (A stale file, one whose row is older than the user's edit, is such a conflict too.)
- Rows of tables without `updatedAt` (Module, Progress, Achievement, BibleReadingPlan,
  BibleReading, WorkTask) and files without a sync time cannot show that the database
  changed: a difference there is an update.

**The policies.** `keep-existing` (the database's row stays), `take-incoming` (the file's
row is written), `newest-wins` (the row with the later `updatedAt`; a tie keeps the
existing row), `fail` (the preview lists them and the apply refuses). The rule in one
sentence, as the preview states it, is `assets.imports.plan.CONFLICT_RULE`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.formats.common import as_export_text
from assets.imports.plan import DETAIL_LIMIT, ImportPlan
from assets.imports.staging import BASE_TIME_COLUMN
from resources.schema import APP_ARROW_SCHEMAS, UTC_TIMESTAMP


def conflicting_rows(
    matched: pa.Table, existing: pa.Table, changed: pa.Array, exported_at: dt.datetime | None
) -> pa.Array:
    """Which of the `changed` matched rows conflict under the rule above: the database's
    `updatedAt` is later than the row's sync time (its own, else the file's `exportedAt`)."""
    base = matched[BASE_TIME_COLUMN]
    if exported_at is not None:
        base = pc.coalesce(base, pa.scalar(exported_at, UTC_TIMESTAMP))
    db_newer = pc.fill_null(pc.greater(existing["updatedAt"], base), False)
    return pc.and_(changed, db_newer)


def resolve_conflicts(
    plan: ImportPlan, name, incoming, existing, conflict, changed_columns
) -> pa.Array:
    """Which conflicting rows the policy writes; each conflict is listed for the preview."""
    policy = plan.conflict_policy
    newer = pc.fill_null(pc.greater(incoming["updatedAt"], existing["updatedAt"]), False)
    if policy == "take-incoming":
        write = conflict
    elif policy == "newest-wins":
        write = pc.and_(conflict, newer)
    else:
        write = pa.array(np.full(len(conflict), False))
    if policy == "fail":
        plan.unresolved_conflicts += pc.sum(conflict).as_py()
    indices = np.flatnonzero(conflict.to_numpy(zero_copy_only=False))
    names = APP_ARROW_SCHEMAS[name].names
    write_list = write.to_numpy(zero_copy_only=False)
    for i in indices[: DETAIL_LIMIT - min(len(plan.conflicts), DETAIL_LIMIT)]:
        fields = {
            column: [
                _export_value(existing[column][int(i)]),
                _export_value(incoming[column][int(i)]),
            ]
            for column, mask in zip(names, changed_columns, strict=True)
            if mask[int(i)].as_py()
        }
        resolution = (
            "unresolved"
            if policy == "fail"
            else ("take-incoming" if write_list[i] else "keep-existing")
        )
        plan.conflicts.append(
            {
                "table": name,
                "id": incoming["id"][int(i)].as_py(),
                "existingUpdatedAt": _export_value(existing["updatedAt"][int(i)]),
                "incomingUpdatedAt": _export_value(incoming["updatedAt"][int(i)]),
                "fields": fields,
                "resolution": resolution,
            }
        )
    return write


def _export_value(scalar: pa.Scalar):
    """A value as the export formats write it (timestamps, dates, decimals as text)."""
    if not scalar.is_valid:
        return None
    return as_export_text(pa.array([scalar.as_py()], scalar.type))[0].as_py()
