"""Data-quality suites for the app's tables: what must hold before a user's data ships.

An export that carries broken data is worse than none, so every batch is validated before
it is rendered. The suites are code (`quality_rules`), one list of rules per app table:
ids unique and present, every reference resolving to a row of the *same* user, no cycle in
a goal tree, values in range, times that make sense, text within limits, well-formed
e-mail. great-expectations 1.x is the engine: one validation per table per batch (never per
user), on a pandas frame built from the batch's Arrow tables.

Rules GX cannot say directly (a reference across tables, a cycle, "completedAt iff
isCompleted", "value <= maxValue") are computed here with pyarrow as a boolean column, and
GX checks that column; GX still counts and locates the offending rows. Rows are located by
their position, and ids and users are looked up in the Arrow table, so the frames handed
to GX hold no id or user text: GX fingerprints and factorises every column of a frame,
which for text costs more than the rules themselves.

The result names, for each rule, the table, the rule, how many rows fail, a few of their
ids and every user they belong to: a failing rule stops those users only.

Pure: no Dagster. great_expectations and pandas are imported when a suite runs.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import time
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES, table_or_empty

# A timestamp may run this far ahead of the checking clock (clock skew, time zones);
# anything later was "recorded in the future".
FUTURE_TOLERANCE = dt.timedelta(days=1)
EXAMPLE_IDS = 5
ROW_KEY_SEPARATOR = "\x1f"

WORK_PROJECT_STATUSES = ("planned", "active", "on_hold", "done")
WORK_TASK_STATUSES = ("todo", "doing", "done")
# Loose on purpose: the app's own validation is stricter; this catches what is plainly not
# an address (no @, spaces, no dot in the domain).
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"
KIND_PATTERN = r"^[a-z][a-z0-9_]*$"
# The longest Bible chapter (Psalm 119) has 176 verses; the longest book, 150 chapters.
MAX_CHAPTER, MAX_VERSE = 150, 176

# (table, column) -> (minimum, maximum) length in characters.
TEXT_LIMITS: dict[tuple[str, str], tuple[int, int]] = {
    ("User", "email"): (3, 254),
    ("User", "name"): (0, 200),
    ("Module", "kind"): (1, 40),
    ("Module", "name"): (1, 100),
    ("Goal", "title"): (1, 200),
    ("Goal", "description"): (0, 5000),
    ("Progress", "notes"): (0, 5000),
    ("Achievement", "kind"): (1, 40),
    ("Achievement", "title"): (1, 200),
    ("Achievement", "description"): (0, 5000),
    ("UserSetting", "key"): (1, 100),
    ("UserSetting", "value"): (0, 10000),
    ("BibleReadingPlan", "name"): (1, 200),
    ("BibleReadingPlan", "description"): (0, 5000),
    ("BibleReading", "book"): (1, 50),
    ("BibleStudyNote", "book"): (1, 50),
    ("BibleStudyNote", "title"): (0, 200),
    ("BibleStudyNote", "content"): (0, 20000),
    ("BibleStudyNote", "tags"): (0, 500),
    ("WorkProject", "name"): (1, 200),
    ("WorkProject", "description"): (0, 5000),
    ("WorkTask", "title"): (1, 200),
    ("WorkTask", "notes"): (0, 5000),
}

# Timestamps that record when something happened (not plans such as due dates).
RECORDED_AT: dict[str, tuple[str, ...]] = {
    "User": ("createdAt", "updatedAt"),
    "Module": ("createdAt",),
    "Goal": ("createdAt", "updatedAt", "completedAt"),
    "Progress": ("recordedAt",),
    "Achievement": ("earnedAt",),
    "UserSetting": ("updatedAt",),
    "BibleReadingPlan": ("createdAt",),
    "BibleReading": ("completedAt",),
    "BibleStudyNote": ("createdAt", "updatedAt"),
    "WorkProject": ("createdAt", "updatedAt"),
    "WorkTask": ("createdAt", "completedAt"),
}

Tables = Mapping[str, pa.Table]


def owner_column(table_name: str) -> str:
    return "id" if table_name == "User" else "userId"


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """One expectation on one table.

    `expectation` is a great-expectations 1.x expectation class name applied to `column`
    of the frame GX sees: a source column, or, when `derive` is set, the column `derive`
    computes from the batch's tables (named after the rule). `skip_when` names the
    extraction filter ("modules" or "dates") under which the rule cannot be judged: the
    filter may leave a reference's target out of the batch on purpose.
    """

    table: str
    name: str
    description: str
    expectation: str
    column: str
    kwargs: Mapping[str, object] = field(default_factory=dict)
    derive: Callable[[Tables], pa.Array | pa.ChunkedArray] | None = None
    skip_when: str | None = None


def _column_rule(table, name, description, expectation, column, **kwargs) -> Rule:
    return Rule(table, name, description, expectation, column, kwargs)


def _derived_ok(table, name, description, derive, skip_when=None) -> Rule:
    """A rule computed with pyarrow: `derive` gives True for every row that is fine."""
    return Rule(
        table,
        name,
        description,
        "ExpectColumnValuesToBeInSet",
        name,
        {"value_set": [True]},
        derive,
        skip_when,
    )


def _in_order(table: str, name: str, first: str, second: str, description: str = "") -> Rule:
    """`first` is not after (not more than) `second`, where both are set."""
    return _derived_ok(
        table,
        name,
        description or f"{first} is not after {second}",
        lambda tables: not_after(tables[table][first], tables[table][second]),
    )


def _in_range(table: str, column: str, low, high=None) -> Rule:
    if high is None:
        name = f"{column}_not_negative" if low == 0 else f"{column}_at_least_{low}"
        text = f"{column} is {low} or more"
    else:
        name, text = f"{column}_in_range", f"{column} is between {low} and {high}"
    if not pa.types.is_decimal(APP_ARROW_SCHEMAS[table].field(column).type):
        return _column_rule(
            table,
            name,
            text,
            "ExpectColumnValuesToBeBetween",
            column,
            min_value=low,
            max_value=high,
        )
    # GX compares floats; a decimal(12, 2) is exact enough in a float for a bound check.
    return Rule(
        table,
        name,
        text,
        "ExpectColumnValuesToBeBetween",
        f"{column} (as float)",
        {"min_value": low, "max_value": high},
        lambda tables: pc.cast(tables[table][column], pa.float64()),
    )


def _text_within_limits(table: str) -> Rule:
    limits = {c: TEXT_LIMITS[(t, c)] for (t, c) in TEXT_LIMITS if t == table}
    text = ", ".join(
        f"{c} {low}-{high}" if low else f"{c} at most {high}" for c, (low, high) in limits.items()
    )
    return _derived_ok(
        table,
        "text_within_limits",
        f"text lengths in characters: {text}",
        lambda tables: text_within_limits(tables[table], limits),
    )


def _recorded_not_in_future(table: str, now: dt.datetime) -> Rule:
    columns = RECORDED_AT[table]
    limit = now + FUTURE_TOLERANCE
    # One expectation on the row's latest timestamp instead of one per column: GX's cost
    # is per expectation, and the offending value still shows.
    return Rule(
        table,
        "recorded_not_in_future",
        f"{', '.join(columns)} at most {_duration(FUTURE_TOLERANCE)} after the check runs",
        "ExpectColumnValuesToBeBetween",
        "latest of " + ", ".join(columns),
        {"max_value": limit},
        lambda tables: latest_of(tables[table], columns),
    )


def _duration(delta: dt.timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} day{'s' if hours != 24 else ''}" if hours % 24 == 0 else f"{hours} h"


@functools.cache
def known_timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones() | {"UTC"}))


def _reference(table: str, column: str, target: str, skip_when: str | None = None) -> Rule:
    nullable = APP_ARROW_SCHEMAS[table].field(column).nullable
    target_text = f"a {target} row of the same user"
    text = f"{column} names {target_text}" + (" (or is empty)" if nullable else "")
    return _derived_ok(
        table,
        f"{column}_resolves",
        text,
        lambda tables: resolves_within_user(tables, table, column, target),
        skip_when,
    )


def quality_rules(now: dt.datetime | None = None) -> tuple[Rule, ...]:
    """Every rule of every app table: the expectation suites, as code."""
    now = now or dt.datetime.now(dt.UTC)
    rules: list[Rule] = []
    for table in APP_TABLE_NAMES:
        rules += [
            Rule(
                table,
                "id_present",
                "id is not empty",
                "ExpectColumnValuesToNotBeNull",
                "id (code)",
                {},
                lambda tables, _t=table: id_codes(tables[_t]),
            ),
            Rule(
                table,
                "id_unique",
                "no two rows share an id",
                "ExpectColumnValuesToBeUnique",
                "id (code)",
                {},
                lambda tables, _t=table: id_codes(tables[_t]),
            ),
        ]
        if table != "User":
            rules.append(
                _derived_ok(
                    table,
                    "userId_resolves",
                    "userId names a user of the batch",
                    lambda tables, _t=table: user_exists(tables, _t),
                )
            )
        if any(t == table for (t, _) in TEXT_LIMITS):
            rules.append(_text_within_limits(table))
        if table in RECORDED_AT:
            rules.append(_recorded_not_in_future(table, now))

    rules += [
        _column_rule(
            "User",
            "email_well_formed",
            "email looks like an address (name@domain.tld, no spaces)",
            "ExpectColumnValuesToMatchRegex",
            "email",
            regex=EMAIL_PATTERN,
        ),
        _column_rule(
            "User",
            "timezone_known",
            "timezone is an IANA time zone name (or empty)",
            "ExpectColumnValuesToBeInSet",
            "timezone",
            value_set=list(known_timezones()),
        ),
        _in_order("User", "created_before_updated", "createdAt", "updatedAt"),
        _column_rule(
            "Module",
            "kind_well_formed",
            "kind is a lower-case word (fitness, bible, work_projects ...)",
            "ExpectColumnValuesToMatchRegex",
            "kind",
            regex=KIND_PATTERN,
        ),
        _in_range("Goal", "priority", 1, 5),
        _in_range("Goal", "difficulty", 1, 5),
        _reference("Goal", "moduleId", "Module"),
        _reference("Goal", "parentGoalId", "Goal", skip_when="modules"),
        _derived_ok(
            "Goal",
            "goal_tree_acyclic",
            "following parentGoalId up from the goal reaches a top-level goal (no cycle)",
            goal_tree_reaches_root,
        ),
        _derived_ok(
            "Goal",
            "completedAt_iff_isCompleted",
            "completedAt is set exactly when isCompleted is true",
            lambda t: set_exactly_when(t["Goal"]["completedAt"], t["Goal"]["isCompleted"]),
        ),
        _in_order("Goal", "created_before_updated", "createdAt", "updatedAt"),
        _in_order("Goal", "created_before_completed", "createdAt", "completedAt"),
        _reference("Progress", "goalId", "Goal"),
        _in_range("Progress", "value", 0),
        _in_range("Progress", "maxValue", 0),
        _in_order(
            "Progress",
            "value_within_maxValue",
            "value",
            "maxValue",
            "value is not more than maxValue (when maxValue is set)",
        ),
        _reference("Achievement", "goalId", "Goal"),
        _column_rule(
            "Achievement",
            "kind_well_formed",
            "kind is a lower-case word (streak, goal_completed ...)",
            "ExpectColumnValuesToMatchRegex",
            "kind",
            regex=KIND_PATTERN,
        ),
        _in_range("Achievement", "points", 0),
        _column_rule(
            "UserSetting",
            "value_is_json",
            "value is valid JSON (or empty)",
            "ExpectColumnValuesToBeJsonParseable",
            "value",
        ),
        _in_order("BibleReadingPlan", "starts_before_end", "startDate", "endDate"),
        _reference("BibleReading", "planId", "BibleReadingPlan"),
        _in_range("BibleReading", "chapter", 1, MAX_CHAPTER),
        _in_range("BibleReading", "verseStart", 1, MAX_VERSE),
        _in_range("BibleReading", "verseEnd", 1, MAX_VERSE),
        _in_order("BibleReading", "verses_in_order", "verseStart", "verseEnd"),
        _reference("BibleStudyNote", "readingId", "BibleReading", skip_when="dates"),
        _in_range("BibleStudyNote", "chapter", 1, MAX_CHAPTER),
        _in_range("BibleStudyNote", "verse", 1, MAX_VERSE),
        _in_order("BibleStudyNote", "created_before_updated", "createdAt", "updatedAt"),
        _reference("WorkProject", "goalId", "Goal"),
        _column_rule(
            "WorkProject",
            "status_known",
            f"status is one of {', '.join(WORK_PROJECT_STATUSES)}",
            "ExpectColumnValuesToBeInSet",
            "status",
            value_set=list(WORK_PROJECT_STATUSES),
        ),
        _in_range("WorkProject", "budget", 0),
        _in_order("WorkProject", "starts_before_due", "startDate", "dueDate"),
        _in_order("WorkProject", "created_before_updated", "createdAt", "updatedAt"),
        _reference("WorkTask", "projectId", "WorkProject"),
        _column_rule(
            "WorkTask",
            "status_known",
            f"status is one of {', '.join(WORK_TASK_STATUSES)}",
            "ExpectColumnValuesToBeInSet",
            "status",
            value_set=list(WORK_TASK_STATUSES),
        ),
        _in_range("WorkTask", "priority", 1, 5),
        _in_range("WorkTask", "estimateHours", 0),
        _derived_ok(
            "WorkTask",
            "completedAt_iff_done",
            "completedAt is set exactly when status is done",
            lambda t: set_exactly_when(
                t["WorkTask"]["completedAt"], pc.equal(t["WorkTask"]["status"], "done")
            ),
        ),
        _in_order("WorkTask", "created_before_completed", "createdAt", "completedAt"),
    ]
    names = [(r.table, r.name) for r in rules]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise AssertionError(f"rule names must be unique per table: {sorted(duplicated)}")
    return tuple(rules)


# ---------------------------------------------------------------- derived columns


def id_codes(table: pa.Table) -> pa.Array:
    """Each row's id as a dictionary code: equal ids get equal codes, a null id a null.

    Uniqueness of the codes is uniqueness of the ids, asked of integers, which GX hashes
    and counts many times faster than text."""
    return pc.dictionary_encode(table["id"].combine_chunks()).indices


def user_exists(tables: Tables, table_name: str) -> pa.ChunkedArray:
    known = tables["User"]["id"].combine_chunks()
    return pc.fill_null(
        pc.is_in(tables[table_name]["userId"], value_set=known, skip_nulls=True), False
    )


def _user_keys(user_ids, ids) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(user_ids, ids, ROW_KEY_SEPARATOR)


def resolves_within_user(tables: Tables, table_name: str, column: str, target: str) -> pa.Array:
    """True where `column` is null or names a `target` row of the same user.

    Keyed by (userId, id), so a reference to another user's row fails even when that
    user is in the same batch."""
    table, target_table = tables[table_name], tables[target]
    wanted = _user_keys(table["userId"], table[column])
    present = _user_keys(target_table["userId"], target_table["id"]).combine_chunks()
    found = pc.is_in(wanted, value_set=present, skip_nulls=True)
    return pc.or_kleene(pc.is_null(table[column]), pc.fill_null(found, False))


def text_within_limits(table: pa.Table, limits: Mapping[str, tuple[int, int]]) -> pa.Array:
    """True where every text column's length (in characters) is within its limits."""
    ok = pa.array(np.ones(table.num_rows, dtype=bool))
    for column, (low, high) in limits.items():
        length = pc.utf8_length(table[column])
        fits = pc.and_(pc.greater_equal(length, low), pc.less_equal(length, high))
        ok = pc.and_(ok, pc.fill_null(fits, True))
    return ok


