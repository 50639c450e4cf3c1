"""The erasure's verification: is anything of these users left, in any table, in any storage
place, in the orchestrator's run history? Counts only, never values; plain Python.

Every text column of every table (found by reflection, so tables added later are covered)
is searched, which reads every table whole: so the users of one batch of erasures are
searched together, in one pass per table, and a column is searched user by user only where
that pass found something. On PostgreSQL the pass streams the columns into Arrow (ADBC's
binary COPY) and matches one regular expression of all the ids (RE2: linear in the text,
whatever the number of ids); PostgreSQL's own regular expressions and one `strpos` per id
were measured 50x and 2x slower for a batch of 50 (bench/erasure_bench.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from resources import schema
from resources.audit import subject_ref
from resources.destinations.storage import place_opener
from resources.storage import ObjectStorage
from resources.storage_layout import USER_AREAS, user_prefixes

RUN_HISTORY_SEARCHED = "Dagster run history: searched"
# What the receipt says when no run history was given (the CLI without DAGSTER_HOME).
RUN_HISTORY_NOT_SEARCHED = "Dagster run history: not searched (no Dagster instance was given)"
# From this many users on, one Arrow pass beats one PostgreSQL `strpos` scan per user (a
# single user: 2.8 s against 8 s on the 20,000-user bench data set; 50 erased users: 9.6 s
# against 50 x 2.8 s).
ARROW_SCAN_FROM = 4
_REGEX_SPECIAL = re.compile(r"([.^$|()\[\]{}*+?\\-])")


class RecordsSweep(Protocol):
    """What a sweep of the orchestrator's records searched and deleted (counts only)."""

    def as_receipt(self) -> dict[str, Any]: ...


class RunHistory(Protocol):
    """An orchestrator's records of its runs (`assets.gdpr.defs.DagsterRunHistory`)."""

    def remember(self, user_id: str, run_ids: Iterable[str] = ()) -> list[str]: ...

    def runs_mentioning(self, needle: str) -> list[str]: ...

    def sweep(self, user_id: str) -> RecordsSweep: ...


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


def any_of_pattern(values: Sequence[str]) -> str:
    """A regular expression (RE2) matching any of `values` literally."""
    return "|".join(_REGEX_SPECIAL.sub(r"\\\1", v) for v in values)


def other_storages(
    storage: ObjectStorage,
    destinations: Sequence[str],
    open_place: Callable[[str], ObjectStorage] = lambda url: ObjectStorage(url=url),
) -> list[ObjectStorage]:
    """Every storage root in `destinations` other than the main one, opened by `open_place`
    (a user's destination with their credentials: `resources.destinations.storage`)."""
    roots = dict.fromkeys(d for d in destinations if ObjectStorage(url=d).root != storage.root)
    return [open_place(url) for url in roots]


def _as_text(column: sa.ColumnElement) -> sa.ColumnElement:
    return sa.cast(column, sa.Text)


def _count_sums(items, condition_of) -> list:
    return [sa.func.coalesce(sa.func.sum(sa.case((condition_of(i), 1), else_=0)), 0) for i in items]


class _ArrowScanner:
    """Streams a table's text columns from PostgreSQL into Arrow and matches them there."""

    def __init__(self, url: sa.URL):
        import adbc_driver_postgresql.dbapi as adbc  # ~0.3 s to import: only when verifying

        libpq_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection = adbc.connect(libpq_url)
        self._dialect = sa.dialects.postgresql.dialect()

    def columns_matching(self, table, columns, where, values: Sequence[str]) -> set[str]:
        import pyarrow.compute as pc

        query = sa.select(*(_as_text(c).label(c.name) for c in columns)).where(*where)
        sql = str(query.compile(dialect=self._dialect, compile_kwargs={"literal_binds": True}))
        pattern = any_of_pattern(values)
        hit: set[str] = set()
        with self._connection.cursor() as cursor:
            cursor.execute(sql)
            for batch in cursor.fetch_record_batch():
                for column in columns:
                    if column.name in hit:
                        continue
                    matches = pc.match_substring_regex(batch.column(column.name), pattern)
                    if pc.any(matches).as_py():
                        hit.add(column.name)
        return hit

    def close(self) -> None:
        self._connection.close()


def _columns_matching_sql(conn, table, columns, where, values: Sequence[str]) -> set[str]:
    def any_value(column):
        return sa.or_(*(contains(conn, _as_text(column), v) for v in values))

    row = conn.execute(sa.select(*_count_sums(columns, any_value)).where(*where)).one()
    return {c.name for c, n in zip(columns, row, strict=True) if n}


def _rows_found(engine: sa.Engine, subjects: Sequence[Subject]) -> tuple[dict, int, int]:
    """Per user id, where a table still names them; and the tables and columns searched."""
    user_ids = list(dict.fromkeys(s.user_id for s in subjects))
    excluded = [s.request_id for s in subjects if s.request_id]
    found: dict[str, list[dict]] = {u: [] for u in user_ids}
    columns_scanned = tables_scanned = 0
    arrow = engine.dialect.name == "postgresql" and len(user_ids) >= ARROW_SCAN_FROM
    scanner = _ArrowScanner(engine.url) if arrow else None
    try:
        with engine.connect() as conn:
            reflected = sa.MetaData()
            reflected.reflect(bind=conn)
            for table in reflected.sorted_tables:
                if table.name == "alembic_version":
                    continue
                tables_scanned += 1
                columns = [c for c in table.columns if isinstance(c.type, sa.String | sa.JSON)]
                if not columns or not user_ids:
                    continue
                columns_scanned += len(columns)
                where = []
                if table.name == schema.erasure_request.name and excluded:
                    where.append(table.c.id.not_in(excluded))
                if scanner is not None:
                    hit = scanner.columns_matching(table, columns, where, user_ids)
                else:
                    hit = _columns_matching_sql(conn, table, columns, where, user_ids)
                for column in (c for c in columns if c.name in hit):  # rare: who, how many
                    per_user = _count_sums(
                        user_ids, lambda u, c=column: contains(conn, _as_text(c), u)
                    )
                    counts = conn.execute(sa.select(*per_user).where(*where)).one()
                    for user_id, n in zip(user_ids, counts, strict=True):
                        if n:
                            found[user_id].append(
                                {"table": table.name, "column": column.name, "rows": int(n)}
                            )
    finally:
        if scanner is not None:
            scanner.close()
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
        opener = place_opener(engine, subject_ref(subject.user_id))
        others = other_storages(storage, subject.destinations, opener)
        # temporary files of interrupted writes and unfinished uploads count: they hold bytes
        objects = sum(len(storage.list_including_unfinished(p)) for p in prefixes.values())
        objects += sum(
            len(place.list_including_unfinished(p)) for place in others for p in prefixes.values()
        )
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
    storage and below every other storage root in `destinations` (temporary files of
    interrupted writes and unfinished uploads included), and search the
    `run_history` when given.

    Returns counts only (never values): tables and columns scanned, where something was
    found, how many objects and runs remain, what was searched (`searched`, in words), and
    `passed`. `exclude_request_id` leaves out the request being executed (it names the
    user until it completes).
    """
    subject = Subject(user_id, tuple(destinations), exclude_request_id)
    return verify_erased_many(engine, storage, [subject], run_history=run_history)[0]
