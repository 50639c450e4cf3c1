"""Loop Habit Tracker: the CSV export zip (`Loop Habits CSV <date>.zip`), or `Habits.csv`.

Each habit becomes a goal (its question and description as the description, its frequency
as recurrence text, colour and unit in the extras); each check mark that records doing the
habit becomes a progress entry: 1 of 1 for a yes/no habit, the measured amount (Loop writes
amount x 1000) of the target for a measurable one. Days marked no, skipped, unknown or
"not needed today" are counted in the report, not imported. Scores are computed by Loop from
the check marks, so they are not imported either.

Per-habit files are preferred to the root `Checkmarks.csv` (which can miss data and, in
Loop 2.0.x, holds `Entry(timestamp=..., value=...)` text). Loop has no ids: a habit's key is
its name, a check mark's key its habit and day. Check-ins are days without a time; they are
recorded at 12:00 UTC of that day.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal
from typing import Any

from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    base_name,
    compose_description,
    import_parser,
    is_zip,
    safe_zip_members,
)
from assets.imports.parsers.dates import date_at_noon_utc, parse_when
from assets.imports.parsers.textio import decode_text, read_app_csv

APP = "loop_habits"
SYMBOLIC = {"YES_MANUAL": 2, "YES_AUTO": 1, "NO": 0, "UNKNOWN": -1, "SKIP": 3}
YES_MANUAL = 2
_SKIPPED_NAMES = {1: "not needed that day", 0: "not done", -1: "unknown", 3: "skipped"}
_ENTRY_RE = re.compile(r"Entry\(timestamp=[^,)]*,\s*value=(-?\d+)\)")
_FOLDER_RE = re.compile(r"^(?P<number>\d{3}) ?(?P<name>.*)$")
# One check mark as read: file label, row, day, raw value, notes.
_Mark = tuple[str, int, dt.date, str, str]


GUIDE = """\
## Loop Habit Tracker

**How to export**

In the app open **⋮ → Settings → Export as CSV**, share the zip to your computer
(`Loop Habits CSV <date>.zip`) and upload it as it is. `Habits.csv` alone works too, but
without the check marks.

**What goalport keeps**

- Each habit as a goal (question, description, frequency as repeat text, colour, unit).
- Each day you did a habit as a progress entry (the amount and target of a measurable
  habit).

**What it cannot keep**

- Days marked no, skipped or not needed (counted in the report), reminders, and scores
  (Loop computes them from the check marks).
"""


def is_loop_habits_header(names: set[str]) -> bool:
    return {"position", "name"} <= names and bool(
        names & {"numrepetitions", "frequencynumerator", "question"}
    )


def sanitized_habit_name(name: str) -> str:
    """The folder name Loop derives from a habit name."""
    return re.sub(r"[^ a-zA-Z0-9._-]", "", name)[:100]


@import_parser("Loop Habits CSV.zip")
def parse_loop_habits(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """Loop"s CSV export zip (or a bare Habits.csv) as habit goals and check-in progress."""
    builder = ImportBuilder(APP, now=now, module_name="Loop Habit Tracker")
    if is_zip(data):
        members = safe_zip_members(
            data, file_name=name, select=lambda n: n.casefold().endswith(".csv")
        )
        habits_paths = sorted((p for p in members if base_name(p) == "Habits.csv"), key=len)
        if not habits_paths:
            raise ImportFormatError(name, None, None, "the zip holds no Loop Habits.csv")
        root = habits_paths[0][: -len("Habits.csv")]
        _Export(builder, name, root, members).read()
    else:
        _Export(builder, name, "", {"Habits.csv": data}, bare=True).read()
    return builder.finish()


