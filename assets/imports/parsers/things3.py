"""Things 3: its database, `main.sqlite` (with `-wal`), read as an untrusted file.

Things has no export: the user uploads the database, alone, or zipped as the
`ThingsData-*` folder or its `Things Database.thingsdatabase` bundle. Areas become goals,
projects goals under their area, headings goals under their project and to-dos goals under
their heading, project or area (inbox to-dos at the top); a fourth level is flattened by
the builder. `TMTask.status` 3 is done and 2 cancelled (kept open, the cancellation in the
extras), `stopDate` the completion time, the deadline the target date; checklist items are
progress entries of their to-do (1 ticked, 0 not), tags are kept. A repeating to-do is its
template, imported once with its rule; the instances Things made of it are reported, not
imported. Trashed items are skipped.

Two schemas: Things 3.15.16 (2023) and later write `deadline`/`startDate` as packed
integers (year << 16 | month << 12 | day << 7) and `rt1_recurrenceRule`; earlier versions
`dueDate`/`startDate` as REAL seconds and `recurrenceRule`. Times of either are Unix
seconds, or (some early databases) seconds since 2001-01-01, told apart by size.
"""

from __future__ import annotations

import datetime as dt
import plistlib
import sqlite3
from typing import Any

from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    base_name,
    compose_description,
    import_parser,
    is_zip,
    reading_item,
    safe_zip_members,
)
from assets.imports.parsers.dates import UTC, zone
from assets.imports.parsers.untrusted_sqlite import (
    SQLITE_LIMITS,
    SqliteLimits,
    columns_of,
    is_sqlite,
    open_untrusted_sqlite,
    query,
    table_kinds,
)

APP = "things3"
TODO, PROJECT, HEADING = 0, 1, 2
OPEN, CANCELLED, COMPLETED = 0, 2, 3
CORE_DATA_EPOCH = 978307200  # 2001-01-01 in Unix seconds
_UNITS = {16: "day", 256: "week", 8: "month", 4: "year"}
_WHEN = {0: "Inbox", 1: "Anytime", 2: "Someday"}
_REQUIRED = {"uuid", "type", "status", "trashed", "title"}
_OPTIONAL = (
    "notes",
    "creationDate",
    "userModificationDate",
    "stopDate",
    "start",
    "startDate",
    "deadline",
    "dueDate",
    "area",
    "project",
    "heading",
    "index",
    "rt1_recurrenceRule",
    "rt1_repeatingTemplate",
    "recurrenceRule",
    "repeatingTemplate",
)

GUIDE = """\
## Things 3

**How to export**

Things has no export command; goalport reads its database. On the Mac, quit
Things, open **Finder → Go → Go to Folder…** and paste
`~/Library/Group Containers/JLMPQHK86H.com.culturedcode.ThingsMac/`. Open the
`ThingsData-…` folder, compress the **Things Database.thingsdatabase** folder (right-click →
**Compress**) and upload the zip. Uploading `main.sqlite` alone works too, but the zip also
carries the changes still in `main.sqlite-wal`.

**What goalport keeps**

Areas, projects, headings and to-dos (as goals nested in that order, three levels
at most: a to-do under a heading of a project in an area sits beside its heading), notes,
deadlines, whether an item is completed and when, cancelled items (open, marked cancelled),
checklists (as progress of their to-do), tags, When (Inbox, Anytime, Someday, a start date),
repeating to-dos (once, with their rule in the description).

**What it cannot keep**

Reminders' times, the Logbook's order, the copies Things made of a repeating
to-do (they are counted in the report), the Trash (listed as skipped).
"""


def things_member(name: str) -> bool:
    return base_name(name) in ("main.sqlite", "main.sqlite-wal")


@import_parser("main.sqlite")
def parse_things3(
    data: bytes,
    name: str,
    now: dt.datetime | None,
    timezone: str | None,
    sqlite_limits: SqliteLimits = SQLITE_LIMITS,
) -> ParsedImport:
    """A Things 3 database (the file, or a zip of its folder) as areas, projects and to-dos."""
    wal = None
    if is_zip(data):
        members = safe_zip_members(data, file_name=name, select=things_member)
        mains = sorted(p for p in members if p.endswith("main.sqlite"))
        if not mains:
            raise ImportFormatError(name, None, None, "the zip holds no Things main.sqlite")
        path = mains[0]
        data, wal = members[path], members.get(path + "-wal")
        name = f"{name}/{path}"
    builder = ImportBuilder(APP, now=now, module_name="Things 3")
    with open_untrusted_sqlite(data, file_name=name, wal=wal, limits=sqlite_limits) as db:
        with reading_item(name, "TMTask"):
            _Database(builder, db, name, zone(timezone) or UTC).read()
    return builder.finish()


