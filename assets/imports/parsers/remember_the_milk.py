"""Remember The Milk: the account's JSON export, and the REST API responses backup tools save.

Two shapes carry the same things. The account export (Settings -> Account -> Export) is
one document of `lists`, `tasks` (one record per occurrence, grouped by `series_id`,
sub-tasks by `parent_id`) and `notes`, with dates as epoch milliseconds. The API responses
are `{"rsp": {"stat": "ok", "tasks": {"list": [{"taskseries": [{"task": [...]}]}]}}}` from
`rtm.tasks.getList` and `{"rsp": {"lists": {"list": [...]}}}` from `rtm.lists.getList`, with
ISO dates, and where one element stands alone an object replaces the array (the API's
XML-to-JSON heritage), so every "many" here also accepts one. A backup may be one such
document, an array of them, or a zip of files.

Lists become goals and task series sub-goals (sub-tasks under their parent). A repeating
series is one goal whose occurrences are Progress entries (1 done, 0 open); its state is
its newest open occurrence's. Smart lists (saved searches) and deleted items are reported
as skipped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    as_dict,
    as_text,
    compose_description,
    import_parser,
    reading_item,
)
from assets.imports.parsers.dates import UTC, from_epoch_ms, iso_utc, parse_timestamp, zone
from assets.imports.parsers.textio import app_json_documents

APP = "remember_the_milk"
PRIORITY_MAP = {"1": 5, "2": 3, "3": 1, "N": 2, "": 2}

GUIDE = """\
## Remember The Milk

**How to export**

On the web app, open **Settings** -> **Account** -> **Export your data**, and
choose the JSON export; RTM e-mails a link to the file. Upload the `.json` file (or the
`.zip` it came in). Backups made through RTM's API (the saved answers of
`rtm.lists.getList` and `rtm.tasks.getList`, one file or a zip of them) are read too.

**What goalport keeps**

- each list as a goal, its tasks under it, and sub-tasks under their task;
- task name, notes (as the description), completion (with its time), priority (1 becomes
  5, 2 becomes 3, 3 becomes 1), the due date as the target date, created and modified
  times;
- a repeating task as one goal: each of its occurrences is a check-in (done or not) and the
  repeat rule is kept as text;
- tags, the URL, location, estimate and postponement count, kept with the goal.

**What it cannot keep**

Smart lists (saved searches, they hold no tasks of their own),
deleted tasks and lists (reported as skipped), contacts, sharing and reminders.
"""


def many(value: Any) -> list:
    """An API "array": a list, one object standing for a one-element list, or nothing."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    return []


def _is_rsp(doc: Any) -> bool:
    rsp = as_dict(as_dict(doc).get("rsp"))
    return "stat" in rsp and any(k in rsp for k in ("tasks", "lists", "err"))


def _is_account_export(doc: Any) -> bool:
    if not isinstance(doc, dict) or "cards" in doc:
        return False
    tasks, lists = doc.get("tasks"), doc.get("lists")
    if not isinstance(tasks, list) or not isinstance(lists, list):
        return False
    if tasks:
        first = as_dict(tasks[0])
        return "list_id" in first and ("series_id" in first or "date_added" in first)
    return bool(lists) and all(
        isinstance(x, dict) and "name" in x and "date_created" in x for x in lists[:20]
    )


def is_remember_the_milk(doc: Any) -> bool:
    if isinstance(doc, list):
        return bool(doc) and _is_rsp(doc[0])
    return _is_rsp(doc) or _is_account_export(doc)


@dataclass
class _Occurrence:
    id: str
    due: dt.datetime | None = None
    due_has_time: bool = False
    added: dt.datetime | None = None
    completed: dt.datetime | None = None
    deleted: bool = False
    priority: str = "N"
    postponed: int = 0
    estimate: str = ""
    start: dt.datetime | None = None


@dataclass
class _Series:
    id: str
    where: str
    list_id: str = ""
    name: str = ""
    created: dt.datetime | None = None
    modified: dt.datetime | None = None
    tags: list[str] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)
    rrule: str = ""
    url: str = ""
    location: str = ""
    parent_task: str = ""
    source: str = ""
    occurrences: list[_Occurrence] = field(default_factory=list)


