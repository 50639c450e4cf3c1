"""Google Tasks: `Tasks.json` from Google Takeout (the zip, or the file alone).

Each task list is a goal, its tasks are sub-goals and a task's sub-tasks (Google allows one
level) sit under it. Google's ids are stable, so they are the external ids. `due` is a
date (the Tasks API drops the time; Takeout keeps it for tasks made in Calendar, and then
the day is taken in the user's zone); `completed` is the completion time. Deleted tasks are
reported as skipped; Google has no recurrence, labels or priority, but a starred task is
imported with priority 4 (high).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    compose_description,
    import_parser,
    is_zip,
    safe_zip_members,
)
from assets.imports.parsers.dates import UTC, parse_timestamp, zone
from assets.imports.parsers.textio import load_json

APP = "google_tasks"
STARRED_PRIORITY = 4


GUIDE = """\
## Google Tasks

**How to export**

Go to **Google Takeout** (takeout.google.com), click **Deselect all**, tick **Tasks**,
then **Next step → Create export**, and upload the zip Google sends you (or the
`Tasks.json` inside it). The folder names follow the account's language; that is fine.

**What goalport keeps**

- Each task list as a goal, its tasks under it, sub-tasks under their task.
- Titles, notes, due dates, completion and its time, starred tasks as high priority.

**What it cannot keep**

- Deleted tasks (reported as skipped), repeats (Google does not export them), links to
  Gmail or Docs.
"""


def is_google_tasks(doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    if doc.get("kind") == "tasks#taskLists":
        return True
    items = doc.get("items")
    return (
        isinstance(items, list)
        and bool(items)
        and all(
            isinstance(i, dict) and str(i.get("kind", "")).startswith("tasks#task") for i in items
        )
    )


def is_takeout_tasks_member(name: str) -> bool:
    return name.casefold().endswith("tasks.json")


@import_parser("Tasks.json")
def parse_google_tasks(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """Google Takeout"s Tasks.json (or the Takeout zip holding it) as goals."""
    if is_zip(data):
        members = safe_zip_members(data, file_name=name, select=is_takeout_tasks_member)
        if not members:
            raise ImportFormatError(name, None, None, "the zip holds no Takeout Tasks/Tasks.json")
        member = sorted(members, key=lambda n: (not n.endswith("Tasks/Tasks.json"), n))[0]
        data, name = members[member], f"{name}/{member}"
    doc = load_json(data, file_name=name)
    if not is_google_tasks(doc):
        raise ImportFormatError(name, None, "kind", "not a Google Tasks export (tasks#taskLists)")
    builder = ImportBuilder(APP, now=now, tables=("Module", "Goal"), module_name="Google Tasks")
    tz = zone(timezone) or UTC
    if not isinstance(doc.get("items", []), list):
        raise ImportFormatError(name, None, "items", "is not a list of task lists")
    for list_position, task_list in enumerate(doc.get("items") or []):
        where = f"items[{list_position}]"
        list_id = _required_text(task_list, "id", name, where)
        title = _text(task_list.get("title")) or "Untitled list"
        list_updated = parse_timestamp(_text(task_list.get("updated")))
        list_key = builder.add_goal(
            builder.key("list", list_id),
            title=title,
            source_item=f"task list '{title}' ({where})",
            created_at=list_updated,
            updated_at=list_updated,
        )
        tasks = task_list.get("items") or []
        if not isinstance(tasks, list):
            raise ImportFormatError(name, where, "items", "is not a list of tasks")
        ids = {t["id"] for t in tasks if isinstance(t, dict) and isinstance(t.get("id"), str)}
        for position, task in enumerate(tasks):
            task_where = f"{where}.items[{position}]"
            with builder.row_or_skip(f"task ({name}, {task_where})"):
                task_id = _required_text(task, "id", name, task_where)
                _add_task(builder, task, task_id, task_where, list_key, ids, tz, name)
    return builder.finish()


def _add_task(
    builder: ImportBuilder,
    task: dict[str, Any],
    task_id: str,
    where: str,
    list_key: str,
    ids: set[str],
    tz: dt.tzinfo,
    file_name: str,
) -> None:
    title = _text(task.get("title")).strip()
    notes = _text(task.get("notes"))
    key = builder.key("task", task_id)
    if task.get("deleted"):
        builder.skip(f"task '{title}' ({where})", "deleted in Google Tasks", external_key=key)
        return
    if not title and not notes.strip():
        builder.skip(f"task ({where})", "empty task: no title and no notes", external_key=key)
        return
    parent_id = _text(task.get("parent"))
    parent = builder.key("task", parent_id) if parent_id else list_key
    if parent_id and parent_id not in ids:
        builder.warn(
            f"{file_name}: task '{title}' has parent {parent_id}, which is not in "
            "its list; imported at the list's level"
        )
        builder.adjust(
            key, f"its parent task {parent_id} is not in its list: imported under the list"
        )
        parent = list_key
    due_text = _text(task.get("due"))
    due = parse_timestamp(due_text)
    if due_text and due is None:
        raise ImportFormatError(file_name, where, "due", f"'{due_text}' is not a date")
    completed_at = parse_timestamp(_text(task.get("completed")))
    created = parse_timestamp(_text(task.get("created")))
    updated = parse_timestamp(_text(task.get("updated")))
    if not title:
        title = notes.strip().splitlines()[0]
    builder.add_goal(
        key,
        title=title,
        source_item=f"task '{title}' ({where})",
        parent=parent,
        description=compose_description(notes),
        priority=STARRED_PRIORITY if task.get("starred") else 2,
        target_date=_due_day(due_text, due, tz),
        # the status says whether it is done; a `completed` time on an open task (reopened
        # in Google Tasks) is reported and kept by the normalisation
        is_completed=task.get("status") == "completed"
        if task.get("status") in ("completed", "needsAction")
        else completed_at is not None,
        completed_at=completed_at,
        created_at=created,
        updated_at=updated,
        extras={
            "position": task.get("position"),
            "due": due_text,
            "hidden": task.get("hidden") or None,
            "starred": task.get("starred") or None,
            "taskType": task.get("task_type") or task.get("type"),
            "links": task.get("links"),
            "webViewLink": task.get("webViewLink"),
            "selfLink": task.get("selfLink"),
            "assignment": task.get("assignmentInfo"),
        },
    )


def _due_day(text: str, due: dt.datetime | None, tz: dt.tzinfo) -> dt.date | None:
    if due is None:
        return None
    if "T00:00:00" in text:  # the API's date-only form: the day itself, whatever the zone
        return due.date()
    return due.astimezone(tz).date()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _required_text(item: Any, field: str, file_name: str, where: str) -> str:
    if not isinstance(item, dict):
        raise ImportFormatError(file_name, where, None, "is not an object")
    value = item.get(field)
    if not isinstance(value, str) or not value:
        raise ImportFormatError(file_name, where, field, "missing or not text")
    return value
