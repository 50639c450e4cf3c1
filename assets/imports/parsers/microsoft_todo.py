"""Microsoft To Do: pages of its Microsoft Graph API, as export tools save them.

To Do has no file export of its own; tools save what `GET /me/todo/lists`,
`/lists/{id}/tasks` (and `/tasks/delta`, `/tasks/{id}/checklistItems`) return: OData pages
(`{"@odata.context": ..., "value": [...]}`), or list objects with their tasks inside, one
file per page or many in a zip. Every page is read; a page's list (or task) is found from
its `@odata.context`, `@odata.nextLink` or `@odata.deltaLink` URL, else from the object
around it. Lists are goals, tasks sub-goals and their checklist items ("steps")
sub-sub-goals. A task seen on several pages (delta pages repeat changed tasks) is imported
once, from its latest copy; delta's `@removed` entries are reported as skipped.

Times: `createdDateTime`/`lastModifiedDateTime` are UTC; the due, reminder, start and
completed times are `{dateTime, timeZone}` pairs whose zone may be an IANA name or a Windows
one (`W. Europe Standard Time`), translated through the CLDR table tzlocal ships.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote

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
from assets.imports.parsers.dates import (
    UTC,
    iso_utc,
    parse_timestamp,
    parse_when,
    truncate_to_ms,
    zone,
)
from assets.imports.parsers.textio import app_json_documents

APP = "microsoft_todo"
PRIORITY_MAP = {"low": 1, "normal": 2, "high": 4}
STATUSES = {"notStarted", "inProgress", "completed", "waitingOnOthers", "deferred"}
_BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol"}
MAX_NESTING = 8  # an array of lists holding task pages is 4 deep; more is no export

GUIDE = """\
## Microsoft To Do

**How to export**

Microsoft To Do has no export file of its own. Save your lists with a tool that
reads the Microsoft Graph API (Graph Explorer, a PowerShell or Python script, or a To Do
backup tool): the responses of `GET /me/todo/lists`, and of
`GET /me/todo/lists/{id}/tasks` (or `.../tasks/delta`) for each list, as `.json` files.
Upload one file, or a `.zip` of all of them. Tasks saved inside their list object
(`{"displayName": ..., "tasks": [...]}`) are read too.

**What goalport keeps**

- each list as a goal, its tasks under it, and each task's steps under the task;
- title, note (HTML notes as plain text), status (completed tasks are done, with their
  completion time), importance (High becomes priority 4), created and modified times, the
  due date as the target date (in the time zone To Do saved it in, Windows names included);
- categories as tags, the repeat rule as text, reminder and start times, "My Day" and
  linked resources, kept with the goal.

**What it cannot keep**

Attachments (only whether a task had some), flagged e-mails'
messages, shared lists' members, and tasks deleted before the export (a delta page's
deleted entries are reported as skipped).
"""


def _flat(values: dict) -> dict:
    """Only the scalar (and list-of-text) values: what Graph's recurrence objects hold."""
    kept: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, str | int | float | bool) and name[:1] != "@":
            kept[name] = value
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            kept[name] = value
    return kept


def _is_task(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and "title" in item
        and (
            item.get("status") in STATUSES
            or item.get("importance") in PRIORITY_MAP
            or isinstance(item.get("checklistItems"), list)
            or "@odata.etag" in item
        )
    )


def _is_list(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("displayName"), str)
        and "title" not in item
        and any(k in item for k in ("wellknownListName", "tasks", "isOwner", "isShared"))
    )


