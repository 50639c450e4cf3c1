"""A GDPR bundle's README.html: the human-readable index of everything in it.

Every category of data with its first rows, the progress charts, what was done with the
data (the audit log), the Art. 15 information (`assets.gdpr.texts`), what each file is,
completeness and how to check the bundle. Self-contained like report.html: no scripts, no
links out, the same Content-Security-Policy frame and the same chart macros (the template
is `assets/formats/page_templates/gdpr_readme.html.j2`, autoescaped). This module works out
what the page says; the template lays it out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import NamedTuple

import pyarrow as pa

from assets.formats.charts import (
    CompletionChart,
    ProgressChart,
    completion_by_module,
    completion_chart,
    goal_progress_charts,
    progress_by_goal,
)
from assets.formats.common import TABLE_NAMES, format_timestamp
from assets.formats.html_pages import render_page
from assets.gdpr.layout import CATEGORY_DESCRIPTIONS

README_ROWS_PER_TABLE = 10
README_AUDIT_ROWS = 200
README_GOAL_CHARTS = 6


def render_readme(
    prepared: Mapping[str, pa.Table],
    *,
    user_id: str,
    exported_at: dt.datetime,
    entries: list[dict],
    texts: Mapping,
    completeness: Mapping,
    descriptions: Mapping[str, str],
    sizes: Mapping[str, int],
    shown: Mapping[str, pa.Table] | None = None,
) -> bytes:
    """The human-readable index of the bundle: self-contained HTML, no scripts, no links out.

    `shown`: the tables whose first rows are shown, when not `prepared` itself: the same
    rows with timestamps already as export text (`csv_text_table`), which read faster."""
    user_rows = prepared["User"].to_pylist()
    user = user_rows[0] if user_rows else {}
    rows = {name: prepared[name].num_rows for name in TABLE_NAMES}
    goals = prepared["Goal"]
    completion: CompletionChart | None = None
    charts: list[ProgressChart] = []
    charted = 0
    if goals.num_rows:
        module_names = dict(
            zip(
                prepared["Module"]["id"].to_pylist(),
                prepared["Module"]["name"].to_pylist(),
                strict=True,
            )
        )
        completion = completion_chart(
            completion_by_module(
                module_names,
                zip(goals["moduleId"].to_pylist(), goals["isCompleted"].to_pylist(), strict=True),
            )
        )
        titles = dict(zip(goals["id"].to_pylist(), goals["title"].to_pylist(), strict=True))
        charts, charted = goal_progress_charts(
            progress_by_goal(prepared["Progress"]), titles, README_GOAL_CHARTS
        )
    return render_page(
        "gdpr_readme.html.j2",
        who=user.get("name") or user.get("email") or user_id,
        user_id=user_id,
        email=user.get("email"),
        when=exported_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        complete=completeness["complete"],
        entry_count=len(entries),
        recent_entries=[_audit_row(entry) for entry in reversed(entries[-README_AUDIT_ROWS:])],
        rows=rows,
        held=", ".join(f"{name} ({count})" for name, count in rows.items() if count) or "nothing",
        categories=CATEGORY_DESCRIPTIONS,
        has_goals=goals.num_rows > 0,
        has_progress=prepared["Progress"].num_rows > 0,
        completion=completion,
        charts=charts,
        charted=charted,
        first_rows=_first_rows(prepared, shown or prepared),
        texts=texts,
        files=sorted(descriptions.items()),
        sizes=sizes,
        counts=[*completeness["tables"].items(), *completeness["processing"].items()],
        not_included=completeness["notIncluded"],
    )


class _AuditRow(NamedTuple):
    when: str
    operation: str
    kind: str
    data: str
    records: object
    actor: str


def _audit_row(entry: Mapping) -> _AuditRow:
    """An audit-log entry as the README's table shows it (nothing for a missing value)."""
    return _AuditRow(
        entry["createdAt"],
        entry["operation"] or "",
        entry["operationType"] or "",
        ", ".join(entry["dataTypes"]),
        "" if entry["recordCount"] is None else entry["recordCount"],
        entry["actor"] or "",
    )


def _first_rows(
    prepared: Mapping[str, pa.Table], shown: Mapping[str, pa.Table]
) -> dict[str, tuple[list[str], list[tuple[str | None, ...]]]]:
    """Each non-empty table's columns (less userId) and first rows as text; None is empty."""
    first = {}
    for name in TABLE_NAMES:
        if prepared[name].num_rows == 0:
            continue
        columns = [c for c in prepared[name].column_names if c != "userId"]
        head = shown[name].slice(0, README_ROWS_PER_TABLE)
        cells = [
            values if pa.types.is_string(head.schema.field(c).type) else [_cell(v) for v in values]
            for c in columns
            for values in [head[c].to_pylist()]
        ]  # text columns (most, and timestamps already as text) are shown as they are
        first[name] = (columns, list(zip(*cells, strict=True)))
    return first


def _cell(value: object) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    return str(value)