def latest_of(table: pa.Table, columns: Sequence[str]) -> pa.ChunkedArray:
    """Each row's latest timestamp among `columns` (nulls skipped)."""
    if len(columns) == 1:
        return table[columns[0]]
    kind = table.schema.field(columns[0]).type
    # pyarrow has no element-wise max of timestamps; their int64 ticks order the same way.
    ticks = [pc.cast(table[c], pa.int64()) for c in columns]
    return pc.cast(pc.max_element_wise(*ticks, skip_nulls=True), kind)


def not_after(earlier, later) -> pa.Array:
    """True where `earlier <= later`, or where either is null (nothing to compare)."""
    return pc.fill_null(pc.less_equal(earlier, later), True)


def set_exactly_when(value, flag) -> pa.Array:
    """True where `value` is set exactly when `flag` is true (a null flag counts as false)."""
    return pc.equal(pc.is_valid(value), pc.fill_null(flag, False))


def goal_tree_reaches_root(tables: Tables) -> np.ndarray:
    """True for every goal whose chain of parents ends at a top-level goal.

    Pointer doubling over parent indices: after k rounds each goal knows its 2^k-th
    ancestor, so log2(n) rounds decide every chain; a chain that never ends is a cycle (or
    leads into one). A parent that does not resolve counts as the end of the chain: the
    reference rule reports it."""
    goals = tables["Goal"]
    n = goals.num_rows
    if n == 0:
        return np.zeros(0, dtype=bool)
    keys = _user_keys(goals["userId"], goals["id"]).combine_chunks()
    parent_keys = _user_keys(goals["userId"], goals["parentGoalId"])
    parent = pc.fill_null(pc.index_in(parent_keys, value_set=keys, skip_nulls=True), -1)
    ancestor = parent.to_numpy().astype(np.int64)
    # Index n stands for "no parent" and is its own ancestor.
    ancestor = np.append(np.where(ancestor < 0, n, ancestor), n)
    for _ in range(max(1, int(n).bit_length())):
        ancestor = ancestor[ancestor]
    return ancestor[:n] == n


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class RuleResult:
    """What one rule found in one batch."""

    table: str
    rule: str
    description: str
    checked_rows: int
    unexpected_count: int
    example_ids: tuple[str, ...] = ()
    user_ids: frozenset[str] = frozenset()
    # user id -> (rows failing, up to EXAMPLE_IDS of their ids)
    rows_by_user: Mapping[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def passed(self) -> bool:
        return self.unexpected_count == 0

    @property
    def key(self) -> str:
        return f"{self.table}.{self.rule}"

    def summary(self) -> str:
        if self.skipped:
            return f"{self.key}: not checked ({self.skipped})"
        if self.passed:
            return f"{self.key}: ok ({self.checked_rows} rows)"
        return (
            f"{self.key}: {_rows(self.unexpected_count)} fail ({self.description}); "
            f"ids {', '.join(self.example_ids)}; users {len(self.user_ids)}"
        )

    def as_dict(self) -> dict:
        return {
            "table": self.table,
            "rule": self.rule,
            "description": self.description,
            "passed": self.passed,
            "checked_rows": self.checked_rows,
            "unexpected_count": self.unexpected_count,
            "example_ids": list(self.example_ids),
            "user_ids": sorted(self.user_ids),
            "skipped": self.skipped,
        }


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


@dataclass
class QualityReport:
    """The suites' results for one batch of users."""

    results: list[RuleResult]
    user_ids: frozenset[str]
    seconds: float = 0.0
    engine: str = ""

    @property
    def failures(self) -> list[RuleResult]:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def affected_user_ids(self) -> frozenset[str]:
        """Every user with at least one row that fails a rule: not to be exported."""
        return frozenset().union(*(r.user_ids for r in self.failures))

    @property
    def exportable_user_ids(self) -> frozenset[str]:
        return self.user_ids - self.affected_user_ids

    @property
    def blocks_batch(self) -> bool:
        """Nothing in the batch can be exported: every user fails some rule."""
        return bool(self.user_ids) and not self.exportable_user_ids

    def by_table(self) -> dict[str, list[RuleResult]]:
        grouped: dict[str, list[RuleResult]] = {name: [] for name in APP_TABLE_NAMES}
        for r in self.results:
            grouped.setdefault(r.table, []).append(r)
        return grouped

    def failures_of_user(self, user_id: str) -> list[RuleResult]:
        return [r for r in self.failures if user_id in r.user_ids]

    def user_message(self, user_id: str) -> str:
        """Why this user's export was stopped, for a support person to act on."""
        parts = []
        for r in self.failures_of_user(user_id):
            count, ids = r.rows_by_user.get(user_id, (0, ()))
            parts.append(f"{r.key} ({r.description}): {_rows(count)}, e.g. id {', '.join(ids)}")
        if not parts:
            return ""
        return (
            "not exported: the data failed quality checks; fix these rows in the app "
            "database and export again: " + "; ".join(parts)
        )

    def user_messages(self) -> dict[str, str]:
        return {uid: self.user_message(uid) for uid in sorted(self.affected_user_ids)}

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
            "users": len(self.user_ids),
            "affected_users": sorted(self.affected_user_ids),
            "rules": len(self.results),
            "failures": [r.as_dict() for r in self.failures],
        }


