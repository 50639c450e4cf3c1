"""Asana: the project CSV export (project menu -> Export -> CSV).

Each project named in `Projects` becomes a goal, its tasks sub-goals, and sub-tasks go under
the task their `Parent Task` names (Asana writes the parent's *name*, not its id; a
sub-task's `Projects` is empty, so it inherits its parent's project). Sections, assignee,
start date, tags and custom fields go to the extras; a `Priority` custom field is mapped
onto the app's scale. Files re-saved in a spreadsheet are read too (`M/D/YY` dates, other
delimiters); their ids may have become `1.20341E+15`, so such rows are keyed by content.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import Any

from assets.imports.parsers.base import (
    DEFAULT_PRIORITY,
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    as_dict,
    as_list,
    as_text,
    base_name,
    compose_description,
    import_parser,
    priority_from_label,
)
from assets.imports.parsers.dates import (
    When,
    parse_date,
    parse_timestamp,
    parse_when,
    when_to_utc,
    zone,
)
from assets.imports.parsers.textio import load_json, normalize_header, read_app_csv

APP = "asana"
_MANGLED_ID_RE = re.compile(r"^\d(?:[.,]\d+)?[eE]\+?\d+$")
_KNOWN_COLUMNS = {
    normalize_header(c)
    for c in (
        "Task ID",
        "Created At",
        "Completed At",
        "Last Modified",
        "Name",
        "Section/Column",
        "Assignee",
        "Assignee Email",
        "Start Date",
        "Due Date",
        "Tags",
        "Notes",
        "Projects",
        "Parent Task",
        "Priority",
    )
}


GUIDE = """\
## Asana

**How to export**

Open the project, click the **▾** next to its name, choose **Export / Print → CSV** (or
**JSON**), and upload the file. The CSV holds at most 2,000 tasks: use JSON for larger
projects.

**What goalport keeps**

- Each project as a goal, its tasks under it, sub-tasks under their task.
- Names, notes, due dates, completion and its time, creation and last-modified times,
  a **Priority** custom field; sections, assignee, tags and other custom fields with the
  import's extras.
- Files re-saved in a spreadsheet (`M/D/YY` dates, ids written as `1.2E+15`).

**What it cannot keep**

