"""Habitica: the user-data JSON export (`habitica-user-data.json`).

Habits, dailies and to-dos each become a goal (Habitica has no projects); their check-lists
and their history become progress entries; the user's achievements become achievements.
Habitica's `priority` is really difficulty (0.1 trivial, 1 easy, 1.5 medium, 2 hard) and is
mapped onto the app's difficulty 1..5; a daily's schedule is kept as recurrence text. Tags
are UUIDs resolved through the user's tag list. Rewards have no place in the app and are
reported as skipped.

The export also holds the account's secrets (API token, e-mail, push tokens). This parser
reads only the fields it maps, so none of them can reach the tables, extras or report.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    as_dict,
    as_list,
    as_text,
    compose_description,
    import_parser,
    reading_item,
)
from assets.imports.parsers.dates import UTC, from_epoch_ms, iso_utc, parse_timestamp
from assets.imports.parsers.textio import load_json, read_app_csv

APP = "habitica"
TASK_GROUPS = {"habits": "habit", "dailys": "daily", "todos": "todo", "rewards": "reward"}
# Habitica difficulty (its `priority` field) onto the app's 1..5: the hardest is 5.
DIFFICULTY_MAP = {0.1: 1, 1.0: 2, 1.5: 3, 2.0: 5}
_WEEKDAYS = (
    ("m", "Mon"),
    ("t", "Tue"),
    ("w", "Wed"),
    ("th", "Thu"),
    ("f", "Fri"),
    ("s", "Sat"),
    ("su", "Sun"),
)


GUIDE = """\
## Habitica

**How to export**

On the website open **Settings → Site Data → Export Data** and choose **User Data: JSON**
(`habitica-user-data.json`). **Task History: CSV** (`habitica-tasks-history.csv`) is read
too, for the habits' and dailies' history.

**What goalport keeps**

- Habits, dailies and to-dos as goals; their check-lists and history as progress;
  achievements as achievements.
- Difficulty (trivial, easy, medium, hard) as the app's difficulty, a daily's schedule as
  repeat text, tags, completion and its time.

**What it cannot keep**

