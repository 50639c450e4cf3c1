"""Todoist: the project CSV ("Export as template") and the backup zip of such CSVs.

A Todoist CSV is one project; its name is only in the file name (`Work [2203306141].csv`
in backups). Rows are `task`, `section` and `note` records; the hierarchy is positional
(INDENT), notes comment on the task above, labels are inline `@tokens`, and due dates are
natural-language text in DATE_LANG. The file holds no task ids, so a task's external key is
a hash of its project, its parent's key, its title and its rank among same-titled siblings:
stable across re-exports as long as the title and place stay the same.

`generate_todoist_csv` writes a large, realistic project for benchmarks.
"""

from __future__ import annotations

import calendar
import datetime as dt
import hashlib
import json
import random
import re
from functools import lru_cache
from typing import Any

from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    as_dict,
    as_list,
    as_text,
    base_name,
    compose_description,
    import_parser,
    is_zip,
    safe_zip_members,
)
from assets.imports.parsers.dates import UTC, parse_date, parse_timestamp, parse_when, zone
from assets.imports.parsers.textio import CsvTable, load_json, read_app_csv

APP = "todoist"
# Todoist's CSV scale: 1 = p1 = most urgent ... 4 = p4 = no priority. Empty means p1 (doc).
PRIORITY_MAP = {"1": 5, "2": 4, "3": 3, "4": 2, "": 5}
_LABEL_RE = re.compile(r"(?:(?<=\s)|^)@([^\s@]+)")
_ATTACHMENT_START, _ATTACHMENT_END = "[[file {", "}]]"
_PROJECT_ID_RE = re.compile(r"^(?P<name>.*?)\s*\[(?P<id>\d+)\]$")
_IN_RE = re.compile(r"^in\s+(\d+)\s+(day|week|month|year)s?$")
_WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_WEEKDAYS.update({name.lower(): i for i, name in enumerate(calendar.day_abbr)})


GUIDE = """\
## Todoist

**How to export**

- One project: open the project, click the **⋯** (More project actions) menu, choose
  **Export as template**, untick **Use relative dates**, then **Download as CSV file**.
- Every project at once: **Settings → Backups**, then **Download** the newest backup (a zip
  with one CSV per project). Upload the zip as it is.
- A JSON backup made with Todoist's Sync API (`projects`, `sections`, `items`, `notes`) is
  read too.

**What goalport keeps**

- Each project as a goal, sections and tasks under it, sub-tasks under their task (the app
  keeps three levels; deeper tasks move up beside their parent).
- Titles, descriptions (`DESCRIPTION`), priorities (p1 is the app's 5, p4 its 2), due dates,
  labels and recurrence (at the end of the description), comments, the duration
  (`DURATION`, `DURATION_UNIT`) and attachment links (kept with the import's extras).
- Done tasks and their completion times, from a JSON backup.

**What it cannot keep**

- Completed tasks of a CSV: Todoist leaves them out of template exports.
- Attachments themselves (only their names and links), reminders, collaborators.
"""


def is_todoist_header(names: set[str]) -> bool:
    return {"type", "content"} <= names and ("indent" in names or "priority" in names)