- Comments, attachments, followers, dependencies and portfolios.
"""


def is_asana_header(names: set[str]) -> bool:
    return {"task id", "name"} <= names and bool(
        names & {"completed at", "parent task", "projects", "created at"}
    )


@import_parser("asana.csv")
def parse_asana(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """An Asana project CSV or JSON export as goals (project -> task -> sub-task)."""
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return _parse_json_export(load_json(data, file_name=name), name, now, timezone)
    table = read_app_csv(
        data,
        file_name=name,
        is_header=is_asana_header,
        missing="no Asana header found (expected 'Task ID', 'Name', ...)",
    )
    builder = ImportBuilder(
        APP, now=now, tables=("Module", "Goal"), module_kind="work", module_name="Asana"
    )
    tz = zone(timezone)
    g = table.getter
    get = {
        "id": g("Task ID"),
        "created": g("Created At"),
        "completed": g("Completed At"),
        "modified": g("Last Modified"),
        "name": table.raw_getter("Name"),
        "section": g("Section/Column", "Section"),
        "assignee": g("Assignee"),
        "email": g("Assignee Email"),
        "start": g("Start Date"),
        "due": g("Due Date"),
        "tags": g("Tags"),
        "notes": table.raw_getter("Notes"),
        "projects": g("Projects"),
        "parent": g("Parent Task"),
        "priority": g("Priority"),
    }
    custom = [
        (h, i) for i, h in enumerate(table.header) if normalize_header(h) not in _KNOWN_COLUMNS
    ]
    default_project = base_name(name).rsplit(".", 1)[0] or "Asana"
    rows: list[dict[str, Any]] = []
    for row, cells in table.rows:
        values: dict[str, Any] = {field: getter(cells) for field, getter in get.items()}
        values["row"] = row
        values["title"] = " ".join(values["name"].split())
        if not values["title"]:
            builder.skip(f"{name}, row {row}", "task without a name")
            continue
        values["custom"] = {
            h: cells[i].strip() for h, i in custom if i < len(cells) and cells[i].strip()
        }
        rows.append(values)
    by_title: dict[str, list[dict[str, Any]]] = {}
    for values in rows:
        by_title.setdefault(values["title"], []).append(values)
    mangled = 0
    seen: dict[tuple, int] = {}
    for values in rows:
        task_id = values["id"]
        if not task_id or _MANGLED_ID_RE.match(task_id):
            mangled += bool(task_id)
            identity = (values["projects"], values["parent"], values["title"], values["assignee"])
            rank = seen.get(identity, 0)
            seen[identity] = rank + 1
            task_id = (
                "h" + hashlib.sha1("\x1f".join((*identity, str(rank))).encode()).hexdigest()[:20]
            )
        values["key"] = builder.key("task", task_id)
    if mangled:
        builder.warn(
            f"{name}: {mangled} task ids are in scientific notation (the file was "
            "re-saved in a spreadsheet); those tasks are matched by name on re-import"
        )
    for values in rows:
        parent_name = values["parent"]
        values["parent_row"] = None
        if parent_name:
            candidates = [
                c for c in by_title.get(" ".join(parent_name.split()), []) if c is not values
            ]
            if len(candidates) > 1:
                builder.warn(
                    f"{name}: row {values['row']}: several tasks are named "
                    f"'{parent_name}'; the first one is taken as the parent"
                )
            if candidates:
                values["parent_row"] = candidates[0]
            else:
                builder.warn(
                    f"{name}: row {values['row']}: parent task '{parent_name}' is not "
                    "in the file; imported under its project"
                )
                values.setdefault("adjustments", []).append(
                    f"its parent task '{parent_name[:80]}' is not in the file: imported under "
                    "its project"
                )
    projects: dict[str, str] = {}

    def project_of(values: dict[str, Any], depth: int = 0) -> str:
        listed = [p.strip() for p in values["projects"].split(",") if p.strip()]
        if listed:
            return listed[0]
        if values["parent_row"] is not None and depth < 50:
            return project_of(values["parent_row"], depth + 1)
        return default_project

    for values in rows:
        project = project_of(values)
        if project not in projects:
            projects[project] = builder.add_goal(
                builder.key("project", project),
                title=project,
                source_item=f"project '{project}' ({name})",
            )
        parent = values["parent_row"]["key"] if values["parent_row"] else projects[project]
        row = values["row"]
        labels = [t.strip() for t in values["tags"].split(",") if t.strip()]
        priority = DEFAULT_PRIORITY
        if values["priority"]:
            priority = priority_from_label(values["priority"]) or DEFAULT_PRIORITY
        completed_at = _timestamp(values, "completed", "Completed At", name, tz)
        key = builder.add_goal(
            values["key"],
            title=values["title"],
            source_item=f"task '{values['title']}' ({name}, row {row})",
            parent=parent,
            description=compose_description(values["notes"], labels=labels),
            priority=priority,
            target_date=_day(values, "due", "Due Date", name),
            is_completed=bool(values["completed"]),
            completed_at=completed_at,
            created_at=_timestamp(values, "created", "Created At", name, tz),
            updated_at=_timestamp(values, "modified", "Last Modified", name, tz),
            extras={
                "section": values["section"],
                "assignee": values["assignee"],
                "assigneeEmail": values["email"],
                "startDate": _iso_day(_day(values, "start", "Start Date", name)),
                "labels": labels,
                "projects": [p.strip() for p in values["projects"].split(",") if p.strip()],
                "priority": values["priority"],
                "customFields": values["custom"],
                "sourceId": values["id"],
                "unreadableDates": values.get("unreadable"),
            },
        )
        for note in values.get("adjustments", ()):
            builder.adjust(key, note)
    return builder.finish()


def _when(values: dict[str, Any], field: str, header: str, file_name: str) -> When | None:
    """The cell's date; one that is not a date is left out of the row (kept in the extras
    as the file wrote it), and the row says so in the mapping report."""
    text = values[field]
    if not text:
        return None
    when = parse_when(text)
    if when is None or when.year is None:
        unread = values.setdefault("unreadable", {})
        if header not in unread:
            unread[header] = text
            values.setdefault("adjustments", []).append(
                f"{header} '{text[:40]}' is not a date: left empty (kept in the extras)"
            )
        return None
    return when


def _day(values: dict[str, Any], field: str, header: str, file_name: str) -> dt.date | None:
    when = _when(values, field, header, file_name)
    return when.date() if when else None


def _timestamp(
    values: dict[str, Any], field: str, header: str, file_name: str, tz: dt.tzinfo | None
) -> dt.datetime | None:
    when = _when(values, field, header, file_name)
    return when_to_utc(when, assume_tz=tz) if when else None


def _iso_day(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


# ---------------------------------------------------------------- JSON export


def is_asana_json(doc: Any) -> bool:
    """Asana's JSON export: `{"data": [task, ...]}`, tasks with a `gid` and a `name`."""
    tasks = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(tasks, list) or not tasks:
        return False
    sample = [t for t in tasks[:20] if isinstance(t, dict)]
    return bool(sample) and all("gid" in t and "name" in t for t in sample)


