"""`report.html`: one user's goals and progress as a page that opens anywhere, offline.

The page is self-contained by construction: CSS and SVG charts are inline, there are no
scripts, no fonts, no images by URL and no links, and a Content-Security-Policy forbids the
browser from fetching anything should a future edit slip one in. It shows the user's goals
(as a tree), completion by module, and progress over time for each goal that has any.

Every piece of user text goes through `html.escape`; charts are drawn from numbers only.
"""

from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from assets.formats.common import prepare_export_tables

# Enough charts and points to see every trend without making heavy users' pages huge.
MAX_GOAL_CHARTS = 60
MAX_POINTS_PER_CHART = 240
MAX_ACHIEVEMENTS_LISTED = 50

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
:root { color-scheme: light; --ink:#1f2933; --muted:#616e7c; --line:#d9e2ec; --accent:#2f6fde;
  --done:#2f9e6b; --open:#cbd2d9; --bg:#f7f9fb; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1060px; margin: 0 auto; padding: 28px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 12px; border-bottom: 1px solid var(--line); padding-bottom: 6px; }
.meta { color: var(--muted); margin: 0; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin-top:20px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 16px; min-width:150px; }
.card b { display:block; font-size:24px; }
.card span { color:var(--muted); font-size:13px; }
table { width:100%; border-collapse:collapse; background:#fff; border:1px solid var(--line); }
th, td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#eef2f6; font-weight:600; font-size:13px; }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
.done { color: var(--done); font-weight:600; }
.charts { display:grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap:14px; }
figure { margin:0; background:#fff; border:1px solid var(--line); border-radius:8px; padding:10px 12px; }
figcaption { font-size:14px; font-weight:600; margin-bottom:4px; overflow-wrap:anywhere; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
.note { color: var(--muted); font-size: 13px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


@dataclass(frozen=True)
class _Series:
    """One goal's progress in time order: parallel arrays (NaN where maxValue is null)."""

    at: np.ndarray  # int64 microseconds since the epoch, UTC
    value: np.ndarray  # float64
    max_value: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.at)


def render_report_html(
    tables: Mapping[str, pa.Table],
    *,
    user_id: str,
    exported_at: dt.datetime,
    filters: dict | None = None,
) -> bytes:
    """The user's report page as UTF-8 HTML bytes (same signature as the other renderers)."""
    prepared = prepare_export_tables(tables, user_id=user_id)
    user = (prepared["User"].to_pylist() or [{"id": user_id, "name": None, "email": ""}])[0]
    modules = prepared["Module"].to_pylist()
    goals = prepared["Goal"].to_pylist()
    progress = _progress_by_goal(prepared["Progress"])
    achievements = sorted(
        prepared["Achievement"].to_pylist(), key=lambda a: a["earnedAt"], reverse=True
    )

    display_name = user.get("name") or user.get("email") or user_id
    completed = sum(1 for g in goals if g["isCompleted"])
    sections = [
        _header(display_name, user, exported_at, filters),
        _summary_cards(goals, completed, progress, achievements, modules),
        _module_section(modules, goals),
        _progress_section(goals, progress),
        _goal_table(goals, modules, progress),
        _achievement_section(achievements),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Goal report: {_e(display_name)}</title>\n<style>{_STYLE}</style>\n"
        "</head>\n<body>\n<main>\n"
        + "\n".join(sections)
        + "\n<footer>Made by goalport from your data export. This page is self-contained: "
        "it loads nothing from the network and works offline.</footer>\n"
        "</main>\n</body>\n</html>\n"
    )
    return page.encode("utf-8")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _header(name: str, user: dict, exported_at: dt.datetime, filters: dict | None) -> str:
    when = exported_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>Goal report: {_e(name)}</h1>", f'<p class="meta">Exported {_e(when)}']
    if user.get("email"):
        parts.append(f" for {_e(user['email'])}")
    parts.append("</p>")
    chosen = _describe_filters(filters or {})
    if chosen:
        parts.append(f'<p class="meta">Selection: {_e(chosen)}</p>')
    return "".join(parts)


def _describe_filters(filters: dict) -> str:
    described = []
    if filters.get("modules"):
        described.append("modules " + ", ".join(filters["modules"]))
    if filters.get("since"):
        described.append(f"activity from {filters['since']}")
    if filters.get("until"):
        described.append(f"activity until {filters['until']}")
    return "; ".join(described)


def _summary_cards(goals, completed, progress, achievements, modules) -> str:
    share = f"{completed / len(goals):.0%}" if goals else "-"
    entries = sum(len(series) for series in progress.values())
    points = sum(a["points"] for a in achievements)
    cards = [
        (f"{len(goals)}", "goals"),
        (f"{completed} ({share})", "completed"),
        (f"{entries}", "progress entries"),
        (f"{len(achievements)}", f"achievements, {points} points"),
        (f"{len(modules)}", "modules"),
    ]
    inner = "".join(f'<div class="card"><b>{_e(v)}</b><span>{_e(k)}</span></div>' for v, k in cards)
    return f'<section class="cards">{inner}</section>'


def _module_section(modules: list[dict], goals: list[dict]) -> str:
    names = {m["id"]: m["name"] for m in modules}
    totals: dict[str, list[int]] = {}
    for goal in goals:
        label = names.get(goal["moduleId"], "No module")
        counts = totals.setdefault(label, [0, 0])
        counts[0] += 1
        counts[1] += 1 if goal["isCompleted"] else 0
    body = "<h2>Completion by module</h2>"
    if not totals:
        return body + '<p class="note">No goals in this export.</p>'
    rows = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
    return body + completion_bar_chart([(label, t, d) for label, (t, d) in rows])


def completion_bar_chart(rows: Sequence[tuple[str, int, int]]) -> str:
    """Horizontal bars, one per (label, total, done): the done share filled in."""
    bar_height, gap, label_width, bar_width = 22, 10, 210, 560
    height = len(rows) * (bar_height + gap) + gap
    width = label_width + bar_width + 110
    most = max(total for _, total, _ in rows) or 1
    parts = [
        f'<svg role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'preserveAspectRatio="xMinYMin meet" aria-label="Completed goals by module">'
        "<title>Completed goals by module</title>"
    ]
    for i, (label, total, done) in enumerate(rows):
        y = gap + i * (bar_height + gap)
        full = bar_width * total / most
        filled = bar_width * done / most
        share = f"{done / total:.0%}" if total else "-"
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end">{_e(_clip(label, 30))}</text>'
            f'<rect x="{label_width}" y="{y}" width="{full:.1f}" height="{bar_height}" '
            f'rx="3" fill="#cbd2d9"/>'
            f'<rect x="{label_width}" y="{y}" width="{filled:.1f}" height="{bar_height}" '
            f'rx="3" fill="#2f9e6b"/>'
            f'<text x="{label_width + full + 8:.1f}" y="{y + 15}">{done}/{total} ({share})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _progress_by_goal(table: pa.Table) -> dict[str, _Series]:
    """Each goal's entries in time order (numbers as floats: they only draw charts)."""
    if table.num_rows == 0:
        return {}
    ordered = table.select(["goalId", "recordedAt", "value", "maxValue"]).sort_by(
        [("goalId", "ascending"), ("recordedAt", "ascending")]
    )
    # Python datetimes and Decimals cost microseconds each: convert whole columns instead,
    # and slice per goal at the boundaries of the sorted goal ids.
    goal_ids = ordered["goalId"].to_numpy(zero_copy_only=False)
    micros = ordered["recordedAt"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    values = ordered["value"].cast(pa.float64()).to_numpy(zero_copy_only=False)
    max_values = ordered["maxValue"].cast(pa.float64()).to_numpy(zero_copy_only=False)
    starts = np.concatenate(([0], np.flatnonzero(goal_ids[1:] != goal_ids[:-1]) + 1))
    ends = np.concatenate((starts[1:], [len(goal_ids)]))
    return {
        str(goal_ids[start]): _Series(micros[start:end], values[start:end], max_values[start:end])
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    }


def _progress_section(goals: list[dict], progress: dict[str, _Series]) -> str:
    body = "<h2>Progress over time</h2>"
    titles = {g["id"]: g["title"] for g in goals}
    figures, charted = goal_chart_figures(progress, titles, MAX_GOAL_CHARTS)
    if not charted:
        return body + '<p class="note">No progress recorded in this export.</p>'
    note = ""
    if charted > MAX_GOAL_CHARTS:
        note = (
            f'<p class="note">Showing the {MAX_GOAL_CHARTS} goals with the most entries; '
            f"{charted - MAX_GOAL_CHARTS} more goals have progress, all of it in the "
            "data files of this export.</p>"
        )
    return body + note + f'<div class="charts">{figures}</div>'


def goal_chart_figures(
    series: Mapping[str, _Series], titles: Mapping[str, str], limit: int
) -> tuple[str, int]:
    """A figure with a progress chart for each of the `limit` goals with the most entries
    (then by title and id), and how many goals have progress to chart."""
    charted = sorted(
        (g for g in series if g in titles), key=lambda g: (-len(series[g]), titles[g], g)
    )
    figures = "".join(
        f"<figure><figcaption>{_e(titles[g])}</figcaption>"
        f"{progress_line_chart(series[g], titles[g])}"
        f'<p class="note">{len(series[g])} entries</p></figure>'
        for g in charted[:limit]
    )
    return figures, len(charted)


def progress_line_chart(series: _Series, title: str) -> str:
    """Values over time as an SVG line; the target (maxValue) as a dashed line if constant."""
    width, height, left, right, top, bottom = 320, 150, 46, 10, 10, 24
    shown = _thin_indices(len(series), MAX_POINTS_PER_CHART)
    at = series.at[shown]
    values = series.value[shown]
    start, end = int(series.at[0]), int(series.at[-1])
    targets = series.max_value[~np.isnan(series.max_value)]
    top_value = float(max(series.value.max(), targets.max() if len(targets) else 0.0, 0.0))
    low_value = float(min(series.value.min(), 0.0))  # progress can go below zero (weight)
    if top_value == low_value:
        top_value = low_value + 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    if end == start:
        xs = np.full(len(at), left + plot_w / 2)
    else:
        xs = left + plot_w * (at - start) / (end - start)
    ys = top + plot_h * (top_value - values) / (top_value - low_value)

    parts = [
        f'<svg role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'aria-label="Progress of {_e(title)}"><title>Progress of {_e(title)}</title>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="#9aa5b1"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#9aa5b1"/>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end">{_number(top_value)}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">{_number(low_value)}</text>',
        f'<text x="{left}" y="{height - 6}">{_day(start)}</text>',
        f'<text x="{width - right}" y="{height - 6}" text-anchor="end">{_day(end)}</text>',
    ]
    if len(targets) and float(targets.min()) == float(targets.max()):
        ty = top + plot_h * (top_value - float(targets[0])) / (top_value - low_value)
        parts.append(
            f'<line x1="{left}" y1="{ty:.1f}" x2="{width - right}" y2="{ty:.1f}" '
            'stroke="#e0a100" stroke-dasharray="4 3"/>'
        )
    if len(shown) > 1:
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py in zip(xs, ys, strict=True))
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="#2f6fde" stroke-width="2" '
            'stroke-linejoin="round"/>'
        )
    if len(shown) <= 40:
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="#2f6fde"/>'
            for px, py in zip(xs, ys, strict=True)
        )
    parts.append("</svg>")
    return "".join(parts)


def _thin_indices(count: int, limit: int) -> np.ndarray:
    """At most `limit` evenly spaced indices into `count` points, first and last kept."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, limit)).astype(np.int64))


def _day(micros: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=micros)).strftime("%Y-%m-%d")


def _number(value: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _goal_table(goals: list[dict], modules: list[dict], progress) -> str:
    body = "<h2>Goals</h2>"
    if not goals:
        return body + '<p class="note">No goals in this export.</p>'
    names = {m["id"]: m["name"] for m in modules}
    rows = []
    for goal, depth in _tree_order(goals):
        series = progress.get(goal["id"])
        entries = len(series) if series is not None else 0
        latest = ""
        if entries:
            value, target = float(series.value[-1]), float(series.max_value[-1])
            latest = _number(value)
            if target == target and target:  # not NaN, not zero
                latest += f" / {_number(target)} ({value / target:.0%})"
        status = '<span class="done">done</span>' if goal["isCompleted"] else "open"
        indent = f' style="padding-left:{10 + 18 * depth}px"' if depth else ""
        rows.append(
            f"<tr><td{indent}>{_e(goal['title'])}</td>"
            f"<td>{_e(names.get(goal['moduleId'], ''))}</td>"
            f'<td class="num">{goal["priority"]}</td>'
            f"<td>{_e(goal['targetDate'] or '')}</td><td>{status}</td>"
            f'<td class="num">{entries}</td><td class="num">{_e(latest)}</td></tr>'
        )
    return (
        body + '<table><thead><tr><th>Goal</th><th>Module</th><th class="num">Priority</th>'
        '<th>Target</th><th>Status</th><th class="num">Entries</th>'
        '<th class="num">Latest</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )


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


def _achievement_section(achievements: list[dict]) -> str:
    body = "<h2>Achievements</h2>"
    if not achievements:
        return body + '<p class="note">No achievements in this export.</p>'
    rows = "".join(
        f"<tr><td>{_e(a['title'])}</td><td>{_e(a['kind'])}</td>"
        f'<td class="num">{a["points"]}</td><td>{a["earnedAt"]:%Y-%m-%d}</td></tr>'
        for a in achievements[:MAX_ACHIEVEMENTS_LISTED]
    )
    more = ""
    if len(achievements) > MAX_ACHIEVEMENTS_LISTED:
        more = f'<p class="note">and {len(achievements) - MAX_ACHIEVEMENTS_LISTED} more.</p>'
    return (
        body + '<table><thead><tr><th>Achievement</th><th>Kind</th><th class="num">Points</th>'
        f"<th>Earned</th></tr></thead><tbody>{rows}</tbody></table>{more}"
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