@import_parser("todoist.csv")
def parse_todoist(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """A Todoist project CSV, a backup zip of them, or a JSON backup of the Sync API's
    resources, as goals (project -> tasks)."""
    builder = ImportBuilder(APP, now=now, tables=("Module", "Goal"), module_name="Todoist")
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        _parse_backup_json(builder, load_json(data, file_name=name), name, timezone)
    elif is_zip(data):
        members = safe_zip_members(
            data, file_name=name, select=lambda n: n.casefold().endswith(".csv")
        )
        if not members:
            raise ImportFormatError(name, None, None, "the zip holds no Todoist CSV file")
        for member in sorted(members):
            _parse_project_csv(builder, members[member], f"{name}/{member}", member, timezone)
    else:
        _parse_project_csv(builder, data, name, name, timezone)
    return builder.finish()


parse_todoist_csv = parse_todoist


def _project_identity(path: str) -> tuple[str, str]:
    stem = base_name(path)
    if stem.casefold().endswith(".csv"):
        stem = stem[:-4]
    match = _PROJECT_ID_RE.match(stem)
    if match:
        return match["name"] or stem, match["id"]
    return stem, stem.casefold()


def _parse_project_csv(
    builder: ImportBuilder, data: bytes, label: str, path: str, default_tz: str | None
) -> None:
    table = read_app_csv(
        data,
        file_name=label,
        is_header=is_todoist_header,
        missing="no Todoist header found (expected TYPE, CONTENT, PRIORITY, INDENT)",
        row=1,
    )
    project_name, project_id = _project_identity(path)
    project_key = builder.add_goal(
        builder.key("project", project_id),
        title=project_name,
        source_item=f"project '{project_name}' ({label})",
        extras={"file": base_name(path)},
    )
    _TaskRows(builder, table, label, project_key, default_tz).read()


class _TaskRows:
    """Walks one project's records, keeping the indent stack and the current section."""

    def __init__(
        self,
        builder: ImportBuilder,
        table: CsvTable,
        label: str,
        project_key: str,
        default_tz: str | None,
    ) -> None:
        self.builder = builder
        self.table = table
        self.label = label
        self.project_key = project_key
        self.default_tz = default_tz
        self.tasks: list[dict[str, Any]] = []
        self.project_notes: list[str] = []
        self.project_meta: list[str] = []
        self.today_by_zone: dict[str, dt.date] = {}

    def read(self) -> None:
        t = self.table
        width = len(t.header)
        # A missing column reads as the empty cell appended after the last one.
        self.at: dict[str, int] = {}
        for name in TODOIST_HEADER.split(","):
            position = t.column(name)
            self.at[name] = width if position is None else position
        at_type, at_content = self.at["TYPE"], self.at["CONTENT"]
        at_priority, at_indent = self.at["PRIORITY"], self.at["INDENT"]
        has_priority = t.column("PRIORITY") is not None
        stack: list[tuple[int, dict[str, Any]]] = []
        seen_titles: dict[str, int] = {}
        section: str | None = None
        padding = [""] * (width + 1)
        for row, cells in t.rows:
            if len(cells) <= width:
                cells = cells + padding[len(cells) :]
            kind = cells[at_type].strip().casefold()
            if kind == "task":
                adjustments: list[str] = []
                indent = self._indent(cells[at_indent].strip(), stack, adjustments)
                priority_text = cells[at_priority].strip()
                if priority_text not in PRIORITY_MAP:
                    adjustments.append(
                        f"PRIORITY '{priority_text[:40]}' is not a Todoist priority (1 to 4): "
                        "imported with the app's default priority"
                    )
                    priority_text = "4"
                while stack and stack[-1][0] >= indent:
                    stack.pop()
                task = self._task(
                    cells,
                    row=row,
                    priority=PRIORITY_MAP[priority_text] if has_priority else 2,
                    indent=indent,
                    parent=stack[-1][1] if stack else None,
                    section=section,
                    seen_titles=seen_titles,
                )
                task["adjustments"] = adjustments
                self.tasks.append(task)
                stack.append((indent, task))
            elif kind == "note":
                target = stack[-1][1]["comments"] if stack else self.project_notes
                target.append(cells[at_content])
            elif kind == "section":
                section = " ".join(cells[at_content].split())
                stack = []
            elif kind == "meta":
                self.project_meta.append(cells[at_content])
            elif not kind:
                self.builder.skip(f"{self.label}, row {row}", "row without TYPE")
            else:
                self.builder.skip(f"{self.label}, row {row}", f"unknown TYPE '{kind}'")
        self._add_all()

    def _today(self, tz_name: str) -> dt.date:
        today = self.today_by_zone.get(tz_name)
        if today is None:
            tz = zone(tz_name) or zone(self.default_tz) or UTC
            today = self.today_by_zone[tz_name] = self.builder.now.astimezone(tz).date()
        return today

    def _indent(self, text: str, stack: list, adjustments: list[str]) -> int:
        """The row's INDENT; one that is not a level (a spreadsheet's `x`, `-1`) puts the
        task beside the task above, as the nearest reading of the file."""
        if not text:
            return 1
        try:
            indent = int(float(text))
        except (ValueError, OverflowError):
            indent = 0
        if indent < 1:
            indent = stack[-1][0] if stack else 1
            adjustments.append(
                f"INDENT '{text[:40]}' is not an indent level (1, 2, 3 ...): "
                "placed beside the task above"
            )
        return indent

    def _task(
        self,
        cells: list[str],
        *,
        row: int,
        priority: int,
        indent: int,
        parent: dict[str, Any] | None,
        section: str | None,
        seen_titles: dict[str, int],
    ) -> dict[str, Any]:
        at = self.at
        content = cells[at["CONTENT"]]
        title = content.strip()
        uncompletable = title.startswith("* ")
        if uncompletable:
            title = title[2:].strip()
        labels = _LABEL_RE.findall(title) if "@" in title else []
        if labels:
            stripped = " ".join(_LABEL_RE.sub(" ", title).split())
            title = stripped or title
        parent_key = parent["key"] if parent else self.project_key
        # The key leaves the parent out, so renaming or moving a parent keeps its children's.
        identity = title.casefold()
        rank = seen_titles.get(identity, 0)
        seen_titles[identity] = rank + 1
        digest = hashlib.sha1(
            "\x1f".join((self.project_key, identity, str(rank))).encode()
        ).hexdigest()[:20]
        due_text, lang = cells[at["DATE"]].strip(), cells[at["DATE_LANG"]].strip()
        tz_name, deadline_text = cells[at["TIMEZONE"]].strip(), cells[at["DEADLINE"]].strip()
        duration = cells[at["DURATION"]].strip()
        today = self._today(tz_name)
        due = read_todoist_date(due_text, today=today) if due_text else _NO_DATE
        deadline = read_todoist_date(deadline_text, today=today) if deadline_text else _NO_DATE
        for text, reading in ((due_text, due), (deadline_text, deadline)):
            if text and reading.day is None and reading.recurrence is None:
                self.builder.warn(
                    f"{self.label}, row {row}: due date '{text}' ({lang or 'no language'}) "
                    "could not be read; kept as text in the extras"
                )
        return {
            "key": self.builder.key("task", digest),
            "parent": parent_key,
            "row": row,
            "title": title,
            "description": cells[at["DESCRIPTION"]],
            "priority": priority,
            "labels": labels,
            "target_date": deadline.day or due.day,
            "recurrence": due.recurrence,
            "comments": [],
            "extras": {
                "section": section,
                "labels": labels,
                "indent": indent,
                "position": row,
                "uncompletable": uncompletable or None,
                "author": cells[at["AUTHOR"]].strip(),
                "responsible": cells[at["RESPONSIBLE"]].strip(),
                "dueText": due_text,
                "dueTime": due.time,
                "dateLang": lang,
                "timezone": tz_name,
                "deadlineText": deadline_text,
                "recurrence": due.recurrence,
                "duration": f"{duration} {cells[at['DURATION_UNIT']].strip()}".strip()
                if duration
                else None,
            },
        }

    def _add_all(self) -> None:
        builder = self.builder
        project_extras = builder.extras.setdefault(self.project_key, {})
        if self.project_notes:
            project_extras["comments"] = self.project_notes
            builder.goals[self.project_key]["description"] = compose_description(
                None, comments=[_note_text(n)[0] for n in self.project_notes]
            )
        if self.project_meta:
            project_extras["meta"] = self.project_meta
        for task in self.tasks:
            comments: list[str] = []
            attachments: list[dict[str, Any]] = []
            for note in task["comments"]:
                text, files = _note_text(note)
                comments.append(text)
                attachments.extend(files)
            extras = task["extras"]
            extras["comments"] = task["comments"]
            extras["attachments"] = attachments
            key = builder.add_goal(
                task["key"],
                title=task["title"],
                source_item=f"task '{task['title']}' ({self.label}, row {task['row']})",
                parent=task["parent"],
                description=compose_description(
                    task["description"],
                    labels=task["labels"],
                    recurrence=task["recurrence"],
                    comments=comments,
                ),
                priority=task["priority"],
                target_date=task["target_date"],
                extras=extras,
            )
            for note in task["adjustments"]:
                builder.adjust(key, note)


def _note_text(note: str) -> tuple[str, list[dict[str, Any]]]:
    """The note with attachment markup replaced by `[file: name]`, and the attachments.

    `[[file {...}]]` is found with plain `find`s, each part of the note read once: a
    regular expression that looks for the end of every `[[file {` again (a note of many
    unclosed ones) takes quadratic time."""
    if _ATTACHMENT_START not in note:
        return note, []
    files: list[dict[str, Any]] = []
    parts: list[str] = []
    position = 0
    while True:
        start = note.find(_ATTACHMENT_START, position)
        if start < 0:
            break
        end = note.find(_ATTACHMENT_END, start + len(_ATTACHMENT_START))
        if end < 0:  # no markup closes after here: the rest is text
            break
        markup_end = end + len(_ATTACHMENT_END)
        meta = _json_object(note[start + len(_ATTACHMENT_START) - 1 : end + 1])
        parts.append(note[position:start])
        if meta is None:
            parts.append(note[start:markup_end])
        else:
            files.append({k: meta.get(k) for k in ("file_name", "file_type", "file_url")})
            parts.append(f"[file: {meta.get('file_name') or 'attachment'}]")
        position = markup_end
    parts.append(note[position:])
    return "".join(parts), files


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class DueReading:
    __slots__ = ("day", "time", "recurrence")

    def __init__(
        self,
        day: dt.date | None = None,
        time: str | None = None,
        recurrence: str | None = None,
    ) -> None:
        self.day, self.time, self.recurrence = day, time, recurrence


# what an empty cell reads as (most rows have no deadline, many no due date)
_NO_DATE = DueReading()


@lru_cache(maxsize=4096)
def read_todoist_date(text: str, *, today: dt.date) -> DueReading:
    """Todoist's natural-language due date read as Todoist reads it at import time.

    Absolute dates (`12 Mar 2024`, `2024-03-12 10:00`) stand; relative ones (`in 3 days`,
    `tomorrow`, `12 Mar` without a year, `monday`) are taken from `today`, as Todoist itself
    resolves a template's relative dates when it is imported. `every ...` is a recurrence:
    kept as text, with its first day when that is plain (`every day`, `every monday`).
    """
    phrase = " ".join(text.split()).casefold()
    if not phrase:
        return DueReading()
    if phrase.startswith(("every", "ev ", "daily", "weekly", "monthly", "yearly", "annually")):
        return DueReading(_first_occurrence(phrase, today), None, " ".join(text.split()))
    when = parse_when(text)
    if when is not None:
        time = when.time.strftime("%H:%M") if when.time else None
        if when.year is not None:
            return DueReading(when.date(), time)
        candidate = _month_day(today.year, when.month, when.day)
        if candidate < today:
            candidate = _month_day(today.year + 1, when.month, when.day)
        return DueReading(candidate, time)
    simple = {
        "today": 0,
        "tod": 0,
        "tomorrow": 1,
        "tmr": 1,
        "tom": 1,
        "yesterday": -1,
        "next week": 7,
        "in a week": 7,
    }
    if phrase in simple:
        return DueReading(today + dt.timedelta(days=simple[phrase]))
    match = _IN_RE.match(phrase)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        if unit in ("day", "week"):
            return DueReading(today + dt.timedelta(days=amount * (7 if unit == "week" else 1)))
        months = amount * (12 if unit == "year" else 1)
        return DueReading(_add_months(today, months))
    weekday = _WEEKDAYS.get(phrase.removeprefix("next ").removeprefix("this "))
    if weekday is not None:
        return DueReading(_next_weekday(today, weekday))
    return DueReading()


def _first_occurrence(phrase: str, today: dt.date) -> dt.date | None:
    rest = phrase.removeprefix("every").removeprefix("ev").strip()
    if phrase in ("daily",) or rest in ("day", "days", "morning", "evening", "night"):
        return today
    weekday = _WEEKDAYS.get(rest)
    if weekday is not None:
        return _next_weekday(today, weekday)
    return None


def _next_weekday(today: dt.date, weekday: int) -> dt.date:
    return today + dt.timedelta(days=(weekday - today.weekday()) % 7)


def _month_day(year: int, month: int, day: int) -> dt.date:
    return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.month - 1 + months
    return _month_day(day.year + index // 12, index % 12 + 1, day.day)


# ---------------------------------------------------------------- benchmark data

TODOIST_HEADER = (
    "TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE,"
    "DURATION,DURATION_UNIT,DEADLINE,DEADLINE_LANG"
)
_WORDS = (
    "plan review write call book renew pay fix clean read draft send order sort "
    "passport invoice garden café Zürich 東京 naïve résumé report taxes groceries"
).split()
_DATES = (
    "",
    "",
    "",
    "12 Mar 2025",
    "2025-06-01",
    "in 3 days",
    "every monday",
    "tomorrow",
    "Mar 5 2026 10:00",
    "every 2 weeks",
)


def generate_todoist_csv(task_count: int = 50_000, *, seed: int = 0) -> bytes:
    """A Todoist project export with `task_count` tasks: sections, four indent levels, labels,
    multi-line notes, non-ASCII titles and mixed due dates; BOM and CRLF like the real thing."""
    rng = random.Random(seed)
    lines = [TODOIST_HEADER]
    blank = "," * (TODOIST_HEADER.count(","))
    indent = 1
    for number in range(task_count):
        if number % 250 == 0:
            lines.append(f"section,Section {number // 250} — étape,,,,,,,,,,,,")
            lines.append(blank)
            indent = 1
        indent = max(1, min(4, indent + rng.choice((-1, 0, 0, 1)))) if number % 250 else 1
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 6)))
        labels = " ".join(
            f"@{rng.choice(('home', 'work', '15min', 'ärger'))}" for _ in range(rng.randint(0, 2))
        )
        title = f"{words} {number} {labels}".strip().replace('"', "'")
        description = "Step one\nStep two" if number % 17 == 0 else ""
        lines.append(
            f'task,"{title}","{description}",{rng.randint(1, 4)},{indent},'
            f"Alex (1234567),,{rng.choice(_DATES)},en,Europe/Paris,,,,"
        )
        if number % 10 == 0:
            lines.append(
                'note,"Remember:\nbring the ""blue"" folder 📁",,,,Alex (1234567),,,en,'
                "Europe/Paris,,,,"
            )
        lines.append(blank)
    return ("\ufeff" + "\r\n".join(lines)).encode("utf-8")


