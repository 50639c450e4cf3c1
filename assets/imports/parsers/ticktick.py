"""TickTick: the backup CSV (Settings -> Backup & Import -> Generate backup).

One CSV holds every list. Preamble records (export date, version, a multi-line status
legend) come before the header, and the column set drifts between versions, so columns are
found by name. Lists become goals, tasks sub-goals, sub-tasks (parentId) go under their
parent even when they come first in the file; check-list items in a task's content become
progress entries. TickTick writes all-day dates as local midnight in UTC, so a due date is
converted to the row's time zone before its day is taken.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from assets.imports.parsers.base import (
    ImportBuilder,
    ParsedImport,
    compose_description,
    import_parser,
)
from assets.imports.parsers.dates import (
    UTC,
    iso_utc,
    parse_when,
    when_to_local_date,
    when_to_utc,
    zone,
)
from assets.imports.parsers.textio import CsvTable, read_app_csv

APP = "ticktick"
# TickTick: 0 none, 1 low, 3 medium, 5 high (its top).
PRIORITY_MAP = {"0": 2, "": 2, "1": 1, "3": 3, "5": 5, "2": 2, "4": 4}
DONE_STATUSES = {"1", "2", "-1"}
_CHECK_ITEM_RE = re.compile(
    r"^\s*(?:(?P<done>▪|☑|✓|✔|- \[[xX]\])|(?P<open>▫|☐|- \[ \]))\s*(?P<text>.*)$"
)


GUIDE = """\
## TickTick

**How to export**

On the web app click your avatar, then **Settings → Account → Backup & Restore →
Generate backup** (or **Settings → Backup & Import → Generate backup**), and upload the CSV.

**What goalport keeps**