def _time(value: Any) -> dt.datetime | None:
    """Epoch milliseconds (the account export) or ISO text (the API); None for empty."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return from_epoch_ms(value)
    text = as_text(value).strip()
    if text.isdigit():
        return from_epoch_ms(int(text))
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    return parse_timestamp(text)


def _flag(value: Any) -> bool:
    return value is True or as_text(value).strip() in ("1", "true") or value == 1


def _priority(value: Any) -> str:
    text = as_text(value).strip().upper().removeprefix("P")
    if isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    return text if text in PRIORITY_MAP else "N"


def _count(value: Any) -> int:
    try:
        return int(as_text(value) or value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0


@import_parser("rememberthemilk_export.json")
def parse_remember_the_milk(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """An RTM account export or saved API responses (a file or a zip of them) as goals."""
    documents = app_json_documents(
        data,
        name,
        is_remember_the_milk,
        not_in_zip="the zip holds no Remember The Milk data",
        not_this_app="not a Remember The Milk export (lists and tasks) or API reply",
    )
    reader = _Reader(name)
    for where, doc in documents:
        for position, part in enumerate(doc if isinstance(doc, list) else [doc]):
            at = f"{where}[{position}]" if isinstance(doc, list) else where
            with reading_item(at, "document"):
                if _is_rsp(part):
                    reader.read_rsp(part["rsp"], at)
                elif _is_account_export(part):
                    reader.read_export(part, at)
    builder = ImportBuilder(APP, now=now, module_name="Remember The Milk")
    reader.emit(builder, zone(timezone))
    return builder.finish()


class _Reader:
    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.lists: dict[str, tuple[str, dict]] = {}
        self.series: dict[str, _Series] = {}
        self.task_series: dict[str, str] = {}  # occurrence (task) id -> series id
        self.deleted_series: dict[str, str] = {}

    def _series(self, series_id: str, where: str) -> _Series:
        found = self.series.get(series_id)
        if found is None:
            found = self.series[series_id] = _Series(series_id, where)
        return found

    # ------------------------------------------------------------ the API replies

    def read_rsp(self, rsp: dict, where: str) -> None:
        if as_text(rsp.get("stat")) != "ok":
            err = as_dict(rsp.get("err"))
            raise ImportFormatError(
                where,
                None,
                "stat",
                f"a saved API error, not data: {as_text(err.get('msg')) or 'stat is not ok'}",
            )
        for position, item in enumerate(many(as_dict(rsp.get("lists")).get("list"))):
            item = as_dict(item)
            list_id = as_text(item.get("id"))
            if list_id:
                self.lists[list_id] = (f"{where}: lists.list[{position}]", item)
        for position, entry in enumerate(many(as_dict(rsp.get("tasks")).get("list"))):
            entry = as_dict(entry)
            list_id = as_text(entry.get("id"))
            at = f"{where}: tasks.list[{position}]"
            for number, raw in enumerate(many(entry.get("taskseries"))):
                self._api_series(as_dict(raw), list_id, f"{at}.taskseries[{number}]")
            for raw in many(as_dict(entry.get("deleted")).get("taskseries")):
                series_id = as_text(as_dict(raw).get("id"))
                if series_id:
                    self.deleted_series[series_id] = f"{at}.deleted"

    def _api_series(self, raw: dict, list_id: str, where: str) -> None:
        series_id = as_text(raw.get("id"))
        if not series_id:
            raise ImportFormatError(self.file_name, where, "id", "a task series without an id")
        series = self._series(series_id, where)
        series.list_id = list_id or series.list_id
        series.name = as_text(raw.get("name")) or series.name
        series.created = _time(raw.get("created")) or series.created
        series.modified = _time(raw.get("modified")) or series.modified
        series.tags = [as_text(t) for t in many(as_dict(raw.get("tags")).get("tag"))] or [
            t for t in raw.get("tags") or [] if isinstance(t, str)
        ]
        for note in many(as_dict(raw.get("notes")).get("note")):
            note = as_dict(note)
            series.notes.append(
                {
                    "id": as_text(note.get("id")),
                    "title": as_text(note.get("title")),
                    "text": as_text(note.get("$t")) or as_text(note.get("content")),
                    "created": _time(note.get("created")),
                }
            )
        rrule = raw.get("rrule")
        series.rrule = as_text(as_dict(rrule).get("$t")) or as_text(rrule)
        series.url = as_text(raw.get("url"))
        series.location = as_text(raw.get("location_id"))
        series.source = as_text(raw.get("source"))
        series.parent_task = as_text(raw.get("parent_task_id"))
        for task in many(raw.get("task")):
            task = as_dict(task)
            task_id = as_text(task.get("id")) or f"{series_id}:{len(series.occurrences)}"
            self.task_series[task_id] = series_id
            series.occurrences.append(
                _Occurrence(
                    id=task_id,
                    due=_time(task.get("due")),
                    due_has_time=_flag(task.get("has_due_time")),
                    added=_time(task.get("added")),
                    completed=_time(task.get("completed")),
                    deleted=bool(as_text(task.get("deleted")).strip()),
                    priority=_priority(task.get("priority")),
                    postponed=_count(task.get("postponed")),
                    estimate=as_text(task.get("estimate")),
                    start=_time(task.get("start")),
                )
            )

    # ------------------------------------------------------------ the account export

    def read_export(self, doc: dict, where: str) -> None:
        for position, item in enumerate(doc.get("lists") or []):
            item = as_dict(item)
            list_id = as_text(item.get("id"))
            if list_id:
                self.lists[list_id] = (f"{where}: lists[{position}]", item)
        for position, task in enumerate(doc.get("tasks") or []):
            task = as_dict(task)
            at = f"{where}: tasks[{position}]"
            task_id = as_text(task.get("id"))
            series_id = as_text(task.get("series_id")) or task_id
            if not series_id:
                raise ImportFormatError(self.file_name, at, "id", "a task without an id")
            series = self._series(series_id, at)
            series.list_id = as_text(task.get("list_id")) or series.list_id
            series.name = as_text(task.get("name")) or series.name
            created = _time(task.get("date_created"))
            if created and (series.created is None or created < series.created):
                series.created = created
            modified = _time(task.get("date_modified"))
            if modified and (series.modified is None or modified > series.modified):
                series.modified = modified
            tags = task.get("tags")
            series.tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
            series.rrule = as_text(task.get("repeat")) or series.rrule
            series.url = as_text(task.get("url")) or series.url
            series.location = as_text(task.get("location_id")) or series.location
            series.source = as_text(task.get("source")) or series.source
            series.parent_task = as_text(task.get("parent_id")) or series.parent_task
            occurrence_id = task_id or f"{series_id}:{len(series.occurrences)}"
            self.task_series[occurrence_id] = series_id
            series.occurrences.append(
                _Occurrence(
                    id=occurrence_id,
                    due=_time(task.get("date_due")),
                    due_has_time=_flag(task.get("date_due_has_time")),
                    added=_time(task.get("date_added")) or created,
                    completed=_time(task.get("date_completed")),
                    deleted=_time(task.get("date_trashed") or task.get("date_deleted")) is not None
                    or task.get("deleted") is True,
                    priority=_priority(task.get("priority")),
                    postponed=_count(task.get("postponed")),
                    estimate=as_text(task.get("estimate")),
                    start=_time(task.get("date_start")),
                )
            )
        notes_by_series: dict[str, list[dict]] = {}
        for note in doc.get("notes") or []:
            note = as_dict(note)
            owner = as_text(note.get("series_id")) or self.task_series.get(
                as_text(note.get("task_id")), ""
            )
            notes_by_series.setdefault(owner, []).append(
                {
                    "id": as_text(note.get("id")),
                    "title": as_text(note.get("title")),
                    "text": as_text(note.get("content")) or as_text(note.get("text")),
                    "created": _time(note.get("date_created")),
                }
            )
        for series_id, notes in notes_by_series.items():
            if series_id in self.series:
                self.series[series_id].notes.extend(notes)

    # ------------------------------------------------------------ goals

    def emit(self, builder: ImportBuilder, user_tz: dt.tzinfo | None) -> None:
        list_keys: dict[str, str] = {}
        for list_id, (where, item) in self.lists.items():
            title = as_text(item.get("name")).strip() or "Untitled list"
            source = f"list '{title}' ({where})"
            key = builder.key("list", list_id)
            if _flag(item.get("deleted")):
                builder.skip(source, "deleted in Remember The Milk", external_key=key)
                continue
            if _flag(item.get("smart")):
                builder.skip(source, "a smart list (a saved search, no tasks of its own)")
                continue
            list_keys[list_id] = builder.add_goal(
                key,
                title=title,
                source_item=source,
                created_at=_time(item.get("date_created")),
                updated_at=_time(item.get("date_modified")),
                extras={
                    "archived": _flag(item.get("archived")) or None,
                    "locked": _flag(item.get("locked")) or None,
                    "position": as_text(item.get("position")),
                },
            )
        series_keys = {s: builder.key("series", s) for s in self.series}
        for series in self.series.values():
            with reading_item(self.file_name, series.where):
                self._series_goal(builder, series, list_keys, series_keys, user_tz or UTC)
        for series_id, where in self.deleted_series.items():
            if series_id not in self.series:
                builder.skip(f"task series {series_id} ({where})", "deleted in Remember The Milk")

    def _series_goal(
        self,
        builder: ImportBuilder,
        series: _Series,
        list_keys: dict[str, str],
        series_keys: dict[str, str],
        tz: dt.tzinfo,
    ) -> None:
        key = series_keys[series.id]
        name = " ".join(series.name.split())
        source = f"task '{name}' ({series.where})"
        live = [o for o in series.occurrences if not o.deleted]
        if series.id in self.deleted_series or not live:
            builder.skip(source, "deleted in Remember The Milk", external_key=key)
            return
        live.sort(key=lambda o: o.added or o.due or dt.datetime.min.replace(tzinfo=UTC))
        current = next((o for o in reversed(live) if o.completed is None), live[-1])
        parent_series = self.task_series.get(series.parent_task, series.parent_task)
        parent = series_keys.get(parent_series) if series.parent_task else None
        if parent == key:
            parent = None  # a task named as its own parent: under its list
        if series.parent_task and parent is None:
            builder.warn(
                f"{source}: its parent task {series.parent_task} is not in the export; "
                "imported under its list"
            )
        parent = parent or list_keys.get(series.list_id)
        if parent is None and series.list_id and series.list_id not in self.lists:
            parent = list_keys[series.list_id] = builder.add_goal(
                builder.key("list", series.list_id),
                title="Tasks",
                source_item=f"list {series.list_id} (not in the export)",
                extras={"placeholder": True},
            )
        target = current.due.astimezone(tz).date() if current.due is not None else None
        notes = [
            "\n".join(part for part in (n["title"].strip(), n["text"].strip()) if part)
            for n in series.notes
        ]
        body = "\n\n".join(n for n in notes if n)
        repeating = bool(series.rrule) or len(live) > 1
        recurrence = series.rrule or None
        created = series.created or min(
            (o.added for o in live if o.added is not None), default=None
        )
        goal = builder.add_goal(
            key,
            title=name,
            source_item=source,
            parent=parent,
            description=compose_description(body, labels=series.tags, recurrence=recurrence),
            priority=PRIORITY_MAP[current.priority],
            target_date=target,
            is_completed=current.completed is not None,
            completed_at=current.completed,
            created_at=created,
            updated_at=series.modified,
            extras={
                "labels": series.tags,
                "recurrence": recurrence,
                "notes": [
                    {"id": n["id"], "title": n["title"], "created": iso_utc(n["created"])}
                    for n in series.notes
                ],
                "due": iso_utc(current.due),
                "dueHasTime": current.due_has_time or None,
                "start": iso_utc(current.start),
                "postponed": current.postponed,
                "estimate": current.estimate,
                "url": series.url,
                "location": series.location,
                "source": series.source,
                "parentTask": series.parent_task,
                "taskId": current.id,
            },
        )
        if not repeating:
            return
        for occurrence in live:
            builder.add_progress(
                builder.key("task", occurrence.id),
                goal=goal,
                value=1 if occurrence.completed else 0,
                max_value=1,
                notes=f"due {occurrence.due.date().isoformat()}" if occurrence.due else None,
                source_kind="repeat occurrences",
                recorded_at=occurrence.completed or occurrence.due or occurrence.added,
                extras={"postponed": occurrence.postponed},
            )