# ---------------------------------------------------------------- JSON backup

# The Sync API's scale: 4 = p1 = most urgent ... 1 = p4 = no priority (the CSV's reversed).
API_PRIORITY_MAP = {4: 5, 3: 4, 2: 3, 1: 2}


def is_todoist_backup(doc: Any) -> bool:
    """A saved Sync API response (`projects` and `items`, tasks with a `project_id`)."""
    if not isinstance(doc, dict):
        return False
    items, projects = doc.get("items"), doc.get("projects")
    if not isinstance(items, list) or not isinstance(projects, list):
        return False
    sample = [i for i in items[:20] if isinstance(i, dict)]
    return (not sample and bool(projects)) or any(
        "project_id" in i and "content" in i for i in sample
    )


def _parse_backup_json(builder: ImportBuilder, doc: Any, name: str, default_tz: str | None) -> None:
    """Projects (sub-projects under theirs), then items under their parent item or their
    project; sections and labels go to the extras, notes to the description."""
    if not is_todoist_backup(doc):
        raise ImportFormatError(
            name, None, None, "not a Todoist backup (expected 'projects' and 'items' lists)"
        )
    tz = zone(default_tz) or UTC
    projects = [p for p in as_list(doc["projects"]) if isinstance(p, dict)]
    sections = {
        str(s.get("id")): as_text(s.get("name"))
        for s in as_list(doc.get("sections"))
        if isinstance(s, dict)
    }
    notes: dict[str, list[str]] = {}
    for note in as_list(doc.get("notes")):
        note = as_dict(note)
        if note.get("is_deleted"):
            continue
        notes.setdefault(str(note.get("item_id")), []).append(as_text(note.get("content")))
    for position, project in enumerate(projects):
        project_id = str(project.get("id"))
        title = as_text(project.get("name")).strip() or "Untitled project"
        if project.get("is_deleted"):
            builder.skip(f"project '{title}' (projects[{position}])", "deleted in Todoist")
            continue
        parent = project.get("parent_id")
        builder.add_goal(
            builder.key("project", project_id),
            title=title,
            source_item=f"project '{title}' (projects[{position}])",
            parent=builder.key("project", parent) if parent else None,
            created_at=_api_time(project.get("created_at"), tz),
            updated_at=_api_time(project.get("updated_at"), tz),
            extras={"archived": bool(project.get("is_archived")) or None},
        )
    for position, item in enumerate(as_list(doc["items"])):
        if not isinstance(item, dict):
            builder.skip(f"items[{position}]", "not a Todoist task object", bad=True)
            continue
        _add_backup_item(builder, item, position, sections, notes, tz)