# ---------------------------------------------------------------- running the suites


class QualityEngineError(RuntimeError):
    """great-expectations could not evaluate a rule: a bug in the suite, not in the data."""


def run_quality_suites(
    tables: Tables,
    *,
    filters: Mapping | None = None,
    now: dt.datetime | None = None,
    rules: Sequence[Rule] | None = None,
) -> QualityReport:
    """Validate one batch's tables (app table name -> Arrow table, any number of users).

    `filters` is the extraction filter as a dict (`modules`, `since`, `until`): rules that
    a filter makes undecidable are reported as not checked. One GX validation per table
    that has rows.

    With the default rules and clock, a report made in this process in the last few
    minutes for the very same data (same bytes) is returned again: a Dagster run checks
    the batch in its asset check and again in the render step's gate."""
    started = time.perf_counter()
    reusable = rules is None and now is None
    if reusable:
        fingerprint = batch_fingerprint(tables, filters)
        recent = _RECENT_REPORTS.get(fingerprint)
        if recent is not None and time.monotonic() - recent[0] < REPORT_REUSE_SECONDS:
            return recent[1]
    rules = tuple(rules) if rules is not None else quality_rules(now)
    tables = {name: table_or_empty(tables, name) for name in APP_TABLE_NAMES}
    active_filters = _active_filters(filters)
    by_table: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.skip_when not in active_filters:
            by_table.setdefault(rule.table, []).append(rule)
    frames = {
        name: (_frame_for_gx(tables, name, table_rules), table_rules)
        for name, table_rules in by_table.items()
        if tables[name].num_rows
    }
    positions, engine = _validate_with_gx(frames) if frames else ({}, "great_expectations")

    results = []
    for rule in rules:
        table = tables[rule.table]
        if rule.skip_when in active_filters:
            reason = f"the export is filtered by {rule.skip_when}"
            results.append(
                RuleResult(rule.table, rule.name, rule.description, 0, 0, skipped=reason)
            )
            continue
        results.append(_rule_result(rule, table, positions.get((rule.table, rule.name), [])))
    users = frozenset(tables["User"]["id"].drop_null().to_pylist())
    report = QualityReport(results, users, time.perf_counter() - started, engine)
    if reusable:
        while len(_RECENT_REPORTS) >= 4:
            _RECENT_REPORTS.pop(next(iter(_RECENT_REPORTS)))
        _RECENT_REPORTS[fingerprint] = (time.monotonic(), report)
    return report


