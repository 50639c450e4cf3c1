"""Another app's rows fitted to the app's own rules, each change said with its reason.

Other apps do not keep the rules goalport's data-quality suites hold the app's data to: an
item completed before it was created, done without a completion time, modified before it
was created, a title longer than the app takes, a priority of 7. Such a row is still the
user's data, so it is *adjusted* to fit rather than refused, and every adjustment is
returned as a sentence for the mapping report. What the adjustment replaced is kept in the
row's extras (`source<Field>`), never lost.

The functions work on the plain row dicts `ImportBuilder` stages (app column names,
millisecond UTC datetimes) and know nothing of any app; the quality gate that runs after
staging stays as strict as ever. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

# The app's limits (assets.quality.rules.TEXT_LIMITS and value ranges), for imported rows.
TITLE_LIMIT = 200
TEXT_LIMIT = 5000
MODULE_NAME_LIMIT = 100
LEVEL_RANGE = (1, 5)  # priority and difficulty
# assets.quality.rules.FUTURE_TOLERANCE: a time later than this past `now` is clamped.
FUTURE_TOLERANCE = dt.timedelta(days=1)
ELLIPSIS = "…"


def shortened(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the last one an ellipsis when anything was cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def clamp_level(value: int | None, name: str) -> tuple[int | None, str | None]:
    """A priority or difficulty inside 1..5, and the adjustment when it was not."""
    low, high = LEVEL_RANGE
    if value is None or low <= value <= high:
        return value, None
    clamped = min(max(value, low), high)
    return clamped, f"{name} {value} is outside the app's {low}..{high}: set to {clamped}"


def _stamp(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def normalise_goal(
    row: dict[str, Any], extras: dict[str, Any], now: dt.datetime, inferred: list[str]
) -> list[str]:
    """Fit one goal row to the app's rules in place; the adjustments made, as sentences.

    `extras` (the row's, mutable) receives what was replaced; `inferred` names the times
    the parser invented (the import's clock, not the source's): those are never reported
    and a time clamped to `now` joins them, so a re-import keeps the stored value.
    """
    title, description = row["title"], row["description"]
    created, updated, completed = row["createdAt"], row["updatedAt"], row["completedAt"]
    if (  # the usual row already fits: one pass of cheap checks, nothing to say
        len(title) <= TITLE_LIMIT
        and (description is None or len(description) <= TEXT_LIMIT)
        and 1 <= row["priority"] <= 5
        and (row["difficulty"] is None or 1 <= row["difficulty"] <= 5)
        and row["isCompleted"] is (completed is not None)
        and created <= updated
        and (completed is None or created <= completed)
        and max(updated, completed or updated) <= now + FUTURE_TOLERANCE
    ):
        return []
    notes: list[str] = []
    if len(title) > TITLE_LIMIT:
        row["title"] = shortened(title, TITLE_LIMIT)
        body = row["description"]
        row["description"] = title + ("\n\n" + body if body else "")
        notes.append(
            f"title of {len(title)} characters is longer than the app's {TITLE_LIMIT}: "
            "shortened, the full title starts the description"
        )
    description = row["description"]
    if description and len(description) > TEXT_LIMIT:
        extras["sourceDescription"] = description
        row["description"] = shortened(description, TEXT_LIMIT)
        notes.append(
            f"description of {len(description)} characters is longer than the app's "
            f"{TEXT_LIMIT}: shortened, the full text kept with the import's extras"
        )
    for name in ("priority", "difficulty"):
        original = row[name]
        row[name], note = clamp_level(original, name)
        if note:
            extras["source" + name.capitalize()] = original
            notes.append(note)
    notes += _future_times(row, ("createdAt", "updatedAt", "completedAt"), now, inferred)
    notes += _completion(row, extras, inferred)
    notes += _creation_first(row, extras, inferred)
    return notes


def _future_times(
    row: dict[str, Any], columns: tuple[str, ...], now: dt.datetime, inferred: list[str]
) -> list[str]:
    notes = []
    for column in columns:
        value = row[column]
        if value is not None and value > now + FUTURE_TOLERANCE:
            row[column] = now
            if column not in inferred:
                inferred.append(column)
            notes.append(f"{column} {_stamp(value)} is in the future: set to the import time")
    return notes


def _completion(row: dict[str, Any], extras: dict[str, Any], inferred: list[str]) -> list[str]:
    """completedAt set exactly when the goal is done (the app's rule)."""
    if row["isCompleted"] and row["completedAt"] is None:
        if "updatedAt" not in inferred:
            row["completedAt"] = row["updatedAt"]
            return ["done without a completion time: completedAt taken from the last change"]
        row["completedAt"] = row["createdAt"]
        if "createdAt" in inferred:
            inferred.append("completedAt")
            return ["done without a completion time: completedAt set to the import time"]
        return ["done without a completion time: completedAt taken from the creation time"]
    if not row["isCompleted"] and row["completedAt"] is not None:
        extras["sourceCompletedAt"] = _stamp(row["completedAt"])
        row["completedAt"] = None
        return [
            "open, but with a completion time: the item stays open, "
            "the time is kept with the import's extras"
        ]
    return []


def _creation_first(row: dict[str, Any], extras: dict[str, Any], inferred: list[str]) -> list[str]:
    """createdAt is the earliest known time of the goal: not after updatedAt, completedAt."""
    created = row["createdAt"]
    later = {
        column: row[column]
        for column in ("completedAt", "updatedAt")  # on a tie, completion is the reason
        if row[column] is not None and row[column] < created and column not in inferred
    }
    if not later:
        if row["updatedAt"] < created:  # an invented updatedAt follows the creation time
            row["updatedAt"] = created
        return []
    earliest_column = min(later, key=lambda c: later[c])
    earliest = later[earliest_column]
    row["createdAt"] = earliest
    if row["updatedAt"] < earliest:
        row["updatedAt"] = earliest
    if "createdAt" in inferred:
        # the import's clock gave way to a time the file has: nothing of the source moved
        inferred.remove("createdAt")
        return []
    extras["sourceCreatedAt"] = _stamp(created)
    what = "completed" if earliest_column == "completedAt" else "last modified"
    return [
        f"{what} ({_stamp(earliest)}) before it was created ({_stamp(created)}): "
        "createdAt moved to the earliest known time of the item"
    ]


def normalise_progress(
    row: dict[str, Any], extras: dict[str, Any], now: dt.datetime, inferred: list[str]
) -> list[str]:
    """Fit one progress row (value, maxValue, notes, recordedAt) to the app's rules."""
    notes: list[str] = []
    value, maximum = row["value"], row["maxValue"]
    if maximum is not None and maximum < 0:
        extras["sourceMaxValue"] = str(maximum)
        notes.append(f"target {maximum} is negative: left without a target")
        row["maxValue"] = maximum = None
    if value < 0:
        extras["sourceValue"] = str(value)
        row["value"] = value = Decimal("0.00")
        notes.append(f"value {extras['sourceValue']} is negative: set to 0")
    if maximum is not None and value > maximum:
        # the measurement is what happened; the target is what gives way
        extras["sourceMaxValue"] = str(maximum)
        row["maxValue"] = value
        notes.append(
            f"value {value} is above its target {maximum}: the target is raised to the value"
        )
    text = row["notes"]
    if text and len(text) > TEXT_LIMIT:
        extras["sourceNotes"] = text
        row["notes"] = shortened(text, TEXT_LIMIT)
        notes.append(f"notes of {len(text)} characters shortened to the app's {TEXT_LIMIT}")
    notes += _future_times(row, ("recordedAt",), now, inferred)
    return notes


def normalise_achievement(
    row: dict[str, Any], extras: dict[str, Any], now: dt.datetime, inferred: list[str]
) -> list[str]:
    """Fit one achievement row (title, description, points, earnedAt) to the app's rules."""
    notes: list[str] = []
    title = row["title"] or "Untitled"
    if len(title) > TITLE_LIMIT:
        row["description"] = title + ("\n\n" + row["description"] if row["description"] else "")
        title = shortened(title, TITLE_LIMIT)
        notes.append(f"title shortened to the app's {TITLE_LIMIT} characters")
    row["title"] = title
    description = row["description"]
    if description and len(description) > TEXT_LIMIT:
        extras["sourceDescription"] = description
        row["description"] = shortened(description, TEXT_LIMIT)
        notes.append(f"description shortened to the app's {TEXT_LIMIT} characters")
    if row["points"] < 0:
        extras["sourcePoints"] = row["points"]
        notes.append(f"points {row['points']} are negative: set to 0")
        row["points"] = 0
    notes += _future_times(row, ("earnedAt",), now, inferred)
    return notes
