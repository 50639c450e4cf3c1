"""The numbers behind the charts of goalport's HTML pages (report.html, the GDPR README.html).

Both pages draw the same two charts: completed goals by module (horizontal bars) and each
goal's progress over time (a line, with the target as a dashed line). This module works
out what to draw from the user's tables, as numbers formatted for SVG and the charts'
text already escaped (`html_pages.html_texts`: a goal's title, a module's name); the
markup is the `charts.html.j2` macros that both page templates import. Splitting it this
way keeps the arithmetic testable without HTML. Pure: Arrow and numpy in, tuples out.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
from markupsafe import Markup

from assets.formats.html_pages import html_texts

# Enough points to see every trend without making heavy users' pages huge.
MAX_POINTS_PER_CHART = 240
# Up to this many points a chart also marks each one with a dot.
MAX_DOTTED_POINTS = 40

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()


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


class CompletionBar(NamedTuple):
    """One module's bar: `full` is its share of the largest module, `filled` the done part."""

    label: Markup
    y: int
    full: str
    filled: str
    count_x: str
    done: int
    total: int
    share: str


class CompletionChart(NamedTuple):
    """The bars, and where they and their labels go."""

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
    labels = html_texts([_clip(label, 30) for label, _, _ in rows])
    bars = []
    for i, (label, (_, total, done)) in enumerate(zip(labels, rows, strict=True)):
        full = bar_width * total / most
        bars.append(
            CompletionBar(
                label=label,
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


class ProgressChart(NamedTuple):
    """One goal's progress chart: the plot area, its labels, and the points as SVG text.
    (`charts.html.j2` unpacks the fields by position, in this order.)"""

    title: Markup
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
    chosen = charted[:limit]
    return progress_charts([series[g] for g in chosen], [titles[g] for g in chosen]), len(charted)


def progress_charts(series: Sequence[ProgressSeries], titles: Sequence[str]) -> list[ProgressChart]:
    """Each series' values over time as a line (thinned to MAX_POINTS_PER_CHART), the
    target (maxValue) as a dashed line when it never changed.

    All the charts of a page are worked out at once, over their series laid end to end: a
    report draws up to 60, most of a few dozen points, where numpy's cost per call, not
    per point, was the chart's cost."""
    if not series:
        return []
    if not all(len(s.at) for s in series):
        raise ValueError("a progress chart needs at least one entry")
    width, height, left, right, top, bottom = 320, 150, 46, 10, 10, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    counts = [len(s.at) for s in series]
    lengths = np.array(counts)
    starts = np.array([0, *itertools.accumulate(counts[:-1])])
    at = np.concatenate([s.at for s in series])
    value = np.concatenate([s.value for s in series])
    max_value = np.concatenate([s.max_value for s in series])

    # each chart's scale, as max(values, targets, 0) and min(values, 0) pick them
    value_max = np.maximum.reduceat(value, starts)
    target_max = np.fmax.reduceat(max_value, starts)  # NaN: no target at all
    target_min = np.fmin.reduceat(max_value, starts)
    high = np.where(target_max > value_max, target_max, value_max)
    high = np.where(0.0 > high, 0.0, high)
    value_min = np.minimum.reduceat(value, starts)
    low = np.where(0.0 < value_min, 0.0, value_min)  # progress can go below zero (weight)
    high = np.where(high == low, low + 1.0, high)
    first, last = at[starts], at[starts + lengths - 1]

    if max(counts) > MAX_POINTS_PER_CHART:
        shown = [_thin_indices(n, MAX_POINTS_PER_CHART) for n in counts]
        picked = np.concatenate(
            [start + indices for start, indices in zip(starts, shown, strict=True)]
        )
        at, value = at[picked], value[picked]
        counts = [len(indices) for indices in shown]
    chart = np.repeat(np.arange(len(series)), counts)  # the chart of each point
    span = (last - first)[chart]
    xs = left + plot_w * (at - first[chart]) / np.where(span == 0, 1, span)
    xs[span == 0] = left + plot_w / 2  # all on one day: in the middle
    ys = top + plot_h * (high[chart] - value) / (high - low)[chart]
    # one %-format for all the points: a format call per number was most of a chart's cost
    xys = np.empty(2 * len(xs))
    xys[0::2], xys[1::2] = xs, ys
    points = (("%.1f,%.1f " * len(xs)) % tuple(xys.tolist()))[:-1].split(" ")

    charts = []
    escaped_titles = html_texts(titles)
    offset = 0
    for i, (high_i, low_i, t_min, t_max, start, end, count) in enumerate(
        zip(
            high.tolist(),
            low.tolist(),
            target_min.tolist(),
            target_max.tolist(),
            first.tolist(),
            last.tolist(),
            counts,
            strict=True,
        )
    ):
        own = points[offset : offset + count]
        offset += count
        target_y = None
        if t_min == t_max:  # not NaN: a target, and always the same
            target_y = f"{top + plot_h * (high_i - t_min) / (high_i - low_i):.1f}"
        dots: tuple[tuple[str, str], ...] = ()
        if count <= MAX_DOTTED_POINTS:
            numbers = ",".join(own).split(",")
            dots = tuple(zip(numbers[0::2], numbers[1::2], strict=True))
        charts.append(
            ProgressChart(
                title=escaped_titles[i],
                entries=len(series[i].at),
                width=width,
                height=height,
                left=left,
                right=width - right,
                top=top,
                bottom=top + plot_h,
                label_y=height - 6,
                top_label=format_number(high_i),
                low_label=format_number(low_i),
                start_day=_day(start),
                end_day=_day(end),
                target_y=target_y,
                points=" ".join(own) if count > 1 else None,
                dots=dots,
            )
        )
    return charts


def _thin_indices(count: int, limit: int) -> np.ndarray:
    """At most `limit` evenly spaced indices into `count` points, first and last kept."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, limit)).astype(np.int64))


def _day(micros: int) -> str:
    """The UTC day of a time in microseconds since the epoch, as YYYY-MM-DD."""
    day = dt.date.fromordinal(_EPOCH_ORDINAL + micros // 86_400_000_000).isoformat()
    if day[0] == "0":  # before the year 1000: strftime does not pad the year
        return (_EPOCH + dt.timedelta(microseconds=micros)).strftime("%Y-%m-%d")
    return day


def format_number(value: float) -> str:
    """A chart label or latest value: 12k, 1,500, 2.5."""
    if abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def format_exact_number(value: float) -> str:
    """A value a person reads as data (the latest progress, a target): every digit of the
    app's two decimals, thousands grouped, never rounded to a whole: 239.51, 1,500, 2.5."""
    text = f"{value:,.2f}"
    return text.removesuffix(".00") if text.endswith(".00") else text.rstrip("0")


def distinct_goal_titles(goals: pa.Table) -> dict[str, str]:
    """Each goal's title as charts and legends label it, told apart when titles repeat:
    a repeated title gets its parent goal's title ("Run (Marathon)"), and one that still
    repeats a number in id order ("Run (Marathon) #2")."""
    ids = goals["id"].to_pylist()
    titles = goals["title"].to_pylist()
    parents = goals["parentGoalId"].to_pylist()
    title_of = dict(zip(ids, titles, strict=True))
    repeated = {t for t, n in Counter(titles).items() if n > 1}
    labels = {
        goal_id: (
            f"{title} ({title_of.get(parent) or 'top level'})" if title in repeated else title
        )
        for goal_id, title, parent in zip(ids, titles, parents, strict=True)
    }
    counts = Counter(labels.values())
    seen: Counter = Counter()
    for goal_id in sorted(ids):
        label = labels[goal_id]
        if counts[label] > 1:
            seen[label] += 1
            labels[goal_id] = f"{label} #{seen[label]}"
    return labels