class _Export:
    def __init__(
        self,
        builder: ImportBuilder,
        file_name: str,
        root: str,
        members: dict[str, bytes],
        bare: bool = False,
    ) -> None:
        self.builder = builder
        self.file_name = file_name
        self.root = root
        self.members = members
        self.bare = bare

    def _label(self, path: str) -> str:
        return self.file_name if self.bare else f"{self.file_name}/{path}"

    def read(self) -> None:
        habits_path = f"{self.root}Habits.csv"
        label = self._label(habits_path)
        table = read_app_csv(
            self.members[habits_path],
            file_name=label,
            is_header=is_loop_habits_header,
            missing="no Loop header found (expected Position, Name, ...)",
            row=1,
        )
        g = table.getter
        get = {
            "position": g("Position"),
            "name": g("Name"),
            "type": g("Type"),
            "question": table.raw_getter("Question"),
            "description": table.raw_getter("Description"),
            "numerator": g("FrequencyNumerator", "NumRepetitions"),
            "denominator": g("FrequencyDenominator", "Interval"),
            "color": g("Color"),
            "unit": g("Unit"),
            "target_type": g("Target Type"),
            "target": g("Target Value"),
            "archived": g("Archived?", "Archived"),
        }
        habits: list[dict[str, Any]] = []
        for row, cells in table.rows:
            values: dict[str, Any] = {field: getter(cells) for field, getter in get.items()}
            values["row"] = row
            if not values["name"]:
                raise ImportFormatError(label, row, "Name", "a habit needs a name")
            habits.append(values)
        folders = self._habit_folders()
        root_marks = self._root_checkmarks([h["name"] for h in habits])
        if self.bare:
            self.builder.warn(
                f"{self.file_name}: only Habits.csv was given; import the whole "
                "export zip to bring the check marks too"
            )
        if any(base_name(p) == "Scores.csv" for p in self.members):
            self.builder.skip(
                "Scores.csv files",
                "scores are computed by Loop from the check marks, which are imported",
            )
        for index, habit in enumerate(habits):
            folder = self._folder_for(habit, index, folders)
            marks: list[_Mark] | None = None
            if folder is not None:
                marks = self._habit_checkmarks(f"{folder}Checkmarks.csv")
            if not marks:
                marks = root_marks.get(habit["name"], marks or [])
            self._habit(habit, marks, label)

    def _habit_folders(self) -> dict[str, str]:
        """Per-habit folder (path prefix) by folder name."""
        folders = {}
        for path in self.members:
            if not path.startswith(self.root):
                continue
            parts = path[len(self.root) :].split("/")
            if len(parts) == 2 and parts[1] == "Checkmarks.csv":
                folders[parts[0]] = f"{self.root}{parts[0]}/"
        return folders

    def _folder_for(self, habit: dict[str, Any], index: int, folders: dict[str, str]) -> str | None:
        wanted = sanitized_habit_name(habit["name"])
        by_name = [f for f in folders if (m := _FOLDER_RE.match(f)) and m["name"] == wanted]
        if len(by_name) == 1:
            return folders[by_name[0]]
        numbers = {index + 1}
        if habit["position"].isdigit():
            numbers.add(int(habit["position"]) + 1)
        for folder in by_name or folders:
            match = _FOLDER_RE.match(folder)
            if match and int(match["number"]) in numbers and (not by_name or folder in by_name):
                return folders[folder]
        return None

    def _habit_checkmarks(self, path: str) -> list[_Mark]:
        data = self.members.get(path)
        if not data or not data.strip():
            return []
        label = self._label(path)
        marks: list[_Mark] = []
        reader = csv.reader(io.StringIO(decode_text(data, file_name=label), newline=""))
        for row, cells in enumerate(reader, start=1):
            if not cells or not "".join(cells).strip():
                continue
            if row == 1 and cells[0].strip().casefold() == "date":
                continue
            if len(cells) < 2:
                raise ImportFormatError(label, row, "Value", "missing")
            day = _day(cells[0], label, row)
            notes = cells[2].strip() if len(cells) > 2 else ""
            marks.append((label, row, day, cells[1].strip(), notes))
        return marks

    def _root_checkmarks(self, habit_names: list[str]) -> dict[str | None, list[_Mark]]:
        path = f"{self.root}Checkmarks.csv"
        data = self.members.get(path)
        if not data or not data.strip():
            return {}
        label = self._label(path)
        lines = decode_text(data, file_name=label).splitlines()
        columns = _root_columns(lines[0].split(",")[1:], habit_names)
        marks: dict[str | None, list[_Mark]] = {name: [] for name in columns}
        for row, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            first, _, rest = line.partition(",")
            day = _day(first, label, row)
            if "Entry(" in rest:
                values = _ENTRY_RE.findall(rest)
            else:
                values = [v.strip() for v in rest.split(",")]
            for name, value in zip(columns, values, strict=False):
                if name is not None and value:
                    marks[name].append((label, row, day, value, ""))
        return marks

    def _habit(self, habit: dict[str, Any], marks: list[_Mark], label: str) -> None:
        builder, name = self.builder, habit["name"]
        key = builder.key("habit", name)
        codes = []
        for source, row, day, raw, notes in marks:
            code = SYMBOLIC.get(raw.upper())
            if code is None:
                try:
                    code = int(raw)
                except ValueError:
                    raise ImportFormatError(
                        source, row, "Value", f"'{raw}' is not a Loop check mark"
                    ) from None
            codes.append((row, day, code, notes))
        type_text = habit["type"].upper()
        measurable = (type_text not in ("", "YES_NO", "0")) or any(c > 3 for _, _, c, _ in codes)
        target = _decimal(habit["target"])
        days = [day for _, day, code, _ in codes if code != -1]
        question = habit["question"].strip()
        recurrence = _frequency(habit["numerator"], habit["denominator"])
        goal = builder.add_goal(
            key,
            title=name,
            source_item=f"habit '{name}' ({label}, row {habit['row']})",
            description=compose_description(
                "\n\n".join(p for p in (question, habit["description"].strip()) if p),
                recurrence=recurrence,
            ),
            created_at=date_at_noon_utc(min(days)) if days else None,
            updated_at=date_at_noon_utc(max(days)) if days else None,
            extras={
                "position": habit["position"],
                "color": habit["color"],
                "recurrence": recurrence,
                "frequency": f"{habit['numerator']}/{habit['denominator']}"
                if habit["numerator"]
                else None,
                "type": habit["type"] or None,
                "unit": habit["unit"],
                "targetType": habit["target_type"],
                "targetValue": habit["target"],
                "archived": habit["archived"].casefold() in ("true", "yes", "1") or None,
            },
        )
        skipped: dict[str, int] = {}
        for _row, day, code, notes in codes:
            progress_key = builder.key("checkmark", f"{name}:{day.isoformat()}")
            if measurable and code > 0:
                builder.add_progress(
                    progress_key,
                    goal=goal,
                    value=Decimal(code) / 1000,
                    max_value=target,
                    notes=notes,
                    source_kind="measurements",
                    recorded_at=date_at_noon_utc(day),
                )
            elif not measurable and code == YES_MANUAL:
                builder.add_progress(
                    progress_key,
                    goal=goal,
                    value=1,
                    max_value=1,
                    notes=notes,
                    source_kind="check-ins",
                    recorded_at=date_at_noon_utc(day),
                )
            else:
                reason = (
                    "no measurement" if measurable else _SKIPPED_NAMES.get(code, f"code {code}")
                )
                skipped[reason] = skipped.get(reason, 0) + 1
        for reason, count in skipped.items():
            builder.skip(
                f"{count} days of habit '{name}'",
                f"check mark says {reason}: not a check-in",
                external_key=goal,
                count=count,
            )