def _parse_json_export(
    doc: Any, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """Tasks (and their nested `subtasks`) under their parent task or their first project;
    projects are keyed by name, tasks by gid, as in the CSV export of the same project."""
    if not is_asana_json(doc):
        raise ImportFormatError(name, None, None, "not an Asana export (expected 'data' tasks)")
    builder = ImportBuilder(
        APP, now=now, tables=("Module", "Goal"), module_kind="work", module_name="Asana"
    )
    tz = zone(timezone)
    default_project = base_name(name).rsplit(".", 1)[0] or "Asana"
    projects: dict[str, str] = {}
    # (task, where, its parent's key or None): walked with a list, not by recursion
    pending: list[tuple[Any, str, str | None]] = [
        (task, f"data[{i}]", None) for i, task in enumerate(doc["data"])
    ]
    pending.reverse()
    while pending:
        task, where, parent_key = pending.pop()
        if not isinstance(task, dict):
            builder.skip(f"{name}, {where}", "not an Asana task object", bad=True)
            continue
        title = " ".join(as_text(task.get("name")).split())
        if not title:
            builder.skip(f"{name}, {where}", "task without a name", bad=True)
            continue
        if parent_key is None and as_dict(task.get("parent")).get("gid"):
            parent_key = builder.key("task", as_dict(task["parent"])["gid"])
        if parent_key is None:
            project = _json_project(task) or default_project
            if project not in projects:
                projects[project] = builder.add_goal(
                    builder.key("project", project),
                    title=project,
                    source_item=f"project '{project}' ({name})",
                )
            parent_key = projects[project]
        key = _add_json_task(builder, task, title, f"{name}, {where}", parent_key, tz)
        children = as_list(task.get("subtasks"))
        pending.extend(
            (child, f"{where}.subtasks[{i}]", key)
            for i, child in reversed(list(enumerate(children)))
        )
    return builder.finish()


def _json_project(task: dict[str, Any]) -> str | None:
    for membership in as_list(task.get("memberships")):
        project = as_text(as_dict(as_dict(membership).get("project")).get("name")).strip()
        if project:
            return project
    for project in as_list(task.get("projects")):
        text = as_text(as_dict(project).get("name")).strip()
        if text:
            return text
    return None


def _add_json_task(
    builder: ImportBuilder,
    task: dict[str, Any],
    title: str,
    where: str,
    parent_key: str,
    tz: dt.tzinfo | None,
) -> str:
    def moment(field: str) -> dt.datetime | None:
        value = task.get(field)
        return parse_timestamp(value, assume_tz=tz) if isinstance(value, str) else None

    def day(field: str) -> dt.date | None:
        value = task.get(field)
        return parse_date(value) if isinstance(value, str) else None

    custom = {
        as_text(as_dict(f).get("name")): as_text(as_dict(f).get("display_value"))
        for f in as_list(task.get("custom_fields"))
        if as_text(as_dict(f).get("display_value"))
    }
    priority_text = next((v for k, v in custom.items() if k.casefold() == "priority"), "")
    labels = [as_text(as_dict(t).get("name")) for t in as_list(task.get("tags"))]
    labels = [label for label in labels if label]
    section = next(
        (
            as_text(as_dict(as_dict(m).get("section")).get("name"))
            for m in as_list(task.get("memberships"))
            if as_dict(as_dict(m).get("section")).get("name")
        ),
        None,
    )
    # `completed` says whether it is done; a completed_at on an open task is reported
    done = task.get("completed") is True or (
        task.get("completed") is None and bool(task.get("completed_at"))
    )
    return builder.add_goal(
        builder.key("task", str(task.get("gid"))),
        title=title,
        source_item=f"task '{title}' ({where})",
        parent=parent_key,
        description=compose_description(as_text(task.get("notes")), labels=labels),
        priority=priority_from_label(priority_text) or DEFAULT_PRIORITY,
        target_date=day("due_on") or _day_of(moment("due_at")),
        is_completed=done,
        completed_at=moment("completed_at"),  # on an open task: reported, kept
        created_at=moment("created_at"),
        updated_at=moment("modified_at"),
        extras={
            "section": section,
            "assignee": as_text(as_dict(task.get("assignee")).get("name")),
            "startDate": as_text(task.get("start_on")),
            "labels": labels,
            "customFields": custom,
            "sourceId": str(task.get("gid")),
        },
    )


def _day_of(moment: dt.datetime | None) -> dt.date | None:
    return moment.date() if moment else None