def is_microsoft_todo(doc: Any) -> bool:
    """A Graph To Do page, a list object (with its tasks), or an array of those."""
    if isinstance(doc, list):
        return (
            bool(doc) and all(isinstance(d, dict) for d in doc[:20]) and is_microsoft_todo(doc[0])
        )
    if not isinstance(doc, dict):
        return False
    context = as_text(doc.get("@odata.context"))
    if "/todo/" in context or "todoTask" in context:
        return bool(doc.get("value") is None or isinstance(doc.get("value"), list))
    if isinstance(doc.get("value"), list):
        values = doc["value"]
        return bool(values) and (_is_task(values[0]) or _is_list(values[0]))
    if isinstance(doc.get("list"), dict) and _is_list({**doc["list"], "tasks": []}):
        return True
    return _is_list(doc) and (
        isinstance(doc.get("tasks"), list | dict) or "wellknownListName" in doc
    )


def _between(text: str, start: str, ends: str) -> str:
    """The text after the first `start`, up to the first of the characters `ends`."""
    at = text.find(start)
    if at < 0:
        return ""
    rest = text[at + len(start) :]
    cut = len(rest)
    for end in ends:
        found = rest.find(end)
        if 0 <= found < cut:
            cut = found
    return unquote(rest[:cut])


def _owner_from_urls(doc: dict) -> tuple[str, str]:
    """(list id, task id) named by the page's OData URLs ('' when none)."""
    list_id = task_id = ""
    for name in ("@odata.context", "@odata.nextLink", "@odata.deltaLink"):
        url = as_text(doc.get(name))
        list_id = list_id or _between(url, "lists('", "'") or _between(url, "/lists/", "/?")
        task_id = task_id or _between(url, "tasks('", "'") or _between(url, "/tasks/", "/?")
    if task_id in ("delta",):
        task_id = ""
    return list_id, task_id