def _add_backup_item(
    builder: ImportBuilder,
    item: dict[str, Any],
    position: int,
    sections: dict[str, str],
    notes: dict[str, list[str]],
    tz: dt.tzinfo,
) -> None:
    item_id = str(item.get("id"))
    title = as_text(item.get("content")).strip()
    where = f"task '{title}' (items[{position}])"
    if item.get("is_deleted"):
        builder.skip(where, "deleted in Todoist", external_key=builder.key("item", item_id))
        return
    parent, project = item.get("parent_id"), item.get("project_id")
    due, deadline = as_dict(item.get("due")), as_dict(item.get("deadline"))
    duration = as_dict(item.get("duration"))
    labels = [label for label in as_list(item.get("labels")) if isinstance(label, str)]
    recurrence = as_text(due.get("string")) if due.get("is_recurring") else None
    comments = [_note_text(n)[0] for n in notes.get(item_id, [])]
    api_priority = item.get("priority")
    priority = API_PRIORITY_MAP.get(api_priority) if isinstance(api_priority, int) else None
    done = bool(item.get("checked"))
    key = builder.add_goal(
        builder.key("item", item_id),
        title=title,
        source_item=where,
        parent=builder.key("item", parent)
        if parent
        else builder.key("project", project)
        if project
        else None,
        description=compose_description(
            as_text(item.get("description")),
            labels=labels,
            recurrence=recurrence,
            comments=comments,
        ),
        priority=priority or 2,
        target_date=_api_day(deadline.get("date"), tz) or _api_day(due.get("date"), tz),
        is_completed=done,
        completed_at=_api_time(item.get("completed_at"), tz),
        created_at=_api_time(item.get("added_at"), tz),
        updated_at=_api_time(item.get("updated_at"), tz),
        extras={
            "section": sections.get(str(item.get("section_id"))),
            "labels": labels,
            "recurrence": recurrence,
            "dueText": as_text(due.get("string")),
            "duration": f"{duration.get('amount')} {duration.get('unit')}"
            if duration.get("amount") is not None
            else None,
            "comments": notes.get(item_id),
        },
    )
    if priority is None and api_priority is not None:
        builder.adjust(
            key,
            f"priority {str(api_priority)[:20]!r} is not a Todoist priority (1 to 4): "
            "imported with the app's default priority",
        )


def _api_time(value: Any, tz: dt.tzinfo) -> dt.datetime | None:
    return parse_timestamp(value, assume_tz=tz) if isinstance(value, str) else None


def _api_day(value: Any, tz: dt.tzinfo) -> dt.date | None:
    return parse_date(value, local_tz=tz) if isinstance(value, str) else None
