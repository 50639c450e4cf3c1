"""The numbers behind the charts of goalport's HTML pages (report.html, the GDPR README.html).

Both pages draw the same two charts: completed goals by module (horizontal bars) and each
goal's progress over time (a line, with the target as a dashed line). This module works
out what to draw from the user's tables, as plain numbers and text; the markup is the
`charts.html.j2` macros that both page templates import. Splitting it this way keeps the
arithmetic testable without HTML and keeps every piece of user text on the template side,
where autoescaping sees it. Pure: Arrow and numpy in, dataclasses out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# Enough points to see every trend without making heavy users' pages huge.
MAX_POINTS_PER_CHART = 240
# Up to this many points a chart also marks each one with a dot.
MAX_DOTTED_POINTS = 40

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class ProgressSeries:
    """One goal's progress in time order: parallel arrays (NaN where maxValue is null)."""

    at: np.ndarray  # int64 microseconds since the epoch, UTC
    value: np.ndarray  # float64
    max_value: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.at)


def progress_by_goal(table: pa.Table) -> dict[str, ProgressSeries]:
    """Each goal's entries of a Progress table in time order (numbers as floats: they only
    draw charts and show the latest value)."""
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
        str(goal_ids[start]): ProgressSeries(
            micros[start:end], values[start:end], max_values[start:end]
        )
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    }


# ---------------------------------------------------------------- completion by module


@dataclass(frozen=True)
class CompletionBar:
    """One module's bar: `full` is its share of the largest module, `filled` the done part."""

    label: str
    y: int
    full: str
    filled: str
    count_x: str
    done: int
    total: int
    share: str


@dataclass(frozen=True)
class CompletionChart:
    width: int
    height: int
    bar_height: int
    label_x: int
    bar_x: int
    bars: tuple[CompletionBar, ...]


def completion_by_module(
    module_names: Mapping[str | None, str], goals: Iterable[tuple[str | None, bool]]
) -> list[tuple[str, int, int]]:
    """(module name, goals, completed goals) per module, most goals first, then by name;
    goals whose module is not in `module_names` count under "No module"."""
    totals: dict[str, list[int]] = {}
    for module_id, done in goals:
        counts = totals.setdefault(module_names.get(module_id, "No module"), [0, 0])
        counts[0] += 1
        counts[1] += 1 if done else 0
    ordered = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
    return [(label, total, done) for label, (total, done) in ordered]


def completion_chart(rows: Sequence[tuple[str, int, int]]) -> CompletionChart:
    """Horizontal bars, one per (label, total, done): the done share filled in."""
    bar_height, gap, label_width, bar_width = 22, 10, 210, 560
    most = max(total for _, total, _ in rows) or 1
    bars = []
    for i, (label, total, done) in enumerate(rows):
        full = bar_width * total / most
        bars.append(
            CompletionBar(
                label=_clip(label, 30),
                y=gap + i * (bar_height + gap),
                full=f"{full:.1f}",
                filled=f"{bar_width * done / most:.1f}",
                count_x=f"{label_width + full + 8:.1f}",
                done=done,
                total=total,
                share=f"{done / total:.0%}" if total else "-",
            )
        )
    return CompletionChart(
        width=label_width + bar_width + 110,
        height=len(rows) * (bar_height + gap) + gap,
        bar_height=bar_height,
        label_x=label_width - 8,
        bar_x=label_width,
        bars=tuple(bars),
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- progress over time


@dataclass(frozen=True)
class ProgressChart:
    """One goal's progress chart: the plot area, its labels, and the points as SVG text."""

    title: str
    entries: int
    width: int
    height: int
    left: int
    right: int  # x of the plot's right edge
    top: int
    bottom: int  # y of the plot's bottom edge (the time axis)
    label_y: int  # y of the dates under the time axis
    top_label: str
    low_label: str
    start_day: str
    end_day: str
    target_y: str | None  # the dashed target line, when the target never changed
    points: str | None  # the polyline, when there are two points or more
    dots: tuple[tuple[str, str], ...]  # (cx, cy) of each point, when there are few


def goal_progress_charts(
    series: Mapping[str, ProgressSeries], titles: Mapping[str, str], limit: int
) -> tuple[list[ProgressChart], int]:
    """A chart for each of the `limit` goals with the most entries (then by title and id),
    and how many goals have progress to chart."""
    charted = sorted(
        (g for g in series if g in titles), key=lambda g: (-len(series[g]), titles[g], g)
    )
    return [progress_chart(series[g], titles[g]) for g in charted[:limit]], len(charted)


def progress_chart(series: ProgressSeries, title: str) -> ProgressChart:
    """Values over time as a line; the target (maxValue) as a dashed line if constant."""
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

    target_y = None
    if len(targets) and float(targets.min()) == float(targets.max()):
        ty = top + plot_h * (top_value - float(targets[0])) / (top_value - low_value)
        target_y = f"{ty:.1f}"
    coordinates = [(f"{px:.1f}", f"{py:.1f}") for px, py in zip(xs, ys, strict=True)]
    return ProgressChart(
        title=title,
        entries=len(series),
        width=width,
        height=height,
        left=left,
        right=width - right,
        top=top,
        bottom=top + plot_h,
        label_y=height - 6,
        top_label=format_number(top_value),
        low_label=format_number(low_value),
        start_day=_day(start),
        end_day=_day(end),
        target_y=target_y,
        points=" ".join(f"{x},{y}" for x, y in coordinates) if len(shown) > 1 else None,
        dots=tuple(coordinates) if len(shown) <= MAX_DOTTED_POINTS else (),
    )


def _thin_indices(count: int, limit: int) -> np.ndarray:
    """At most `limit` evenly spaced indices into `count` points, first and last kept."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, limit)).astype(np.int64))


def _day(micros: int) -> str:
    return (_EPOCH + dt.timedelta(microseconds=micros)).strftime("%Y-%m-%d")


def format_number(value: float) -> str:
    """A chart label or latest value: 12k, 1,500, 2.5."""
    if abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")
