"""A pushed row judged as an import's row is: the data-quality rules of its table
(`assets.quality.rules`, row by row as `assets.imports.staging` judges them), references
to rows of the same user only, and no cycle in a goal tree. A refusal names the rule and
the field.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from assets.imports.staging import REFERENCES_FROM, failing_rows
from assets.quality.rules import TEXT_LIMITS, Rule, quality_rules
from assets.sync.rows import app_table
from resources import schema

# judged here against the database, not on the row alone
_NOT_ROW_LOCAL = ("id_present", "id_unique", "goal_tree_acyclic")
MAX_GOAL_DEPTH = 1000


class RowRefusedError(ValueError):
    """A pushed row breaks a rule; names the rule and the field."""

    def __init__(self, rule: str, field: str | None, message: str):
        super().__init__(f"{field or 'row'}: {message} ({rule})")
        self.rule, self.field, self.message = rule, field, message


class RowValidator:
    """The rules of every table, made once per push."""

    def __init__(self, now: dt.datetime | None = None):
        self.rules: dict[str, list[Rule]] = {}
        for rule in quality_rules(now):
            if rule.name in _NOT_ROW_LOCAL or rule.name.endswith("_resolves"):
                continue
            self.rules.setdefault(rule.table, []).append(rule)

    def check(
        self,
        conn: sa.Connection,
        table: str,
        row: dict[str, Any],
        owns: Callable[[str, str], bool],
        sent=(),
    ) -> None:
        """Refuse (RowRefusedError) a row that breaks a rule; `owns(table, id)` says whether
        a referenced row is the user's; `sent` are the fields the device sent, preferred
        when a rule names several."""
        t = app_table(table)
        for column in t.columns:
            if row.get(column.name) is None and not column.nullable:
                raise RowRefusedError("required", column.name, "required, but empty")
        arrow = schema.rows_to_arrow(t, [tuple(row[c.name] for c in t.columns)])
        tables = {table: arrow}
        for rule in self.rules.get(table, ()):
            values = rule.derive(tables) if rule.derive is not None else arrow[rule.column]
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            failing = failing_rows(rule, values)
            if failing is not None and failing[0].as_py():
                field = _field_of(rule, table, row, sent)
                raise RowRefusedError(rule.name, field, rule.description)
        for ref in REFERENCES_FROM.get(table, ()):
            value = row.get(ref.column)
            if value is not None and not owns(ref.target, value):
                raise RowRefusedError(
                    f"{ref.column}_resolves",
                    ref.column,
                    f"refers to {ref.target} {value}, which is not one of your rows",
                )
        if table == "Goal" and row.get("parentGoalId"):
            _no_cycle(conn, row["id"], row["parentGoalId"])


def _no_cycle(conn: sa.Connection, goal_id: str, parent_id: str) -> None:
    goal = schema.goal
    current: str | None = parent_id
    for _ in range(MAX_GOAL_DEPTH):
        if current is None:
            return
        if current == goal_id:
            raise RowRefusedError(
                "goal_tree_acyclic",
                "parentGoalId",
                "following parentGoalId up from the goal must reach a top-level goal (no cycle)",
            )
        current = conn.execute(sa.select(goal.c.parentGoalId).where(goal.c.id == current)).scalar()
    raise RowRefusedError("goal_tree_acyclic", "parentGoalId", "the goal tree is too deep")


def _field_of(rule: Rule, table: str, row: dict, sent) -> str | None:
    """The field a failing rule is about: its column, the text column out of its limits,
    or the first column its description names (one the device sent, if any)."""
    columns = [c.name for c in app_table(table).columns]
    base = rule.column.split(" (")[0]
    if base in columns:
        return base
    if rule.name == "text_within_limits":
        for (t, column), (low, high) in TEXT_LIMITS.items():
            value = row.get(column)
            if t == table and value is not None and not low <= len(value) <= high:
                return column
    named = [
        w for w in re.findall(r"[A-Za-z]+", rule.description + " " + rule.column) if w in columns
    ]
    preferred = [w for w in named if w in set(sent)]
    return (preferred or named or [None])[0]