- Each list as a goal, its tasks under it, sub-tasks under their task.
- Titles, contents, due dates (all-day dates on the right day in the task's time zone),
  priorities, tags, repeat rules, completion and its time; check-list items as progress.

**What it cannot keep**

- Notes (TickTick's note items, reported as skipped), reminders, attachments, habits and
  focus records (not in the backup).
"""


def is_ticktick_header(names: set[str]) -> bool:
    return {"list name", "title"} <= names and bool(
        names & {"folder name", "is check list", "is checklist", "kind", "taskid", "status"}
    )


@import_parser("ticktick-backup.csv")
def parse_ticktick(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """A TickTick backup CSV as goals (lists -> tasks -> sub-tasks) and check-list progress."""
    table = read_app_csv(
        data,
        file_name=name,
        is_header=is_ticktick_header,
        missing="no TickTick header found (expected 'List Name', 'Title', ...)",
    )
    builder = ImportBuilder(APP, now=now, module_name="TickTick")
    _Rows(builder, table, name, timezone).read()
    return builder.finish()


class _Rows:
    def __init__(
        self, builder: ImportBuilder, table: CsvTable, file_name: str, timezone: str | None
    ) -> None:
        self.builder = builder
        self.table = table
        self.file_name = file_name
        self.default_tz = zone(timezone)
        self.lists: dict[str, str] = {}

    def _list_goal(self, folder: str, name: str, row: int) -> str:
        list_name = name or "Inbox"
        key = self.lists.get(list_name)
        if key is None:
            key = self.lists[list_name] = self.builder.add_goal(
                self.builder.key("list", list_name),
                title=list_name,
                source_item=f"list '{list_name}' ({self.file_name}, row {row})",
                extras={"folder": folder},
            )
        return key

    def read(self) -> None:
        t, builder = self.table, self.builder
        g = t.getter
        get = {
            "folder": g("Folder Name"),
            "list": g("List Name"),
            "title": t.raw_getter("Title"),
            "kind": g("Kind"),
            "tags": g("Tags"),
            "content": t.raw_getter("Content"),
            "checklist": g("Is Check list", "Is Checklist"),
            "start": g("Start Date"),
            "due": g("Due Date"),
            "reminder": g("Reminder"),
            "repeat": g("Repeat"),
            "priority": g("Priority"),
            "status": g("Status"),
            "created": g("Created Time"),
            "completed": g("Completed Time"),
            "order": g("Order"),
            "tz": g("Timezone"),
            "all_day": g("Is All Day"),
            "floating": g("Is Floating"),
            "column": g("Column Name"),
            "task_id": g("taskId", "Task Id"),
            "parent_id": g("parentId", "Parent Id"),
        }
        rows: list[dict[str, Any]] = []
        seen: dict[tuple[str, str], int] = {}
        for row, cells in t.rows:
            values: dict[str, Any] = {name: getter(cells) for name, getter in get.items()}
            values["row"] = row
            kind = values["kind"].upper()
            if kind == "NOTE":
                builder.skip(
                    f"note '{values['title'].strip()}' ({self.file_name}, row {row})",
                    "a TickTick note, not a task",
                )
                continue
            if kind and kind not in ("TEXT", "CHECKLIST"):
                builder.warn(f"{self.file_name}: row {row} has Kind '{kind}'; imported as a task")
            if not values["task_id"]:
                identity = (values["list"], values["title"].strip().casefold())
                rank = seen.get(identity, 0)
                seen[identity] = rank + 1
                values["task_id"] = (
                    "h"
                    + hashlib.sha1("\x1f".join((*identity, str(rank))).encode()).hexdigest()[:20]
                )
            rows.append(values)
        ids = {values["task_id"] for values in rows}
        for values in rows:
            with builder.row_or_skip(f"task ({self.file_name}, row {values['row']})"):
                self._task(values, ids)

    def _time(
        self, values: dict[str, Any], field: str, header: str, tz: dt.tzinfo
    ) -> dt.datetime | None:
        text = values[field]
        if not text:
            return None
        when = parse_when(text)
        if when is None or when.year is None:
            if header not in values["unreadable"]:
                values["adjustments"].append(
                    f"{header} '{text[:40]}' is not a date: left empty (kept in the extras)"
                )
                values["unreadable"][header] = text
            return None
        return when_to_utc(when, assume_tz=tz)

    def _task(self, values: dict[str, Any], ids: set[str]) -> None:
        builder, row = self.builder, values["row"]
        list_key = self._list_goal(values["folder"], values["list"], row)
        tz_name = values["tz"]
        tz = zone(tz_name) or self.default_tz or UTC
        notes: list[str] = []
        values["adjustments"], values["unreadable"] = notes, {}
        priority_text = values["priority"].lower().removeprefix("p")
        if priority_text not in PRIORITY_MAP:
            notes.append(
                f"Priority '{values['priority'][:40]}' is not a TickTick priority: imported "
                "with the app's default priority"
            )
            priority_text = "0"
        status = values["status"]
        if status not in DONE_STATUSES | {"0", ""}:
            notes.append(
                f"Status '{status[:40]}' is not a TickTick status (0, 1, 2): imported as open"
            )
            status = "0"
        due_day = None
        if values["due"] or values["start"]:
            text = values["due"] or values["start"]
            when = parse_when(text)
            if when is None or when.year is None:
                header = "Due Date" if values["due"] else "Start Date"
                notes.append(
                    f"{header} '{text[:40]}' is not a date: left empty (kept in the extras)"
                )
                values["unreadable"][header] = text
            else:
                due_day = when_to_local_date(when, local_tz=tz)
        created_at = self._time(values, "created", "Created Time", tz)
        completed_at = self._time(values, "completed", "Completed Time", tz)
        labels = [t.strip() for t in values["tags"].split(",") if t.strip()]
        parent_id = values["parent_id"]
        parent = builder.key("task", parent_id) if parent_id in ids else list_key
        if parent_id and parent_id not in ids:
            builder.warn(
                f"{self.file_name}: row {row} has parentId {parent_id}, which is not in "
                "the file; imported under its list"
            )
            notes.append(f"its parent task {parent_id} is not in the file: imported under its list")
        title = values["title"].strip()
        body, items = _split_checklist(values["content"])
        recurrence = values["repeat"] or None
        key = builder.add_goal(
            builder.key("task", values["task_id"]),
            title=title,
            source_item=f"task '{' '.join(title.split())}' ({self.file_name}, row {row})",
            parent=parent,
            description=compose_description(body, labels=labels, recurrence=recurrence),
            priority=PRIORITY_MAP[priority_text],
            target_date=due_day,
            is_completed=status in DONE_STATUSES,
            completed_at=completed_at,
            created_at=created_at,
            updated_at=completed_at or created_at,
            extras={
                "folder": values["folder"],
                "labels": labels,
                "recurrence": recurrence,
                "reminder": values["reminder"],
                "start": iso_utc(self._time(values, "start", "Start Date", tz)),
                "due": iso_utc(self._time(values, "due", "Due Date", tz)),
                "allDay": values["all_day"] or None,
                "floating": values["floating"] or None,
                "timezone": tz_name,
                "archived": status == "2" or None,
                "order": values["order"],
                "column": values["column"],
                "kind": values["kind"],
                "unreadableDates": values["unreadable"] or None,
            },
        )
        for note in notes:
            builder.adjust(key, note)
        for position, (done, text) in enumerate(items):
            builder.add_progress(
                builder.key("checkitem", f"{values['task_id']}:{position}"),
                goal=key,
                value=1 if done else 0,
                max_value=1,
                notes=text,
                source_kind="check-list items",
                recorded_at=completed_at if done and completed_at else created_at,
            )


def _split_checklist(content: str) -> tuple[str, list[tuple[bool, str]]]:
    """The content's plain text, and its check-list lines (`▪ done`, `▫ open`, `- [x]`)."""
    body, items = [], []
    for line in content.splitlines():
        match = _CHECK_ITEM_RE.match(line)
        if match:
            items.append((match["done"] is not None, match["text"].strip()))
        else:
            body.append(line)
    return "\n".join(body).strip(), items