REPORT_REUSE_SECONDS = 600
_RECENT_REPORTS: dict[str, tuple[float, QualityReport]] = {}


def batch_fingerprint(tables: Tables, filters: Mapping | None = None) -> str:
    """A digest of the tables' exact bytes (and the filters): equal digests, equal data.

    Hashes the Arrow buffers in place (no copy), with each chunk's offset and length, so it
    costs a fraction of a validation."""
    digest = hashlib.sha256()
    digest.update(repr(sorted((filters or {}).items())).encode())
    for name in APP_TABLE_NAMES:
        table = tables.get(name)
        digest.update(f"|{name}|".encode())
        if table is None:
            continue
        digest.update(str(table.schema).encode())
        for column in table.columns:
            for chunk in column.chunks:
                digest.update(f"{chunk.offset}:{len(chunk)}".encode())
                for buffer in chunk.buffers():
                    digest.update(b"." if buffer is None else memoryview(buffer))
    return digest.hexdigest()


def _active_filters(filters: Mapping | None) -> set[str]:
    if not filters:
        return set()
    active = set()
    if filters.get("modules") is not None:
        active.add("modules")
    if filters.get("since") or filters.get("until"):
        active.add("dates")
    return active


def _frame_for_gx(tables: Tables, table_name: str, rules: Iterable[Rule]):
    """The pandas frame GX validates: the columns the rules need, derived ones computed.

    Integers go to GX as int64 or float64: for other integer widths its range check falls
    back to comparing value by value in Python."""
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for rule in rules:
        if rule.column in columns:
            continue
        if rule.derive is not None:
            values = rule.derive(tables)
            values = pa.array(values) if isinstance(values, np.ndarray) else values
        else:
            values = tables[table_name][rule.column]
        if pa.types.is_integer(values.type):
            values = pc.cast(values, pa.int64())
        columns[rule.column] = values
    return pa.table(columns).to_pandas()


