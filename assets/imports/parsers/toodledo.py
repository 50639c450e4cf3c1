"""Toodledo: its CSV exports (current tasks, completed tasks, notes), each read on its own.

Toodledo has goals of its own (lifelong, long-term, short-term): the GOAL column names the
task's goal, which becomes a goal here with its tasks beneath it; a task without one is a
top-level goal. Sub-tasks (a PARENT column naming the parent's ID, or its title in exports
without ids) go under their parent. A row is done when its COMPLETED date is set. Folders,
contexts, locations, stars, status, length and timer have no column in the app and go to
extras; tags are kept as labels. The notes export's notes become goals under their folder.

Toodledo's CSV has no ids unless the ID column was exported, so a task's key is built from
its title, its ADDED date and its rank among rows sharing both: the key survives a
re-export with other changes (notes, completion, due date), not a renamed task.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    compose_description,
    import_parser,
)
from assets.imports.parsers.dates import UTC, When, iso_utc, parse_when, when_to_utc, zone
from assets.imports.parsers.textio import CsvTable, decode_text, read_csv_table

APP = "toodledo"
PRIORITY_WORDS = {
    "3": 5,
    "top": 5,
    "2": 4,
    "high": 4,
    "1": 3,
    "medium": 3,
    "0": 2,
    "low": 2,
    "": 2,
    "-1": 1,
    "negative": 1,
}
_TASK_COLUMNS = {
    "folder",
    "context",
    "goal",
    "location",
    "startdate",
    "starttime",
    "duedate",
    "duetime",
    "repeat",
    "length",
    "timer",
    "star",
    "completed",
    "added",
    "modified",
}
_EMPTY_DATES = {"0000-00-00", "00/00/0000", "0", "none", "no date"}

GUIDE = """\
## Toodledo

**How to export**

On the website, open **Tools** -> **Import / Export** -> **Export**, choose
**CSV** (the spreadsheet file), and export **Current Tasks**; export **Completed Tasks**
the same way if you want them too, and your **Notes** from the Notes section's export. Each
file can be uploaded on its own.

**What goalport keeps**

- your Toodledo goals as goals, with the tasks that work toward them beneath; a task
  without a goal is a goal of its own, and sub-tasks sit under their task;
- task title, note (as the description), priority (Top 5, High 4, Medium 3, Low 2,
  Negative 1), due date as the target date, completion (with its date), added and modified
  dates;
- tags as tags; the repeat rule as text; folder, context, location, star, status, length
  and timer kept with the goal;
- each note as a goal under its folder, the note's text as its description.

**What it cannot keep**

A goal's level (lifelong, long-term, short-term) and its links
between goals (the CSV does not carry them), collaborators, alarms, attachments, and a
renamed task's history (without the ID column a task is known by its title and its added
date).
"""


def clock_time(text: str) -> dt.time | None:
    """`5:00pm`, `5pm`, `17:00`, `12:30 AM`: Toodledo's time columns; None if not a time."""
    text = text.strip().casefold().replace(" ", "").replace(".", "")
    suffix = text[-2:] if text.endswith(("am", "pm")) else ""
    hours, _, minutes = text.removesuffix(suffix).partition(":")
    if not hours.isdigit() or not (minutes.isdigit() or minutes == "") or len(minutes) > 2:
        return None
    hour, minute = int(hours), int(minutes or 0)
    if suffix:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if suffix == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    return dt.time(hour, minute)


def dt_replace_time(when: When, time_of_day: dt.time) -> When:
    return When(when.year, when.month, when.day, time_of_day, when.tz)


def is_toodledo_header(names: set[str]) -> bool:
    return "task" in names and len(names & _TASK_COLUMNS) >= 3


def is_toodledo_notes_header(names: set[str]) -> bool:
    return (
        {"title", "note"} <= names
        and "task" not in names
        and len(names & {"folder", "added", "modified"}) >= 2
    )


def is_toodledo_any_header(names: set[str]) -> bool:
    return is_toodledo_header(names) or is_toodledo_notes_header(names)


