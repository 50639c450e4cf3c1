"""A GDPR bundle's README.html: the human-readable index of everything in it.

Every category of data with its first rows, the progress charts, what was done with the
data (the audit log), the Art. 15 information (`assets.gdpr.texts`), what each file is,
completeness and how to check the bundle. Self-contained like report.html: no scripts, no
links out, the same Content-Security-Policy frame and the same chart macros (the template
is `assets/formats/page_templates/gdpr_readme.html.j2`). This module works out what the
page says, and hands the template its text escaped (`html_texts`) and its tables' rows as
markup (`html_rows`: the row markup is here, every cell escaped); the template lays it out.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping

import pyarrow as pa
from markupsafe import Markup

from assets.formats.charts import (
    CompletionChart,
    ProgressChart,
    completion_by_module,
    completion_chart,
    distinct_goal_titles,
    goal_progress_charts,
    progress_by_goal,
)
from assets.formats.common import TABLE_NAMES, format_timestamp, full_name
from assets.formats.html_pages import html_rows, html_texts, render_page
from assets.gdpr.layout import CATEGORY_DESCRIPTIONS
from resources.schema import APP_ARROW_SCHEMAS

README_ROWS_PER_TABLE = 10
README_AUDIT_ROWS = 200
README_GOAL_CHARTS = 6

_CATEGORY_ROW = (
    '<tr><td>{}</td><td>{}</td><td class="num">{}</td>'
    '<td><a href="data/{}.csv">data/{}.csv</a></td></tr>\n'
)
_AUDIT_ROW = '<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>\n'  # when, operation, type, data types, records, asked by
_FILE_ROW = '<tr><td><code>{}</code></td><td>{}</td><td class="num">{}</td></tr>\n'
_COUNT_ROW = '<tr{}><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>\n'
_NOT_INCLUDED_ITEM = "<li><b>{}</b>: {}</li>\n"
_BAD = Markup(' class="bad"')
_EMPTY = Markup('<span class="note">(empty)</span>')


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
    user_rows = prepared["User"].select(["firstName", "lastName", "email"]).to_pylist()
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
        titles = distinct_goal_titles(goals)
        charts, charted = goal_progress_charts(
            progress_by_goal(prepared["Progress"]), titles, README_GOAL_CHARTS
        )
    recent = entries[-README_AUDIT_ROWS:]
    first_rows = _first_rows(prepared, shown or prepared)
    counts = [*completeness["tables"].items(), *completeness["processing"].items()]
    who, escaped_id, email = html_texts(
        [
            full_name(user.get("firstName"), user.get("lastName")) or user.get("email") or user_id,
            user_id,
            user.get("email") or "",
        ]
    )
    return render_page(
        "gdpr_readme.html.j2",
        who=who,
        user_id=escaped_id,
        email=email,
        when=exported_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        complete=completeness["complete"],
        entry_count=len(entries),
        audit_rows=html_rows(_AUDIT_ROW, map(_audit_row, reversed(recent))),
        audit_shown=len(recent),
        category_rows=html_rows(
            _CATEGORY_ROW,
            (
                (name, CATEGORY_DESCRIPTIONS[name], count, name, name)
                for name, count in rows.items()
            ),
        ),
        held=", ".join(f"{name} ({count})" for name, count in rows.items() if count) or "nothing",
        categories=[
            (name, CATEGORY_DESCRIPTIONS[name], count, first_rows.get(name))
            for name, count in rows.items()
        ],
        has_goals=goals.num_rows > 0,
        has_progress=prepared["Progress"].num_rows > 0,
        completion=completion,
        charts=charts,
        charted=charted,
        texts=_art15_texts(texts),
        file_rows=html_rows(
            _FILE_ROW,
            ((path, text, sizes.get(path, "")) for path, text in sorted(descriptions.items())),
        ),
        count_rows=html_rows(
            _COUNT_ROW,
            (
                (
                    "" if c["matches"] else _BAD,
                    name,
                    c["exported"],
                    "not counted" if c["live"] is None else c["live"],
                )
                for name, c in counts
            ),
        ),
        not_included=html_rows(
            _NOT_INCLUDED_ITEM,
            ((item["what"], item["why"]) for item in completeness["notIncluded"]),
        ),
    )


def _art15_texts(texts: Mapping) -> dict[str, Markup]:
    """The Art. 15 texts the page shows: the texts escaped (in one batch), each list of
    texts as its `<li>` items."""
    shown = {key: value for key, value in texts.items() if key != "notIncluded"}
    singles = [key for key, value in shown.items() if type(value) is str]
    escaped = dict(zip(singles, html_texts([shown[key] for key in singles]), strict=True))
    return {
        key: escaped[key] if key in escaped else html_rows("<li>{}</li>", zip(value))
        for key, value in shown.items()
    }


def _audit_row(entry: Mapping) -> tuple[object, ...]:
    """An audit-log entry's cells in the README's table (nothing for a missing value)."""
    return (
        entry["createdAt"],
        entry["operation"] or "",
        entry["operationType"] or "",
        ", ".join(entry["dataTypes"]),
        "" if entry["recordCount"] is None else entry["recordCount"],
        entry["actor"] or "",
    )


def _first_rows(
    prepared: Mapping[str, pa.Table], shown: Mapping[str, pa.Table]
) -> dict[str, tuple[Markup, Markup, int]]:
    """Each non-empty table's header, its first rows as table rows, and how many they are.

    The columns are the schema's, in its order (every prepared table has exactly them, and
    `shown` the same), less userId: asking a table for its column names or types costs
    more than its first rows' values."""
    first = {}
    for name in TABLE_NAMES:
        if prepared[name].num_rows == 0:
            continue
        header, row, positions = _table_layout(name)
        columns = shown[name].slice(0, README_ROWS_PER_TABLE).columns
        cells = [
            [v if type(v) is str or v is None else _cell(v) for v in columns[i].to_pylist()]
            for i in positions
        ]  # text columns (most, and timestamps already as text) are shown as they are
        body = html_rows(row, zip(*cells, strict=True), empty=_EMPTY)
        first[name] = (header, body, len(cells[0]))
    return first


@functools.cache
def _table_layout(name: str) -> tuple[Markup, str, tuple[int, ...]]:
    """A table's header row, row markup, and the positions of the columns they show (all
    but userId)."""
    schema = APP_ARROW_SCHEMAS[name]
    names = schema.names
    positions = tuple(i for i, c in enumerate(names) if c != "userId")
    header = html_rows("<th>{}</th>", ((names[i],) for i in positions))
    cells = "".join(f"<td{_cell_class(schema.field(i))}>{{}}</td>" for i in positions)
    return header, "<tr>" + cells + "</tr>\n", positions


def _cell_class(field: pa.Field) -> str:
    """Numbers, ids and times are one value each: they never wrap across lines (a wide
    table scrolls sideways instead), and numbers line up on the right."""
    t = field.type
    if pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_floating(t):
        return ' class="num"'
    if field.name == "id" or field.name.endswith("Id") or pa.types.is_temporal(t):
        return ' class="nowrap"'
    return ""


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return format_timestamp(value)
    return str(value)