class _Text(HTMLParser):
    """An HTML note's text: tags dropped, each block a line, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("style", "script", "head"):
            self.hidden += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head"):
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    if "<" not in markup and "&" not in markup:
        return markup.strip()
    parser = _Text()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def graph_time(text: str) -> dt.datetime | None:
    """A Graph timestamp (`2024-01-10T09:14:02.1234567Z`; UTC when it names no zone)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return parse_timestamp(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return truncate_to_ms(moment.astimezone(UTC))
    except (OverflowError, ValueError):
        return None


@lru_cache(maxsize=1024)
def graph_zone(name: str) -> dt.tzinfo | None:
    """The zone a Graph `timeZone` names: IANA (`Europe/Paris`) or Windows (`Tokyo Standard
    Time`), or None when it is neither."""
    from tzlocal.windows_tz import win_tz

    name = name.strip()
    if name.casefold() in ("utc", "tzone://microsoft/utc", "etc/utc", "gmt"):
        return UTC
    return zone(name) or zone(win_tz.get(name))


def recurrence_text(recurrence: dict) -> str | None:
    """`every 2 weeks on monday, friday`: a Graph patternedRecurrence as words."""
    pattern = as_dict(recurrence.get("pattern"))
    kind = as_text(pattern.get("type"))
    if not kind:
        return None
    interval = pattern.get("interval")
    every = interval if isinstance(interval, int) and interval > 1 else 1
    unit = {
        "daily": "day",
        "weekly": "week",
        "absoluteMonthly": "month",
        "relativeMonthly": "month",
        "absoluteYearly": "year",
        "relativeYearly": "year",
    }.get(kind, kind)
    text = f"every {every} {unit}s" if every > 1 else f"every {unit}"
    days = [as_text(d).casefold() for d in as_list(pattern.get("daysOfWeek"))]
    days = [d for d in days if d]
    if days and kind in ("weekly", "relativeMonthly", "relativeYearly"):
        index = as_text(pattern.get("index"))
        prefix = f"the {index} " if kind != "weekly" and index else ""
        text += f" on {prefix}{', '.join(days)}"
    elif kind in ("absoluteMonthly", "absoluteYearly") and pattern.get("dayOfMonth"):
        text += f" on day {pattern.get('dayOfMonth')}"
        if kind == "absoluteYearly" and pattern.get("month"):
            text += f" of month {pattern.get('month')}"
    end = as_dict(recurrence.get("range"))
    if as_text(end.get("type")) == "endDate" and as_text(end.get("endDate")):
        text += f", until {as_text(end.get('endDate'))}"
    elif as_text(end.get("type")) == "numbered" and end.get("numberOfOccurrences"):
        text += f", {end.get('numberOfOccurrences')} times"
    return text


@import_parser("microsoft-todo.json")
def parse_microsoft_todo(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """Saved Graph pages of Microsoft To Do (a file, or a zip of them) as goals."""
    pages = app_json_documents(
        data,
        name,
        is_microsoft_todo,
        not_in_zip="the zip holds no Microsoft To Do pages",
        not_this_app="not a Microsoft To Do (Graph) page: expected lists or tasks",
    )
    builder = ImportBuilder(APP, now=now, tables=("Module", "Goal"), module_name="Microsoft To Do")
    reader = _Reader(builder, zone(timezone))
    for page_name, doc in pages:
        reader.collect(doc, page_name, "", "", "")
    reader.emit()
    return builder.finish()


class _Reader:
    def __init__(self, builder: ImportBuilder, user_tz: dt.tzinfo | None) -> None:
        self.builder = builder
        self.user_tz = user_tz
        self.lists: dict[str, tuple[str, dict]] = {}
        self.tasks: dict[str, tuple[str, str, dict]] = {}  # id -> (where, list id, task)
        self.task_order: list[str] = []
        self.steps: list[tuple[str, str, dict]] = []  # (where, task id, item)
        self.removed: dict[str, str] = {}
        self.superseded = 0

    # ------------------------------------------------------------ collecting pages

    def collect(
        self, doc: Any, where: str, list_id: str, task_id: str, kind: str, depth: int = 0
    ) -> None:
        if depth > MAX_NESTING:
            raise ImportFormatError(where, None, None, "pages nested too deeply")
        depth += 1
        if isinstance(doc, list):
            for position, item in enumerate(doc):
                self.collect(item, f"{where}[{position}]", list_id, task_id, kind, depth)
            return
        if not isinstance(doc, dict):
            return
        if isinstance(doc.get("value"), list):
            url_list, url_task = _owner_from_urls(doc)
            context = as_text(doc.get("@odata.context"))
            page_kind = "steps" if "checklistItems" in context else kind
            for position, item in enumerate(doc["value"]):
                self.collect(
                    item,
                    f"{where}: value[{position}]",
                    url_list or list_id,
                    url_task or task_id,
                    page_kind,
                    depth,
                )
            return
        if isinstance(doc.get("list"), dict):
            inner = doc["list"]
            self._add_list(inner, f"{where}: list")
            own = as_text(inner.get("id"))
            self.collect(doc.get("tasks"), f"{where}: tasks", own or list_id, "", "", depth)
            return
        if "@removed" in doc:
            item_id = as_text(doc.get("id"))
            if item_id:
                self.removed[item_id] = where
            return
        if kind == "steps" or ("isChecked" in doc and "displayName" in doc):
            self.steps.append((where, task_id, doc))
            return
        if _is_list(doc):
            self._add_list(doc, where)
            tasks = doc.get("tasks")
            if tasks is not None:
                own = as_text(doc.get("id")) or list_id
                self.collect(tasks, f"{where}: tasks", own, "", "", depth)
            return
        if "title" in doc:
            self._add_task(doc, where, list_id)

    def _add_list(self, item: dict, where: str) -> None:
        list_id = as_text(item.get("id")).strip()
        if not list_id:
            raise ImportFormatError(where, None, "id", "a list without an id")
        self.lists.setdefault(list_id, (where, item))

    def _add_task(self, task: dict, where: str, list_id: str) -> None:
        task_id = as_text(task.get("id")).strip()
        if not task_id:
            raise ImportFormatError(where, None, "id", "a task without an id")
        earlier = self.tasks.get(task_id)
        if earlier is None:
            self.task_order.append(task_id)
        else:
            self.superseded += 1
            mine = graph_time(as_text(task.get("lastModifiedDateTime")))
            theirs = graph_time(as_text(earlier[2].get("lastModifiedDateTime")))
            if mine is not None and theirs is not None and mine < theirs:
                return
            list_id = list_id or earlier[1]
        self.tasks[task_id] = (where, list_id, task)

    # ------------------------------------------------------------ emitting goals

    def emit(self) -> None:
        builder = self.builder
        if self.superseded:
            builder.warn(
                f"{self.superseded} task copies repeated on several pages: "
                "each task imported once, from its latest copy"
            )
        list_keys: dict[str, str] = {}
        for list_id, (where, item) in self.lists.items():
            if list_id in self.removed:
                continue
            with reading_item(where, "list"):
                list_keys[list_id] = self._list(list_id, item, where)
        task_keys: dict[str, str] = {}
        for task_id in self.task_order:
            where, list_id, task = self.tasks[task_id]
            if task_id in self.removed:
                builder.skip(
                    f"task '{as_text(task.get('title'))}' ({where})",
                    "removed from To Do (a delta page's @removed entry)",
                    external_key=builder.key("task", task_id),
                )
                continue
            parent = list_keys.get(list_id)
            if parent is None:
                parent = list_keys[list_id] = self._placeholder_list(list_id)
            with reading_item(where, "task"):
                task_keys[task_id] = self._task(task_id, task, where, parent)
        for task_id, where in self.removed.items():
            if task_id not in self.tasks and task_id not in self.lists:
                builder.skip(
                    f"deleted item {task_id} ({where})",
                    "removed from To Do (a delta page's @removed entry)",
                )
        for task_id in self.task_order:
            where, _, task = self.tasks[task_id]
            for position, item in enumerate(as_list(task.get("checklistItems"))):
                if isinstance(item, dict):
                    self.steps.append((f"{where}: checklistItems[{position}]", task_id, item))
        for where, task_id, item in self.steps:
            with reading_item(where, "checklist item"):
                self._step(item, where, task_keys.get(task_id))

    def _list(self, list_id: str, item: dict, where: str) -> str:
        title = as_text(item.get("displayName")).strip() or "Tasks"
        return self.builder.add_goal(
            self.builder.key("list", list_id),
            title=title,
            source_item=f"list '{title}' ({where})",
            extras={
                "wellknownListName": as_text(item.get("wellknownListName")),
                "isOwner": item.get("isOwner") is True or None,
                "isShared": item.get("isShared") is True or None,
            },
        )

    def _placeholder_list(self, list_id: str) -> str:
        title = "Tasks" if list_id else "Microsoft To Do"
        return self.builder.add_goal(
            self.builder.key("list", list_id or "unknown"),
            title=title,
            source_item=f"list {list_id or '(not named by the pages)'}",
            extras={"listId": list_id, "placeholder": True},
        )

    def _zoned(self, value: Any) -> tuple[dt.datetime | None, dt.tzinfo | None, bool]:
        """A `{dateTime, timeZone}` pair: (UTC instant, its zone, whether it is midnight)."""
        pair = as_dict(value)
        text = as_text(pair.get("dateTime")).strip()
        if not text:
            return None, None, False
        try:
            local = dt.datetime.fromisoformat(text)
        except ValueError:
            when = parse_when(text)
            if when is None or when.year is None:
                self.builder.warn(f"'{text}' is not a date-time; left empty")
                return None, None, False
            local = dt.datetime.combine(when.date(), when.time or dt.time(0), tzinfo=when.tz)
        zone_name = as_text(pair.get("timeZone"))
        tz = local.tzinfo or (graph_zone(zone_name) if zone_name else None)
        if tz is None:
            if zone_name:
                self.builder.warn(f"time zone '{zone_name}' is unknown; read in the user's zone")
            tz = self.user_tz or UTC
        try:
            instant = truncate_to_ms(local.replace(tzinfo=tz).astimezone(UTC))
        except (OverflowError, ValueError):
            self.builder.warn(f"'{text}' is out of range; left empty")
            return None, None, False
        return instant, tz, local.time() == dt.time(0)

    def _due_day(self, value: Any) -> tuple[dt.date | None, dt.datetime | None]:
        """The due day: a midnight is a date-only due (that day, in its own zone); any other
        time is an instant, whose day is taken in the user's zone (To Do clients write an
        all-day due as the local midnight in UTC)."""
        instant, tz, midnight = self._zoned(value)
        if instant is None or tz is None:
            return None, None
        if midnight:
            return instant.astimezone(tz).date(), instant
        return instant.astimezone(self.user_tz or tz).date(), instant

    def _task(self, task_id: str, task: dict, where: str, parent: str) -> str:
        builder = self.builder
        title = as_text(task.get("title"))
        body = as_dict(task.get("body"))
        content = as_text(body.get("content"))
        if as_text(body.get("contentType")).casefold() == "html" and content:
            content = html_to_text(content)
        status = as_text(task.get("status"))
        if status and status not in STATUSES:
            builder.warn(f"{where}: status '{status}' is not To Do's; imported as not started")
        importance = as_text(task.get("importance")).casefold()
        labels = [c for c in (as_text(c).strip() for c in as_list(task.get("categories"))) if c]
        recurrence = as_dict(task.get("recurrence"))
        repeats = recurrence_text(recurrence) if recurrence else None
        target, due = self._due_day(task.get("dueDateTime"))
        completed, _, _ = self._zoned(task.get("completedDateTime"))
        reminder, _, _ = self._zoned(task.get("reminderDateTime"))
        start, _, _ = self._zoned(task.get("startDateTime"))
        return builder.add_goal(
            builder.key("task", task_id),
            title=title,
            source_item=f"task '{' '.join(title.split())}' ({where})",
            parent=parent,
            description=compose_description(content, labels=labels, recurrence=repeats),
            priority=PRIORITY_MAP.get(importance, 2),
            target_date=target,
            is_completed=status == "completed",
            completed_at=completed,
            created_at=graph_time(as_text(task.get("createdDateTime"))),
            updated_at=graph_time(as_text(task.get("lastModifiedDateTime"))),
            extras={
                "status": status,
                "importance": importance,
                "labels": labels,
                "recurrence": repeats,
                "recurrenceRule": {
                    part: _flat(as_dict(recurrence.get(part))) for part in ("pattern", "range")
                }
                if recurrence
                else None,
                "due": iso_utc(due),
                "dueTimeZone": as_text(as_dict(task.get("dueDateTime")).get("timeZone")),
                "reminder": iso_utc(reminder),
                "isReminderOn": task.get("isReminderOn") is True or None,
                "start": iso_utc(start),
                "hasAttachments": task.get("hasAttachments") is True or None,
                "linkedResources": [
                    {
                        k: as_text(r.get(k))
                        for k in ("webUrl", "applicationName", "displayName")
                        if as_text(r.get(k))
                    }
                    for r in (as_dict(r) for r in as_list(task.get("linkedResources")))
                ],
            },
        )

    def _step(self, item: dict, where: str, task_key: str | None) -> None:
        builder = self.builder
        step_id = as_text(item.get("id")).strip()
        title = as_text(item.get("displayName"))
        if not step_id:
            raise ValueError("a checklist item without an id")
        if task_key is None:
            builder.skip(
                f"checklist item '{title}' ({where})",
                "its task is not in the export",
                external_key=builder.key("step", step_id),
            )
            return
        checked = item.get("isChecked") is True
        created = graph_time(as_text(item.get("createdDateTime")))
        builder.add_goal(
            builder.key("step", step_id),
            title=title,
            source_item=f"checklist item '{' '.join(title.split())}' ({where})",
            parent=task_key,
            is_completed=checked,
            completed_at=graph_time(as_text(item.get("checkedDateTime"))),
            created_at=created,
            updated_at=created,
        )