@import_parser("toodledo.csv")
def parse_toodledo(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """A Toodledo tasks CSV (current or completed) or notes CSV as goals."""
    table = read_csv_table(
        decode_text(data, file_name=name), file_name=name, is_header=is_toodledo_any_header
    )
    if table is None:
        raise ImportFormatError(
            name, None, None, "no Toodledo header found (expected TASK, FOLDER, GOAL, ...)"
        )
    builder = ImportBuilder(APP, now=now, tables=("Module", "Goal"), module_name="Toodledo")
    reader = _Rows(builder, table, name, zone(timezone) or UTC)
    if table.has("task"):
        reader.tasks()
    else:
        reader.notes()
    return builder.finish()


def _content_key(*parts: str) -> str:
    return "h" + hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:20]


class _Rows:
    def __init__(
        self, builder: ImportBuilder, table: CsvTable, file_name: str, tz: dt.tzinfo
    ) -> None:
        self.builder = builder
        self.table = table
        self.file_name = file_name
        self.tz = tz
        self.containers: dict[str, str] = {}

    def _when(self, row: int, header: str, text: str, clock: str = "") -> dt.datetime | None:
        """A date (at the time column's time, if any) in the user's zone, as UTC."""
        if text.casefold() in _EMPTY_DATES:
            return None
        when = parse_when(text)
        if when is None or when.year is None:
            self._unreadable(row, header, text)
            return None
        time_of_day = clock_time(clock)
        if time_of_day is not None:
            when = dt_replace_time(when, time_of_day)
        return when_to_utc(when, assume_tz=self.tz)

    def _unreadable(self, row: int, header: str, text: str) -> None:
        self.builder.warn(
            f"{self.file_name}, row {row}, field '{header}': '{text}' is not a date; left empty"
        )

    def _day(self, row: int, header: str, text: str) -> dt.date | None:
        if not text or text.casefold() in _EMPTY_DATES:
            return None
        when = parse_when(text)
        if when is None or when.year is None:
            self._unreadable(row, header, text)
            return None
        return when.date()

    def _container(self, kind: str, name: str, row: int, label: str) -> str:
        key = self.containers.get(f"{kind}\x1f{name}")
        if key is None:
            key = self.containers[f"{kind}\x1f{name}"] = self.builder.add_goal(
                self.builder.key(kind, name),
                title=name,
                source_item=f"{label} '{name}' ({self.file_name}, row {row})",
            )
        return key

    def tasks(self) -> None:
        t, builder = self.table, self.builder
        g = t.getter
        get = {
            "id": g("ID"),
            "parent": g("PARENT", "PARENT ID", "PARENTID"),
            "title": g("TASK"),
            "folder": g("FOLDER"),
            "context": g("CONTEXT"),
            "goal": g("GOAL"),
            "location": g("LOCATION"),
            "start": g("STARTDATE", "START DATE"),
            "start_time": g("STARTTIME", "START TIME"),
            "due": g("DUEDATE", "DUE DATE"),
            "due_time": g("DUETIME", "DUE TIME"),
            "repeat": g("REPEAT"),
            "length": g("LENGTH"),
            "timer": g("TIMER"),
            "priority": g("PRIORITY"),
            "tags": g("TAG", "TAGS"),
            "status": g("STATUS"),
            "star": g("STAR", "STARRED"),
            "note": t.raw_getter("NOTE", "NOTES"),
            "completed": g("COMPLETED", "COMPLETED DATE"),
            "added": g("ADDED", "ADDED DATE"),
            "modified": g("MODIFIED", "MODIFIED DATE"),
        }
        rows = []
        ranks: dict[tuple[str, str], int] = {}
        ids: dict[str, str] = {}
        titles: dict[str, str] = {}
        for row, cells in t.rows:
            values = {name: getter(cells) for name, getter in get.items()}
            values["row"] = str(row)
            if values["id"]:
                values["key"] = builder.key("task", values["id"])
            else:
                identity = (" ".join(values["title"].split()).casefold(), values["added"])
                rank = ranks.get(identity, 0)
                ranks[identity] = rank + 1
                values["key"] = builder.key("task", _content_key(*identity, str(rank)))
            if values["id"]:
                ids.setdefault(values["id"], values["key"])
            titles.setdefault(" ".join(values["title"].split()).casefold(), values["key"])
            rows.append(values)
        for values in rows:
            self._task(values, ids, titles)

    def _task(self, values: dict[str, str], ids: dict[str, str], titles: dict[str, str]) -> None:
        builder, row = self.builder, int(values["row"])
        priority_text = values["priority"].casefold()
        if priority_text not in PRIORITY_WORDS:
            builder.warn(
                f"{self.file_name}: row {row} has PRIORITY '{values['priority']}'; imported as Low"
            )
        parent = None
        if values["goal"] and values["goal"].casefold() not in ("no goal", "none"):
            parent = self._container("goal", values["goal"], row, "goal")
        wanted = values["parent"]
        if wanted and wanted != "0":
            found = ids.get(wanted) or titles.get(" ".join(wanted.split()).casefold())
            if found and found != values["key"]:
                parent = found
            else:
                builder.warn(
                    f"{self.file_name}: row {row} names PARENT '{wanted}', which is not in "
                    "the file; imported under its goal"
                )
        completed = (
            self._when(row, "COMPLETED", values["completed"]) if values["completed"] else None
        )
        labels = [tag.strip() for tag in values["tags"].split(",") if tag.strip()]
        repeat = values["repeat"]
        recurrence = repeat if repeat and repeat.casefold() not in ("none", "no repeat") else None
        due_at = (
            self._when(row, "DUEDATE", values["due"], values["due_time"])
            if values["due"] and values["due_time"]
            else None
        )
        title = values["title"]
        builder.add_goal(
            values["key"],
            title=title,
            source_item=f"task '{' '.join(title.split())}' ({self.file_name}, row {row})",
            parent=parent,
            description=compose_description(values["note"], labels=labels, recurrence=recurrence),
            priority=PRIORITY_WORDS.get(priority_text, 2),
            target_date=self._day(row, "DUEDATE", values["due"]),
            is_completed=completed is not None,
            completed_at=completed,
            created_at=self._when(row, "ADDED", values["added"]) if values["added"] else None,
            updated_at=(
                self._when(row, "MODIFIED", values["modified"]) if values["modified"] else None
            ),
            extras={
                "folder": values["folder"],
                "context": values["context"],
                "goal": values["goal"],
                "location": values["location"],
                "labels": labels,
                "recurrence": recurrence,
                "status": values["status"] if values["status"].casefold() != "none" else "",
                "star": values["star"].casefold() in ("yes", "1", "true", "★") or None,
                "start": values["start"],
                "startTime": values["start_time"],
                "due": iso_utc(due_at),
                "dueTime": values["due_time"],
                "length": values["length"],
                "timer": values["timer"],
                "toodledoId": values["id"],
            },
        )

    def notes(self) -> None:
        t, builder = self.table, self.builder
        title_of, folder_of = t.getter("TITLE"), t.getter("FOLDER")
        note_of = t.raw_getter("NOTE", "TEXT")
        added_of, modified_of = t.getter("ADDED"), t.getter("MODIFIED")
        ranks: dict[tuple[str, str], int] = {}
        for row, cells in t.rows:
            title, added = title_of(cells), added_of(cells)
            identity = (" ".join(title.split()).casefold(), added)
            rank = ranks.get(identity, 0)
            ranks[identity] = rank + 1
            folder = folder_of(cells)
            parent = self._container("folder", folder or "Notes", row, "notes folder")
            text = note_of(cells)
            builder.add_goal(
                builder.key("note", _content_key(*identity, str(rank))),
                title=title or (text.strip().split("\n", 1)[0][:80] if text.strip() else ""),
                source_item=f"note '{' '.join(title.split())}' ({self.file_name}, row {row})",
                parent=parent,
                description=compose_description(text),
                created_at=self._when(row, "ADDED", added) if added else None,
                updated_at=(
                    self._when(row, "MODIFIED", modified_of(cells)) if modified_of(cells) else None
                ),
                extras={"folder": folder, "kind": "note"},
            )