- Rewards (reported as skipped), gold, experience, pets and party data.
- The file's account secrets (API token, e-mail): never read.
- To-dos Habitica already deleted (it removes completed to-dos after 30 days).
"""


def is_habitica(doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    tasks = doc.get("tasks")
    if isinstance(tasks, dict) and any(k in tasks for k in ("habits", "dailys", "todos")):
        return True
    return isinstance(tasks, list) and "stats" in doc and "preferences" in doc


@import_parser("habitica-user-data.json")
def parse_habitica(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """Habitica's user-data JSON as goals, progress (history, check-lists), achievements;
    or its task-history CSV (`habitica-tasks-history.csv`) as habits and dailies with
    their history."""
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] not in (b"{", b"["):
        return _parse_history_csv(data, name, now)
    doc = load_json(data, file_name=name)
    if not is_habitica(doc):
        raise ImportFormatError(
            name, None, "tasks", "not a Habitica user-data export (no tasks.habits/dailys/todos)"
        )
    builder = ImportBuilder(
        APP, now=now, tables=("Module", "Goal", "Progress", "Achievement"), module_name="Habitica"
    )
    offset = as_dict(doc.get("preferences")).get("timezoneOffset")
    # Habitica counts the offset in minutes *west* of UTC (480 = UTC-8).
    tz = UTC
    if isinstance(offset, int | float) and not isinstance(offset, bool) and abs(offset) < 1440:
        tz = dt.timezone(dt.timedelta(minutes=-offset))
    tags = {
        t["id"]: t["name"]
        for t in as_list(doc.get("tags"))
        if isinstance(t, dict) and as_text(t.get("id")) and as_text(t.get("name"))
    }
    reader = _TaskReader(builder, name, tz, tags)
    tasks = doc["tasks"]
    if isinstance(tasks, list):
        grouped: dict[str, list] = {}
        for task in tasks:
            kind = task.get("type") if isinstance(task, dict) else None
            grouped.setdefault(f"{kind}s" if kind != "daily" else "dailys", []).append(task)
        tasks = grouped
    for group, kind in TASK_GROUPS.items():
        items = tasks.get(group) or []
        if not isinstance(items, list):
            raise ImportFormatError(name, f"tasks.{group}", None, "is not a list")
        for position, task in enumerate(items):
            where = f"tasks.{group}[{position}]"
            try:
                with reading_item(name, where):
                    reader.read(task, kind, where)
            except ImportFormatError as exc:  # this task cannot be mapped; the others can
                builder.skip(f"{kind} ({name}, {where})", exc.reason, bad=True)
    with reading_item(name, "achievements"):
        _achievements(builder, doc, name)
    return builder.finish()


class _TaskReader:
    def __init__(
        self, builder: ImportBuilder, file_name: str, tz: dt.tzinfo, tags: dict[str, str]
    ) -> None:
        self.builder = builder
        self.file_name = file_name
        self.tz = tz
        self.tags = tags

    def read(self, task: Any, kind: str, where: str) -> None:
        builder = self.builder
        if not isinstance(task, dict):
            raise ImportFormatError(self.file_name, where, None, "is not an object")
        task_id = task.get("_id") or task.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise ImportFormatError(self.file_name, where, "_id", "missing or not text")
        title = _s(task.get("text"))
        key = builder.key(kind, task_id)
        if kind == "reward":
            builder.skip(
                f"reward '{title}' ({where})", "rewards have no place in the app", external_key=key
            )
            return
        labels = [self.tags.get(t, t) for t in as_list(task.get("tags")) if as_text(t)]
        recurrence = _recurrence(task) if kind == "daily" else None
        completed = kind == "todo" and bool(task.get("completed"))
        # an open to-do's dateCompleted (it was reopened) is reported by the normalisation
        completed_at = parse_timestamp(_s(task.get("dateCompleted"))) if kind == "todo" else None
        due = parse_timestamp(_s(task.get("date")))
        created_at = parse_timestamp(_s(task.get("createdAt")))
        updated_at = parse_timestamp(_s(task.get("updatedAt")))
        challenge = as_dict(task.get("challenge"))
        if _difficulty(task.get("priority")) is None and task.get("priority") is not None:
            builder.adjust(
                key,
                f"priority (difficulty) '{str(task.get('priority'))[:20]}' is not a Habitica "
                "difficulty (0.1, 1, 1.5 or 2): imported without a difficulty",
            )
        goal = builder.add_goal(
            key,
            title=title,
            source_item=f"{kind} '{title}' ({where})",
            description=compose_description(
                _s(task.get("notes")), labels=labels, recurrence=recurrence
            ),
            difficulty=_difficulty(task.get("priority")),
            target_date=due.astimezone(self.tz).date() if due else None,
            is_completed=completed,
            completed_at=completed_at,
            created_at=created_at,
            updated_at=updated_at,
            extras={
                "type": kind,
                "labels": labels,
                "recurrence": recurrence,
                "attribute": task.get("attribute"),
                "value": task.get("value"),
                "up": task.get("up"),
                "down": task.get("down"),
                "counterUp": task.get("counterUp"),
                "counterDown": task.get("counterDown"),
                "streak": task.get("streak"),
                "startDate": task.get("startDate"),
                "challenge": challenge.get("shortName") or challenge.get("id"),
                "reminders": [
                    r.get("time") for r in as_list(task.get("reminders")) if isinstance(r, dict)
                ],
            },
        )
        for position, item in enumerate(as_list(task.get("checklist"))):
            if not isinstance(item, dict):
                continue
            item_id = as_text(item.get("id")) or f"{task_id}:{position}"
            builder.add_progress(
                builder.key("checklist", item_id),
                goal=goal,
                value=1 if item.get("completed") else 0,
                max_value=1,
                notes=_s(item.get("text")),
                source_kind="check-list items",
                recorded_at=updated_at or created_at,
            )
        self._history(task, kind, task_id, goal, where)

    def _history(self, task: dict, kind: str, task_id: str, goal: str, where: str) -> None:
        builder = self.builder
        unknown = 0
        for position, entry in enumerate(as_list(task.get("history"))):
            if not isinstance(entry, dict):
                continue
            when = _history_time(entry.get("date"))
            if when is None:
                builder.skip(
                    f"history entry of {kind} '{task.get('text')}' ({where}.history[{position}])",
                    f"its date '{str(entry.get('date'))[:40]}' is not a date",
                    bad=True,
                )
                continue
            history_key = builder.key("history", f"{task_id}:{int(when.timestamp() * 1000)}")
            if kind == "habit":
                up, down = entry.get("scoredUp"), entry.get("scoredDown")
                if up is None and down is None:
                    value, notes = 1, "scored"
                else:
                    value, notes = up or 0, f"+{up or 0} / -{down or 0}"
                builder.add_progress(
                    history_key,
                    goal=goal,
                    value=value,
                    notes=notes,
                    source_kind="habit history entries",
                    recorded_at=when,
                    extras={"taskValue": entry.get("value")},
                )
            else:
                if "completed" not in entry:
                    unknown += 1
                    continue
                if not entry.get("completed") and entry.get("isDue") is False:
                    continue
                builder.add_progress(
                    history_key,
                    goal=goal,
                    value=1 if entry.get("completed") else 0,
                    max_value=1,
                    source_kind="daily history entries",
                    recorded_at=when,
                    extras={"taskValue": entry.get("value")},
                )
        if unknown:
            builder.skip(
                f"{unknown} history entries of {kind} '{task.get('text')}'",
                "the export does not say whether the daily was done",
                count=unknown,
            )


def _s(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _history_time(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return from_epoch_ms(value)
    if isinstance(value, str):
        if value.isdigit():
            return from_epoch_ms(int(value))
        return parse_timestamp(value)
    return None


def _difficulty(value: Any) -> int | None:
    """The app's difficulty of a Habitica `priority`, None when it is not one."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = round(float(value), 1)
    except (TypeError, ValueError, OverflowError):
        return None
    return DIFFICULTY_MAP.get(number)


