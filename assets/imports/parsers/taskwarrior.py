"""Taskwarrior: what `task export` prints (a JSON array; one object per line before 2.4).

Projects are dotted paths (`Home.Garden`); each part becomes a goal, so a task sits under
its project's goals, as deep as the app's three levels allow (deeper ones are flattened by
the builder). A recurring task is one goal: the template (`status: recurring`) is imported,
and each instance Taskwarrior generated from it (`parent` = the template's uuid) is a
Progress entry of that goal, 1 when done and 0 while pending. Deleted tasks are reported as
skipped. Tags, annotations, dependencies, urgency and user-defined attributes (UDAs) have
no column in the app and go to extras. Taskwarrior's uuids are stable, so they are the keys.
"""

from __future__ import annotations

import datetime as dt
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
from assets.imports.parsers.dates import UTC, iso_utc, parse_timestamp, zone
from assets.imports.parsers.textio import decode_text, load_json

APP = "taskwarrior"
PRIORITY_MAP = {"H": 5, "M": 3, "L": 1, "": 2}
STATUSES = {"pending", "completed", "deleted", "waiting", "recurring"}
KNOWN_FIELDS = {
    "id",
    "uuid",
    "description",
    "status",
    "entry",
    "modified",
    "end",
    "due",
    "wait",
    "scheduled",
    "start",
    "until",
    "project",
    "tags",
    "annotations",
    "depends",
    "recur",
    "parent",
    "mask",
    "imask",
    "rtype",
    "template",
    "last",
    "priority",
    "urgency",
}

GUIDE = """\
## Taskwarrior

**How to export**

In a terminal, run `task export > taskwarrior.json` (add a filter such as
`task project:Home export` for part of your tasks; `task rc.hooks=off export` if a hook
prints extra lines). Upload `taskwarrior.json`. Exports of Taskwarrior 1.x/2.x that print
one task per line are read too.

**What goalport keeps**

- each part of a project (`Home.Garden`) as a goal, with the project's tasks under it
  (three levels at most: deeper tasks move up beside their parent);
- description, status (completed tasks are done, with their end time), entry and modified
  times, the due date as the goal's target date, priority (H, M, L);
- a recurring task as one goal; every instance Taskwarrior generated is a check-in of it
  (done or not);
- tags, annotations (as comments), dependencies, wait/scheduled/until dates, urgency and
  your UDAs, kept with the goal and shown at the end of its description where useful.

**What it cannot keep**

Deleted tasks (reported as skipped), the numeric task ids (they
change all the time; the uuid is kept), hooks, reports and contexts.
"""


def _is_task(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("uuid"), str)
        and "description" in item
        and isinstance(item.get("entry"), str)
        and item.get("status") in STATUSES
    )


def is_taskwarrior(doc: Any) -> bool:
    """A JSON array of Taskwarrior tasks (or one task: a one-line export)."""
    if isinstance(doc, dict):
        return _is_task(doc)
    return isinstance(doc, list) and bool(doc) and _is_task(doc[0])


def is_taskwarrior_lines(text: str) -> bool:
    """An old export: one task object per line (maybe comma-terminated), not one document."""
    first = text.lstrip("\ufeff \t\r\n").split("\n", 1)[0].strip().rstrip(",")
    if not first.startswith("{"):
        return False
    try:
        return _is_task(load_json(first.encode(), file_name="line"))
    except ImportFormatError:
        return False