def _validate_with_gx(frames: Mapping) -> tuple[dict[tuple[str, str], list[int]], str]:
    """Run each table's suite with GX; the row positions each rule found unexpected.

    Two passes per table: every rule with GX's cheapest result format (pass or fail), then
    the failing ones again asking for every unexpected row. GX's cost is mostly per
    expectation and per requested metric, and most batches pass."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # One asset for every table: the frame is a batch parameter, and each asset added
    # would re-save the context's whole configuration.
    whole_frame = (
        context.data_sources.add_pandas("goalport")
        .add_dataframe_asset("extracted_batch")
        .add_batch_definition_whole_dataframe("table")
    )

    def validate(batch, table_name: str, rules: Sequence[Rule], result_format: str) -> list:
        suite = gx.ExpectationSuite(
            name=f"goalport.{table_name}",
            expectations=[
                getattr(gxe, r.expectation)(column=r.column, meta={"rule": r.name}, **r.kwargs)
                for r in rules
            ],
        )
        outcome = batch.validate(suite, result_format={"result_format": result_format})
        for result in outcome.results:
            if result.exception_info.get("raised_exception"):
                raise QualityEngineError(
                    f"great-expectations could not evaluate {table_name}."
                    f"{result.expectation_config.meta['rule']}: "
                    f"{result.exception_info.get('exception_message')}"
                )
        return outcome.results

    found: dict[tuple[str, str], list[int]] = {}
    for table_name, (frame, rules) in frames.items():
        batch = whole_frame.get_batch(batch_parameters={"dataframe": frame})
        verdicts = validate(batch, table_name, rules, "BOOLEAN_ONLY")
        failing = {r.expectation_config.meta["rule"] for r in verdicts if not r.success}
        if not failing:
            continue
        detailed = validate(batch, table_name, [r for r in rules if r.name in failing], "COMPLETE")
        for result in detailed:
            found[(table_name, result.expectation_config.meta["rule"])] = [
                int(i) for i in result.result.get("unexpected_index_list") or []
            ]
    return found, f"great_expectations {gx.__version__}"


def _rule_result(rule: Rule, table: pa.Table, positions: list[int]) -> RuleResult:
    if not positions:
        return RuleResult(rule.table, rule.name, rule.description, table.num_rows, 0)
    taken = table.select(["id", owner_column(rule.table)]).take(pa.array(sorted(positions)))
    ids = [i if i is not None else "(no id)" for i in taken.column(0).to_pylist()]
    owners = [u if u is not None else "(no user)" for u in taken.column(1).to_pylist()]
    by_user: dict[str, list[str]] = {}
    for row_id, owner in zip(ids, owners, strict=True):
        by_user.setdefault(owner, []).append(row_id)
    return RuleResult(
        rule.table,
        rule.name,
        rule.description,
        table.num_rows,
        len(ids),
        tuple(ids[:EXAMPLE_IDS]),
        frozenset(by_user),
        {u: (len(rows), tuple(rows[:EXAMPLE_IDS])) for u, rows in by_user.items()},
    )


def merge_reports(reports: Sequence[QualityReport]) -> QualityReport:
    """One report for several batches (e.g. every user, checked a batch at a time)."""
    if len(reports) == 1:
        return reports[0]
    merged: dict[tuple[str, str], RuleResult] = {}
    for report in reports:
        for r in report.results:
            seen = merged.get((r.table, r.rule))
            if seen is None:
                merged[(r.table, r.rule)] = r
                continue
            merged[(r.table, r.rule)] = RuleResult(
                r.table,
                r.rule,
                r.description,
                seen.checked_rows + r.checked_rows,
                seen.unexpected_count + r.unexpected_count,
                (seen.example_ids + r.example_ids)[:EXAMPLE_IDS],
                seen.user_ids | r.user_ids,
                {**seen.rows_by_user, **r.rows_by_user},
                seen.skipped or r.skipped,
            )
    return QualityReport(
        list(merged.values()),
        frozenset().union(*(r.user_ids for r in reports)),
        sum(r.seconds for r in reports),
        next((r.engine for r in reports if r.engine), ""),
    )