def _recurrence(task: dict) -> str | None:
    """A daily's schedule in words, e.g. `every 2 weeks on Mon, Thu`."""
    frequency = as_text(task.get("frequency")) or "daily"
    every = task.get("everyX") or 1
    unit = {"daily": "day", "weekly": "week", "monthly": "month", "yearly": "year"}.get(
        frequency, frequency
    )
    text = f"every {unit}" if every == 1 else f"every {every} {unit}s"
    if frequency == "weekly":
        repeat = as_dict(task.get("repeat"))
        days = [label for code, label in _WEEKDAYS if repeat.get(code)]
        if days and len(days) < 7:
            text += " on " + ", ".join(days)
    elif frequency == "monthly":
        month_days = [d for d in as_list(task.get("daysOfMonth")) if isinstance(d, int)]
        weeks = [w for w in as_list(task.get("weeksOfMonth")) if isinstance(w, int)]
        if month_days:
            text += " on day " + ", ".join(str(d) for d in month_days)
        elif weeks:
            text += " in week " + ", ".join(str(w + 1) for w in weeks)
    return text


def _achievements(builder: ImportBuilder, doc: dict, file_name: str) -> None:
    achievements = doc.get("achievements")
    if not isinstance(achievements, dict):
        return
    # The export does not date achievements; the last day the account was active stands in.
    earned_at = parse_timestamp(_s(doc.get("lastCron")))
    for name, value in achievements.items():
        if isinstance(value, bool):
            points = 1 if value else 0
        elif isinstance(value, int | float):
            points = int(value) if math.isfinite(value) else 0
        elif isinstance(value, dict):
            points = sum(1 for v in value.values() if v is True or (isinstance(v, int) and v > 0))
        elif isinstance(value, list):
            points = len(value)
        else:
            points = 0
        if not 0 < points < 2**31:  # the app counts points in a 32-bit integer
            continue
        title = "".join(" " + c.lower() if c.isupper() else c for c in name).strip().capitalize()
        builder.add_achievement(
            builder.key("achievement", name),
            kind="habitica",
            title=title,
            source_item=f"achievement '{name}' ({file_name})",
            points=points,
            earned_at=earned_at,
            description=f"Habitica achievement '{name}' ({points})",
            extras={
                "raw": value if not isinstance(value, dict | list) else None,
                "earnedAtIsLastCron": iso_utc(earned_at),
            },
        )


