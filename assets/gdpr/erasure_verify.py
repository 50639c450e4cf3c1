"""The erasure's verification: is anything of these users left, in any table, in any storage
place, in the orchestrator's run history? Counts only, never values; plain Python.

Every text column of every table (found by reflection, so tables added later are covered)
is searched, which reads every table whole: so the users of one batch of erasures are
searched together, in one pass per table (a regular expression of all their ids on
PostgreSQL), and a column is searched user by user only where that pass found something.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from resources import schema
from resources.storage import ObjectStorage
from resources.storage_layout import USER_AREAS, user_prefixes

RUN_HISTORY_SEARCHED = "Dagster run history: searched"
# What the receipt says when no run history was given (the CLI without DAGSTER_HOME).
RUN_HISTORY_NOT_SEARCHED = "Dagster run history: not searched (no Dagster instance was given)"
_REGEX_SPECIAL = re.compile(r"([.^$|()\[\]{}*+?\\-])")


class RunHistory(Protocol):
    """An orchestrator's records of its runs (`assets.gdpr.defs.DagsterRunHistory`)."""

    def runs_mentioning(self, needle: str) -> list[str]: ...

    def forget(self, needle: str) -> int: ...


@dataclass(frozen=True)
class Subject:
    """One user to verify: their id, the other storages they may have files in, and the
    erasure request that still names them (left out of the search)."""

    user_id: str
    destinations: Sequence[str] = ()
    request_id: str | None = None


def contains(conn: sa.Connection, column: sa.ColumnElement, value: str) -> sa.ColumnElement:
    """`value` occurs in `column` (exactly, case-sensitive, no wildcards)."""
    if conn.dialect.name == "postgresql":
        return sa.func.strpos(column, value) > 0
    return sa.func.instr(column, value) > 0


def contains_any(
    conn: sa.Connection, column: sa.ColumnElement, values: Sequence[str]
) -> sa.ColumnElement:
    """Any of `values` occurs in `column`: one regular expression on PostgreSQL."""
    if conn.dialect.name == "postgresql" and len(values) > 1:
        pattern = "|".join(_REGEX_SPECIAL.sub(r"\\\1", v) for v in values)
        return column.op("~")(pattern)
    return sa.or_(*(contains(conn, column, v) for v in values))


def other_storages(storage: ObjectStorage, destinations: Sequence[str]) -> list[ObjectStorage]:
    """Every storage root in `destinations` other than the main one."""
    roots = dict.fromkeys(d for d in destinations if ObjectStorage(url=d).root != storage.root)
    return [ObjectStorage(url=url) for url in roots]


def _count_sums(conn, columns, condition_of) -> list:
    return [
        sa.func.coalesce(sa.func.sum(sa.case((condition_of(c), 1), else_=0)), 0) for c in columns
    ]


def _rows_found(engine: sa.Engine, subjects: Sequence[Subject]) -> tuple[dict, int, int]:
    """Per user id, where a table still names them; and the tables and columns searched."""
    user_ids = list(dict.fromkeys(s.user_id for s in subjects))
    excluded = [s.request_id for s in subjects if s.request_id]
    found: dict[str, list[dict]] = {u: [] for u in user_ids}
    columns_scanned = tables_scanned = 0
    with engine.connect() as conn:
        reflected = sa.MetaData()
        reflected.reflect(bind=conn)
        for table in reflected.sorted_tables:
            if table.name == "alembic_version":
                continue
            tables_scanned += 1
            text_columns = [c for c in table.columns if isinstance(c.type, sa.String | sa.JSON)]
            if not text_columns or not user_ids:
                continue
            columns_scanned += len(text_columns)
            where = []
            if table.name == schema.erasure_request.name and excluded:
                where.append(table.c.id.not_in(excluded))

            def as_text(c):
                return sa.cast(c, sa.Text)

            sums = _count_sums(
                conn, text_columns, lambda c: contains_any(conn, as_text(c), user_ids)
            )
            row = conn.execute(sa.select(*sums).select_from(table).where(*where)).one()
            for column, hits in zip(text_columns, row, strict=True):
                if not hits:
                    continue
                per_user = _count_sums(
                    conn, user_ids, lambda u, c=column: contains(conn, as_text(c), u)
                )
                counts = conn.execute(sa.select(*per_user).select_from(table).where(*where)).one()
                for user_id, n in zip(user_ids, counts, strict=True):
                    if n:
                        found[user_id].append(
                            {"table": table.name, "column": column.name, "rows": int(n)}
                        )
    return found, tables_scanned, columns_scanned


def verify_erased_many(
    engine: sa.Engine,
    storage: ObjectStorage,
    subjects: Sequence[Subject],
    *,
    run_history: RunHistory | None = None,
) -> list[dict]:
    """One verification per subject, in their order (see `verify_erased`)."""
    found, tables_scanned, columns_scanned = _rows_found(engine, subjects)
    results = []
    for subject in subjects:
        prefixes = user_prefixes(subject.user_id)
        others = other_storages(storage, subject.destinations)
        objects = sum(len(storage.list(p)) for p in prefixes.values())
        objects += sum(len(place.list(p)) for place in others for p in prefixes.values())
        runs = len(run_history.runs_mentioning(subject.user_id)) if run_history else 0
        rows = found[subject.user_id]
        results.append(
            {
                "passed": not rows and objects == 0 and runs == 0,
                "searched": [
                    f"database: {columns_scanned} text columns of {tables_scanned} tables",
                    f"main storage: {len(USER_AREAS)} folders ({', '.join(USER_AREAS)})",
                    "other storages (backup destinations, --out and out_url copies): "
                    f"{len(others)}, {len(others) * len(USER_AREAS)} folders",
                    RUN_HISTORY_SEARCHED if run_history is not None else RUN_HISTORY_NOT_SEARCHED,
                ],
                "runHistorySearched": run_history is not None,
                "runsFound": runs,
                "tablesScanned": tables_scanned,
                "textColumnsScanned": columns_scanned,
                "rowsFound": rows,
                "storagePrefixesChecked": len(USER_AREAS) * (1 + len(others)),
                "otherStoragesChecked": len(others),
                "objectsFound": objects,
            }
        )
    return results


def verify_erased(
    engine: sa.Engine,
    storage: ObjectStorage,
    user_id: str,
    *,
    destinations: Sequence[str] = (),
    exclude_request_id: str | None = None,
    run_history: RunHistory | None = None,
) -> dict:
    """Search every text column of every table for `user_id`, list their folders in the main
    storage and below every other storage root in `destinations`, and search the
    `run_history` when given.

    Returns counts only (never values): tables and columns scanned, where something was
    found, how many objects and runs remain, what was searched (`searched`, in words), and
    `passed`. `exclude_request_id` leaves out the request being executed (it names the
    user until it completes).
    """
    subject = Subject(user_id, tuple(destinations), exclude_request_id)
    return verify_erased_many(engine, storage, [subject], run_history=run_history)[0]