def parse_tw_time(value: Any) -> dt.datetime | None:
    """`20240131T120000Z` (Taskwarrior's own form), ISO 8601, or epoch seconds as text."""
    text = as_text(value).strip()
    if not text:
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = str(int(value))
        else:
            return None
    if (
        len(text) == 16
        and text[8] == "T"
        and text[15] == "Z"
        and text.replace("T", "0", 1)[:15].isdigit()
    ):
        try:
            return dt.datetime(
                int(text[0:4]),
                int(text[4:6]),
                int(text[6:8]),
                int(text[9:11]),
                int(text[11:13]),
                int(text[13:15]),
                tzinfo=UTC,
            )
        except ValueError:
            return None
    if text.isdigit() and len(text) <= 12:
        try:
            return dt.datetime.fromtimestamp(int(text), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return parse_timestamp(text)


def _documents(data: bytes, name: str) -> list[Any]:
    """The task objects, from an array export or a line-per-task export."""
    try:
        doc = load_json(data, file_name=name)
    except ImportFormatError as exc:
        text = decode_text(data, file_name=name)
        if not is_taskwarrior_lines(text):
            raise exc from None
        tasks = []
        for number, line in enumerate(text.split("\n"), start=1):
            line = line.strip().rstrip(",").strip()
            if line in ("", "[", "]"):
                continue
            tasks.append(load_json(line.encode(), file_name=f"{name}, line {number}"))
        return tasks
    if isinstance(doc, dict) and _is_task(doc):
        return [doc]
    if not isinstance(doc, list):
        raise ImportFormatError(name, None, None, "not a Taskwarrior export (a list of tasks)")
    return doc


@import_parser("taskwarrior.json")
def parse_taskwarrior(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """`task export` output as goals (projects -> tasks), recurring instances as progress."""
    tasks = _documents(data, name)
    if tasks and not any(_is_task(t) for t in tasks[:50]):
        raise ImportFormatError(
            name, "[0]", None, "not a Taskwarrior export (tasks have uuid, description, entry)"
        )
    builder = ImportBuilder(APP, now=now, module_name="Taskwarrior")
    _Reader(builder, name, zone(timezone) or UTC).read(tasks)
    return builder.finish()


class _Reader:
    def __init__(self, builder: ImportBuilder, file_name: str, tz: dt.tzinfo) -> None:
        self.builder = builder
        self.file_name = file_name
        self.tz = tz
        self.projects: dict[str, str] = {}
        self.descriptions: dict[str, str] = {}

    def read(self, tasks: list[Any]) -> None:
        templates: dict[str, str] = {}
        instances: list[tuple[int, dict]] = []
        regular: list[tuple[int, dict]] = []
        for position, task in enumerate(tasks):
            where = f"[{position}]"
            if not isinstance(task, dict):
                raise ImportFormatError(self.file_name, where, None, "is not a task object")
            uuid = as_text(task.get("uuid")).strip()
            if not uuid:
                raise ImportFormatError(self.file_name, where, "uuid", "missing or not text")
            self.descriptions.setdefault(uuid, " ".join(as_text(task.get("description")).split()))
            if task.get("status") == "recurring":
                templates[uuid] = ""
            if as_text(task.get("parent")):
                instances.append((position, task))
            else:
                regular.append((position, task))
        for position, task in regular:
            with reading_item(self.file_name, f"[{position}]"):
                key = self._task(position, task)
                if key and task.get("status") == "recurring":
                    templates[as_text(task.get("uuid")).strip()] = key
        for position, task in instances:
            with reading_item(self.file_name, f"[{position}]"):
                template = templates.get(as_text(task.get("parent")))
                if template:
                    self._instance(position, task, template)
                else:
                    self._task(position, task)  # its template is not in the export

    def _project(self, path: str) -> str | None:
        parent = None
        parts = [p.strip() for p in path.split(".") if p.strip()]
        for depth in range(1, len(parts) + 1):
            full = ".".join(parts[:depth])
            key = self.projects.get(full)
            if key is None:
                key = self.projects[full] = self.builder.add_goal(
                    self.builder.key("project", full),
                    title=parts[depth - 1],
                    source_item=f"project '{full}'",
                    parent=parent,
                    extras={"project": full},
                )
            parent = key
        return parent

    def _task(self, position: int, task: dict) -> str | None:
        builder, where = self.builder, f"[{position}]"
        uuid = as_text(task.get("uuid")).strip()
        status = as_text(task.get("status"))
        description = " ".join(as_text(task.get("description")).split())
        source = f"task '{description}' ({where})"
        if status == "deleted":
            builder.skip(source, "deleted in Taskwarrior", external_key=builder.key("task", uuid))
            return None
        if status not in STATUSES:
            builder.warn(f"{self.file_name}: {where} has status '{status}'; imported as pending")
        priority_text = as_text(task.get("priority")).strip().upper()
        if priority_text not in PRIORITY_MAP:
            builder.warn(
                f"{self.file_name}: {where} has priority '{priority_text}'; imported as none"
            )
        labels = [t for t in (as_text(tag).strip() for tag in as_list(task.get("tags"))) if t]
        annotations = [as_dict(a) for a in as_list(task.get("annotations"))]
        comments = [as_text(a.get("description")) for a in annotations]
        depends = _depends(task.get("depends"))
        recurrence = as_text(task.get("recur")) or None
        due = parse_tw_time(task.get("due"))
        end = parse_tw_time(task.get("end"))
        footer = [f"Depends on: {self.descriptions.get(d, d)}" for d in depends]
        body = "\n".join(footer) if footer else None
        return builder.add_goal(
            builder.key("task", uuid),
            title=description,
            source_item=source,
            parent=self._project(as_text(task.get("project"))),
            description=compose_description(
                body, labels=labels, recurrence=recurrence, comments=comments
            ),
            priority=PRIORITY_MAP.get(priority_text, 2),
            target_date=due.astimezone(self.tz).date() if due else None,
            is_completed=status == "completed",
            completed_at=end,
            created_at=parse_tw_time(task.get("entry")),
            updated_at=parse_tw_time(task.get("modified")),
            extras={
                "status": status,
                "project": as_text(task.get("project")),
                "labels": labels,
                "annotations": [
                    {
                        "entry": iso_utc(parse_tw_time(a.get("entry"))),
                        "description": as_text(a.get("description")),
                    }
                    for a in annotations
                ],
                "depends": depends,
                "recurrence": recurrence,
                "due": iso_utc(due),
                "wait": iso_utc(parse_tw_time(task.get("wait"))),
                "scheduled": iso_utc(parse_tw_time(task.get("scheduled"))),
                "start": iso_utc(parse_tw_time(task.get("start"))),
                "until": iso_utc(parse_tw_time(task.get("until"))),
                "mask": as_text(task.get("mask")),
                "parent": as_text(task.get("parent")),
                "urgency": task.get("urgency") if _is_number(task.get("urgency")) else None,
                "uda": {
                    k: v
                    for k, v in task.items()
                    if k not in KNOWN_FIELDS and isinstance(v, str | int | float | bool)
                },
            },
        )

    def _instance(self, position: int, task: dict, template: str) -> None:
        builder = self.builder
        uuid = as_text(task.get("uuid")).strip()
        status = as_text(task.get("status"))
        key = builder.key("instance", uuid)
        if status == "deleted":
            builder.skip(
                f"instance of a recurring task ([{position}])",
                "deleted in Taskwarrior",
                external_key=key,
            )
            return
        done = status == "completed"
        due = parse_tw_time(task.get("due"))
        builder.add_progress(
            key,
            goal=template,
            value=1 if done else 0,
            max_value=1,
            notes=f"due {due.date().isoformat()}" if due else None,
            source_kind="recurring instances",
            recorded_at=(parse_tw_time(task.get("end")) if done else None)
            or due
            or parse_tw_time(task.get("entry")),
            extras={"status": status, "imask": task.get("imask"), "due": iso_utc(due)},
        )


def _depends(value: Any) -> list[str]:
    """`depends`: a list of uuids (2.6+), or one comma-separated string (older versions)."""
    if isinstance(value, str):
        return [d.strip() for d in value.split(",") if d.strip()]
    return [d.strip() for d in as_list(value) if isinstance(d, str) and d.strip()]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