def looks_like_things(data: bytes) -> bool:
    """An SQLite file whose first pages name Things' tables (checked without opening it)."""
    head = data[:262144]
    return is_sqlite(data) and b"TMTask" in head and b"TMArea" in head


def moment(value: Any) -> dt.datetime | None:
    """A Things timestamp (REAL seconds) as UTC; None when empty or impossible."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return None
    seconds = float(value)
    if seconds < CORE_DATA_EPOCH:
        seconds += CORE_DATA_EPOCH
    try:
        return dt.datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def packed_date(value: Any) -> dt.date | None:
    """A packed `YYYYYYYYYYYMMMMDDDDD0000000` integer date; None when empty or impossible."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    try:
        return dt.date(value >> 16, (value >> 12) & 0xF, (value >> 7) & 0x1F)
    except (ValueError, OverflowError):
        return None


def recurrence_text(blob: Any) -> str | None:
    """`every 2 weeks` from the plist rule of a repeating to-do; `repeating` if unreadable."""
    if blob is None or blob == b"" or blob == "":
        return None
    raw = blob.encode() if isinstance(blob, str) else blob
    try:
        rule = plistlib.loads(raw) if isinstance(raw, bytes) else None
    except Exception:  # noqa: BLE001 - any malformed plist only loses the rule's wording
        rule = None
    if not isinstance(rule, dict):
        return "repeating"
    frequency = rule.get("fu")
    unit = _UNITS.get(frequency) if isinstance(frequency, int) else None
    amount = rule.get("fa") if isinstance(rule.get("fa"), int) else 1
    if unit is None:
        return "repeating"
    text = f"every {unit}" if amount == 1 else f"every {amount} {unit}s"
    return text + (" after completion" if rule.get("tp") == 1 else "")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _notes(value: Any) -> str:
    text = _text(value)
    if text.startswith("<note"):  # some versions wrap notes in XML
        text = text.split(">", 1)[-1].rsplit("</note>", 1)[0]
    return text