# ---------------------------------------------------------------- history CSV

HISTORY_COLUMNS = ("task name", "task id", "task type", "date", "value")


def is_habitica_history_header(names: set[str]) -> bool:
    return set(HISTORY_COLUMNS) <= names


def _parse_history_csv(data: bytes, name: str, now: dt.datetime | None) -> ParsedImport:
    """`Task Name,Task ID,Task Type,Date,Value`: one row per day a habit was scored or a
    daily's day ended, its date in the server's time (UTC) without a zone. A habit's row
    is a scoring (1); a daily's is done when the task's value rose since its previous row
    (Habitica raises it for a completed day and lowers it for a missed one)."""
    table = read_app_csv(
        data,
        file_name=name,
        is_header=is_habitica_history_header,
        missing="not a Habitica export (expected JSON, or the history CSV's columns "
        "Task Name, Task ID, Task Type, Date, Value)",
    )
    builder = ImportBuilder(
        APP, now=now, tables=("Module", "Goal", "Progress"), module_name="Habitica"
    )
    get = {column: table.getter(column) for column in HISTORY_COLUMNS}
    goals: dict[str, str] = {}
    last_value: dict[str, float] = {}
    first_days: dict[str, int] = {}
    for row, cells in table.rows:
        task_id, kind = get["task id"](cells), get["task type"](cells).casefold()
        where = f"{name}, row {row}"
        when = parse_timestamp(get["date"](cells), assume_tz=UTC)
        try:
            value = float(get["value"](cells))
        except (ValueError, OverflowError):
            value = math.nan
        if (
            not task_id
            or kind not in ("habit", "daily")
            or when is None
            or not math.isfinite(value)
        ):
            builder.skip(
                where, "not a history row (a task id, habit or daily, a date and a value)", bad=True
            )
            continue
        title = get["task name"](cells)
        goal = goals.get(task_id)
        if goal is None:
            goal = goals[task_id] = builder.add_goal(
                builder.key(kind, task_id),
                title=title,
                source_item=f"{kind} '{title}' ({name})",
                created_at=when,  # its first row: the earliest time the file knows of it
                extras={"type": kind},
            )
        key = builder.key("history", f"{task_id}:{int(when.timestamp() * 1000)}")
        if kind == "habit":
            builder.add_progress(
                key,
                goal=goal,
                value=1,
                notes="scored",
                source_kind="habit history entries",
                recorded_at=when,
                extras={"taskValue": value},
            )
            continue
        previous = last_value.get(task_id)
        last_value[task_id] = value
        if previous is None:
            first_days[task_id] = first_days.get(task_id, 0) + 1
            continue
        builder.add_progress(
            key,
            goal=goal,
            value=1 if value > previous else 0,
            max_value=1,
            source_kind="daily history entries",
            recorded_at=when,
            extras={"taskValue": value, "doneInferredFromValue": True},
        )
    for task_id, count in first_days.items():
        builder.skip(
            f"first history row of daily {goals[task_id]}",
            "whether it was done shows only in the change from an earlier row",
            count=count,
        )
    return builder.finish()
