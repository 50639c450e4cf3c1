"""An import's change journal (`ImportChange`): what `apply` records so that `undo` can put
every row back, and `import_changes`, the one way to read it (others read this, not the
table: how the journal is stored is this module's business).

The apply records its changes in batches: one ImportChange row per table, action and up to
`BATCH_ROWS` rows, holding the rows' ids (`rowIds`, a JSON array), how many (`rowCount`)
and their JSON before and after (`before`, `after`: JSON arrays in the order of the ids,
each element the row as `assets.imports.row_json` writes it). A row per changed row cost
the database more than the rows themselves (three index entries each); a batch costs next
to nothing. Imports applied before migration 0009_import_change_batches have one row per
changed row (`rowId`, `before` and `after` a JSON object each): both are read alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from assets.imports.jobs import ImportJobError
from resources import schema

# rows per journal record: a few MB of JSON per value at most
BATCH_ROWS = 5_000


@dataclass(frozen=True)
class RecordedChange:
    """One row an import changed: `before` and `after` are the row's values as JSON
    (export-format text for times and decimals), None where there is no such side."""

    table: str
    row_id: str
    action: str  # create, update, delete
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class ChangeJournal:
    """The journal of one apply: its records in the order they are added, made one at a
    time as they are written (each is megabytes of JSON)."""

    def __init__(self, job_id: str, user_id: str, now: dt.datetime):
        self.job_id = job_id
        self.user_id = user_id
        self.now = now
        self.parts: list[tuple[str, str, pa.Array, pa.Array | None, pa.Array | None]] = []
        self.rows = 0

    def add(
        self,
        table: str,
        action: str,
        ids: pa.Array | pa.ChunkedArray,
        befores: pa.Array | None,
        afters: pa.Array | None,
    ) -> None:
        """Record `action` on the rows `ids` of `table`: `befores` / `afters` are their
        JSON texts (`row_json.rows_json_array`), or None when there is no such side."""
        n = len(ids)
        if n == 0:
            return
        bounds = pa.array([*range(0, n, BATCH_ROWS), n], pa.int32())
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        batched_ids = pa.ListArray.from_arrays(bounds, ids)
        self.parts.append(
            (
                table,
                action,
                batched_ids,
                _json_arrays(befores, bounds),
                _json_arrays(afters, bounds),
            )
        )
        self.rows += n

    def records(self) -> Iterator[dict[str, Any]]:
        """The ImportChange rows, one at a time."""
        number = 0
        for table, action, batched_ids, befores, afters in self.parts:
            for i, ids in enumerate(batched_ids.to_pylist()):
                yield {
                    "id": f"chg_{self.job_id}_{number:05d}",
                    "importJobId": self.job_id,
                    "userId": self.user_id,
                    "tableName": table,
                    "rowId": None,
                    "rowIds": orjson.dumps(ids).decode(),
                    "rowCount": len(ids),
                    "action": action,
                    "before": None if befores is None else befores[i].as_py(),
                    "after": None if afters is None else afters[i].as_py(),
                    "createdAt": self.now,
                }
                number += 1


def _json_arrays(texts: pa.Array | None, bounds: pa.Array) -> pa.Array | None:
    """The JSON texts between each two bounds as one JSON array, joined column-wise (a
    Python string per row would cost more memory than the rows themselves)."""
    if texts is None:
        return None
    batches = pa.ListArray.from_arrays(bounds, texts)
    return pc.binary_join_element_wise("[", pc.binary_join(batches, ","), "]", "")


def import_changes(conn: sa.Connection, job_id: str) -> list[RecordedChange]:
    """Every row import `job_id` changed, in the order the apply recorded them."""
    change = schema.import_change
    records = conn.execute(
        sa.select(
            change.c.tableName,
            change.c.rowId,
            change.c.rowIds,
            change.c.action,
            change.c.before,
            change.c.after,
        )
        .where(change.c.importJobId == job_id)
        .order_by(change.c.id)
    )
    changes: list[RecordedChange] = []
    for table, row_id, row_ids, action, before, after in records:
        if row_ids is None:  # one row's record (before migration 0009)
            changes.append(RecordedChange(table, row_id, action, _loads(before), _loads(after)))
            continue
        ids = orjson.loads(row_ids)
        befores = orjson.loads(before) if before is not None else [None] * len(ids)
        afters = orjson.loads(after) if after is not None else [None] * len(ids)
        if not len(befores) == len(afters) == len(ids):
            raise ImportJobError(f"import {job_id}'s change journal of {table} is damaged")
        changes.extend(
            RecordedChange(table, i, action, b, a)
            for i, b, a in zip(ids, befores, afters, strict=True)
        )
    for recorded in changes:
        if (recorded.before is None and recorded.action != "create") or (
            recorded.after is None and recorded.action != "delete"
        ):
            raise ImportJobError(
                f"import {job_id}'s change journal lacks a side of {recorded.table} "
                f"{recorded.row_id} ({recorded.action})"
            )
    return changes


def _loads(text: str | None) -> dict[str, Any] | None:
    return None if text is None else orjson.loads(text)


def change_counts(conn: sa.Connection, job_id: str) -> dict[str, int]:
    """How many rows import `job_id` created, updated and deleted (by action)."""
    change = schema.import_change
    counted = conn.execute(
        sa.select(change.c.action, sa.func.sum(change.c.rowCount))
        .where(change.c.importJobId == job_id)
        .group_by(change.c.action)
    )
    return {action: int(total) for action, total in counted}
