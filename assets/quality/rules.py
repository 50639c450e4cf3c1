"""The data-quality rules for the app's tables, as code: what must hold before a user's data ships.

One list of rules per app table (`quality_rules`): ids unique and present, every reference
resolving to a row of the *same* user, no cycle in a goal tree, values in range, times that
make sense, text within limits, well-formed e-mail. Each rule names a great-expectations 1.x
expectation and the column it applies to; `assets.quality.suites` runs them, and the import
stager (`assets.imports.staging`) judges the same rules row by row.

Rules GX cannot say directly (a reference across tables, a cycle, "completedAt iff
isCompleted", "value <= maxValue") are computed here with pyarrow as a boolean column (the
`derive` of a rule), and GX checks that column. The columns hold no id or user text: GX
fingerprints and factorises every column of a frame, which for text costs more than the
rules themselves.

Pure: no Dagster, no great-expectations.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES

# A timestamp may run this far ahead of the checking clock (clock skew, time zones);
# anything later was "recorded in the future".
FUTURE_TOLERANCE = dt.timedelta(days=1)
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
    ("User", "firstName"): (0, 200),
    ("User", "lastName"): (0, 200),
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


def _status_known(table: str, statuses: Sequence[str]) -> Rule:
    return _column_rule(
        table,
        "status_known",
        f"status is one of {', '.join(statuses)}",
        "ExpectColumnValuesToBeInSet",
        "status",
        value_set=list(statuses),
    )


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
                _id_codes_of(table),
            ),
            Rule(
                table,
                "id_unique",
                "no two rows share an id",
                "ExpectColumnValuesToBeUnique",
                "id (code)",
                {},
                _id_codes_of(table),
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
        _status_known("WorkProject", WORK_PROJECT_STATUSES),
        _in_range("WorkProject", "budget", 0),
        _in_order("WorkProject", "starts_before_due", "startDate", "dueDate"),
        _in_order("WorkProject", "created_before_updated", "createdAt", "updatedAt"),
        _reference("WorkTask", "projectId", "WorkProject"),
        _status_known("WorkTask", WORK_TASK_STATUSES),
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


def _id_codes_of(table: str) -> Callable[[Tables], pa.Array]:
    """`derive` of the id rules: the id codes of `table` in the batch."""
    return lambda tables: id_codes(tables[table])


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