class _Database:
    def __init__(
        self, builder: ImportBuilder, db: sqlite3.Connection, file_name: str, tz: dt.tzinfo
    ) -> None:
        self.builder = builder
        self.db = db
        self.file_name = file_name
        self.tz = tz

    def _rows(self, table: str, wanted: tuple[str, ...], required: set[str]) -> list[dict]:
        columns = columns_of(self.db, table, self.file_name)
        missing = required - columns
        if missing:
            raise ImportFormatError(
                self.file_name, table, None, f"lacks columns {', '.join(sorted(missing))}"
            )
        chosen = [c for c in (*sorted(required), *wanted) if c in columns]
        sql = f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in chosen)} FROM "{table}"'
        return [
            dict(zip(chosen, row, strict=True))
            for row in query(self.db, sql, self.file_name, table)
        ]

    def read(self) -> None:
        kinds = table_kinds(self.db, self.file_name)
        if kinds.get("TMTask") != "table":
            raise ImportFormatError(
                self.file_name, None, None, "not a Things database (no TMTask table)"
            )
        for name in ("TMArea", "TMTag", "TMTaskTag", "TMChecklistItem"):
            if name in kinds and kinds[name] != "table":
                raise ImportFormatError(self.file_name, name, None, "is a view, not a table")
        areas = self._rows("TMArea", ("index",), {"uuid", "title"}) if "TMArea" in kinds else []
        tasks = self._rows("TMTask", _OPTIONAL, _REQUIRED)
        tags = self._tags(kinds)
        checklist = (
            self._rows(
                "TMChecklistItem",
                ("status", "stopDate", "creationDate", "userModificationDate", "index"),
                {"uuid", "title", "task"},
            )
            if "TMChecklistItem" in kinds
            else []
        )
        for position, area in enumerate(sorted(areas, key=_order)):
            self.builder.add_goal(
                self.builder.key("area", _text(area["uuid"])),
                title=_text(area["title"]) or "Untitled area",
                source_item=f"area '{_text(area['title'])}' (TMArea row {position + 1})",
                extras={"tags": tags.get(_text(area["uuid"]), [])},
            )
        self._tasks(tasks, {_text(a["uuid"]) for a in areas}, tags)
        self._checklists(checklist)

    def _tags(self, kinds: dict[str, str]) -> dict[str, list[str]]:
        if "TMTag" not in kinds or "TMTaskTag" not in kinds:
            return {}
        names = {
            _text(r["uuid"]): _text(r["title"]) for r in self._rows("TMTag", (), {"uuid", "title"})
        }
        tags: dict[str, list[str]] = {}
        for link in self._rows("TMTaskTag", (), {"tasks", "tags"}):
            name = names.get(_text(link["tags"]))
            if name:
                tags.setdefault(_text(link["tasks"]), []).append(name)
        return {task: sorted(set(values)) for task, values in tags.items()}

    def _tasks(self, tasks: list[dict], areas: set[str], tags: dict[str, list[str]]) -> None:
        builder = self.builder
        by_uuid = {_text(t["uuid"]): t for t in tasks}
        instances: dict[str, list[dict]] = {}
        for task in tasks:
            template = _text(task.get("rt1_repeatingTemplate") or task.get("repeatingTemplate"))
            if template and template in by_uuid:
                instances.setdefault(template, []).append(task)
        gone = {u for u, t in by_uuid.items() if t["trashed"]}
        self.imported: set[str] = set()
        ordered = sorted(
            tasks, key=lambda t: (t["type"] != PROJECT, t["type"] != HEADING, _order(t))
        )
        for task in ordered:
            uuid = _text(task["uuid"])
            title = _text(task["title"])
            kind = {TODO: "to-do", PROJECT: "project", HEADING: "heading"}.get(task["type"], "item")
            label = f"{kind} '{title}' (TMTask {uuid})"
            key = builder.key("task", uuid)
            parents = [_text(task.get(c)) for c in ("heading", "project", "area")]
            if task["trashed"]:
                builder.skip(label, "in the Things Trash", external_key=key)
                continue
            if any(p in gone for p in parents):
                builder.skip(label, "its project or heading is in the Trash", external_key=key)
                continue
            template = _text(task.get("rt1_repeatingTemplate") or task.get("repeatingTemplate"))
            if template and template in by_uuid:
                continue  # counted on its template below
            self._task(
                task, key, label, parents, areas, tags.get(uuid, []), instances.get(uuid, [])
            )
            self.imported.add(uuid)

    def _task(
        self,
        task: dict,
        key: str,
        label: str,
        parents: list[str],
        areas: set[str],
        tags: list[str],
        instances: list[dict],
    ) -> None:
        builder = self.builder
        heading, project, area = parents
        if heading:
            parent: str | None = builder.key("task", heading)
        elif project:
            parent = builder.key("task", project)
        elif area:
            parent = builder.key("area", area)
        else:
            parent = None
        status = task["status"]
        stopped = moment(task.get("stopDate"))
        deadline = packed_date(task.get("deadline"))
        if deadline is None and task.get("dueDate") is not None:
            due = moment(task.get("dueDate"))
            deadline = due.date() if due else None
        start = task.get("startDate")
        start_day = packed_date(start) if isinstance(start, int) else None
        if start_day is None and isinstance(start, float):
            start_moment = moment(start)
            start_day = start_moment.date() if start_moment else None
        rule = task.get("rt1_recurrenceRule", task.get("recurrenceRule"))
        recurrence = recurrence_text(rule)
        if instances:
            builder.skip(
                f"{len(instances)} repetitions of '{_text(task['title'])}'",
                "copies Things made of a repeating to-do; its template is imported once",
                external_key=key,
                count=len(instances),
            )
        done_instances = [i for i in instances if i["status"] == COMPLETED]
        builder.add_goal(
            key,
            title=_text(task["title"]),
            source_item=label,
            parent=parent,
            description=compose_description(
                _notes(task.get("notes")), labels=tags, recurrence=recurrence
            ),
            target_date=deadline,
            is_completed=status == COMPLETED,
            completed_at=stopped if status == COMPLETED else None,
            created_at=moment(task.get("creationDate")),
            updated_at=moment(task.get("userModificationDate")),
            extras={
                "type": {TODO: "to-do", PROJECT: "project", HEADING: "heading"}.get(task["type"]),
                "tags": tags,
                "cancelledAt": stopped.isoformat() if status == CANCELLED and stopped else None,
                "cancelled": status == CANCELLED or None,
                "when": _WHEN.get(task["start"]) if isinstance(task.get("start"), int) else None,
                "startDate": start_day.isoformat() if start_day else None,
                "recurrence": recurrence,
                "repetitionsDone": len(done_instances) or None,
                "areaMissing": area if area and area not in areas else None,
            },
        )

    def _checklists(self, items: list[dict]) -> None:
        builder = self.builder
        for item in sorted(items, key=_order):
            task = _text(item["task"])
            if task not in self.imported:
                continue
            status = item.get("status")
            done_at = moment(item.get("stopDate"))
            builder.add_progress(
                builder.key("checklist", _text(item["uuid"])),
                goal=builder.key("task", task),
                value=1 if status == COMPLETED else 0,
                max_value=1,
                notes=_text(item["title"]),
                source_kind="checklist items",
                recorded_at=done_at
                or moment(item.get("userModificationDate"))
                or moment(item.get("creationDate")),
                extras={"cancelled": status == CANCELLED or None},
            )


def _order(row: dict) -> tuple[int, str]:
    index = row.get("index")
    return (index if isinstance(index, int) else 0, _text(row.get("uuid")))