def _root_columns(tokens: list[str], habit_names: list[str]) -> list[str | None]:
    """The habit of each root Checkmarks.csv column; names with commas span several tokens."""
    tokens = [t.rstrip("\r\n") for t in tokens]
    while tokens and tokens[-1].strip() == "":
        tokens.pop()
    columns: list[str | None] = []
    position = 0
    for name in habit_names:
        width = name.count(",") + 1
        if ",".join(tokens[position : position + width]) == name:
            columns.append(name)
            position += width
    if position != len(tokens):
        return [t.strip() if t.strip() in habit_names else None for t in tokens]
    return columns


def _day(text: str, label: str, row: int) -> dt.date:
    when = parse_when(text.strip())
    if when is None or when.year is None:
        raise ImportFormatError(label, row, "Date", f"'{text.strip()}' is not a date")
    return when.date()


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text) if text else None
    except ArithmeticError:
        return None


def _frequency(numerator: str, denominator: str) -> str | None:
    try:
        times, days = int(numerator), int(denominator)
    except ValueError:
        return None
    if times == days:
        return "every day"
    if days == 7:
        return "once a week" if times == 1 else f"{times} times a week"
    if days in (30, 31):
        return "once a month" if times == 1 else f"{times} times a month"
    if times == 1:
        return f"every {days} days"
    return f"{times} times in {days} days"
