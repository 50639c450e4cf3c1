"""`report.html`: one user's goals and progress as a page that opens anywhere, offline.

The page is self-contained by construction: CSS and SVG charts are inline, there are no
scripts, no fonts, no images by URL and no links, and a Content-Security-Policy forbids the
browser from fetching anything should a future edit slip one in. It shows the user's goals
(as a tree), completion by module, and progress over time for each goal that has any.

The markup is the template `page_templates/report.html.j2`; this module works out what the
page says, and `assets.formats.charts` what its charts draw. User text reaches the template
escaped (`html_texts`), the goal and achievement tables as rows of markup (`html_rows`: the
row markup is here, every cell escaped).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping

import pyarrow as pa
from markupsafe import Markup

from assets.formats.charts import (
    ProgressSeries,
    completion_by_module,
    completion_chart,
    distinct_goal_titles,
    format_exact_number,
    goal_progress_charts,
    progress_by_goal,
)
from assets.formats.common import ExportStamp, export_renderer, full_name
from assets.formats.html_pages import html_rows, html_texts, render_page

# Enough charts to see every trend without making heavy users' pages huge.
MAX_GOAL_CHARTS = 60
MAX_ACHIEVEMENTS_LISTED = 50

_GOAL_ROW = (
    '<tr><td{}>{}</td><td>{}</td><td class="num">{}</td><td>{}</td><td>{}</td>'
    '<td class="num">{}</td><td class="num">{}</td></tr>\n'
)  # indent, title, module, priority, target, status, entries, latest
_ACHIEVEMENT_ROW = '<tr><td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>\n'
_DONE = Markup('<span class="done">done</span>')


@export_renderer
def render_report_html(prepared: dict[str, pa.Table], stamp: ExportStamp) -> bytes:
    """The user's report page as UTF-8 HTML bytes."""
    user_id, exported_at, filters = stamp.user_id, stamp.exported_at, stamp.filters
    user = (prepared["User"].select(["firstName", "lastName", "email"]).to_pylist() or [{}])[0]
    modules = prepared["Module"].to_pylist()
    goals = prepared["Goal"].to_pylist()
    progress = progress_by_goal(prepared["Progress"])
    achievements = sorted(
        prepared["Achievement"].to_pylist(), key=lambda a: a["earnedAt"], reverse=True
    )
    module_names = {m["id"]: m["name"] for m in modules}
    titles = distinct_goal_titles(prepared["Goal"])
    charts, charted = goal_progress_charts(progress, titles, MAX_GOAL_CHARTS)
    by_module = completion_by_module(
        module_names, ((g["moduleId"], g["isCompleted"]) for g in goals)
    )
    name, email, selection = html_texts(
        [
            full_name(user.get("firstName"), user.get("lastName")) or user.get("email") or user_id,
            user.get("email") or "",
            _describe_filters(filters or {}),
        ]
    )
    return render_page(
        "report.html.j2",
        name=name,
        exported=exported_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        email=email,
        selection=selection,
        cards=_summary_cards(goals, progress, achievements, modules),
        completion=completion_chart(by_module) if by_module else None,
        charts=charts,
        charted=charted,
        goal_rows=html_rows(_GOAL_ROW, _goal_rows(goals, module_names, progress)),
        achievement_rows=html_rows(
            _ACHIEVEMENT_ROW,
            (
                (a["title"], a["kind"], a["points"], f"{a['earnedAt']:%Y-%m-%d}")
                for a in achievements[:MAX_ACHIEVEMENTS_LISTED]
            ),
        ),
        more_achievements=max(len(achievements) - MAX_ACHIEVEMENTS_LISTED, 0),
    )


def _describe_filters(filters: dict) -> str:
    described = []
    if filters.get("modules"):
        described.append("modules " + ", ".join(filters["modules"]))
    if filters.get("since"):
        described.append(f"activity from {filters['since']}")
    if filters.get("until"):
        described.append(f"activity until {filters['until']}")
    return "; ".join(described)


def _summary_cards(
    goals: list[dict],
    progress: Mapping[str, ProgressSeries],
    achievements: list[dict],
    modules: list[dict],
) -> list[tuple[str, str]]:
    completed = sum(1 for g in goals if g["isCompleted"])
    share = f"{completed / len(goals):.0%}" if goals else "-"
    entries = sum(len(series) for series in progress.values())
    points = sum(a["points"] for a in achievements)
    return [
        (f"{len(goals)}", "goals"),
        (f"{completed} ({share})", "completed"),
        (f"{entries}", "progress entries"),
        (f"{len(achievements)}", f"achievements, {points} points"),
        (f"{len(modules)}", "modules"),
    ]


def _goal_rows(
    goals: list[dict],
    module_names: Mapping[str | None, str],
    progress: Mapping[str, ProgressSeries],
) -> list[tuple[object, ...]]:
    """The goal table's cells (`_GOAL_ROW`), parent-first, sub-goals indented, with the
    latest value against the target."""
    rows: list[tuple[object, ...]] = []
    for goal, depth in _tree_order(goals):
        series = progress.get(goal["id"])
        entries = len(series) if series is not None else 0
        latest = ""
        if series is not None and entries:
            value, target = float(series.value[-1]), float(series.max_value[-1])
            latest = format_exact_number(value)
            if target == target and target:  # not NaN, not zero
                latest += f" / {format_exact_number(target)} ({value / target:.0%})"
        rows.append(
            (
                _indent(depth),
                goal["title"],
                module_names.get(goal["moduleId"], ""),
                goal["priority"],
                goal["targetDate"] or "",
                _DONE if goal["isCompleted"] else "open",
                entries,
                latest,
            )
        )
    return rows


def _indent(depth: int) -> Markup | str:
    return Markup(f' style="padding-left:{10 + 18 * depth}px"') if depth else ""


def _tree_order(goals: list[dict]) -> list[tuple[dict, int]]:
    """Goals parent-first with their depth; orphans (parent filtered out) are roots."""
    ids = {g["id"] for g in goals}
    children: dict[str | None, list[dict]] = defaultdict(list)
    for goal in goals:
        parent = goal["parentGoalId"] if goal["parentGoalId"] in ids else None
        children[parent].append(goal)
    for siblings in children.values():
        siblings.sort(key=lambda g: (g["createdAt"], g["id"]))
    ordered: list[tuple[dict, int]] = []
    stack = [(g, 0) for g in reversed(children[None])]
    seen: set[str] = set()
    while stack:
        goal, depth = stack.pop()
        if goal["id"] in seen:
            continue
        seen.add(goal["id"])
        ordered.append((goal, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(goal["id"], [])))
    # A cycle in parentGoalId would hide goals from the walk: list them at the end.
    ordered.extend((g, 0) for g in goals if g["id"] not in seen)
    return ordered
