"""Notion: the "Markdown & CSV" export zip (nested `Export-...-Part-N.zip` included).

Every database (`<name> <id>_all.csv`, else `<name> <id>.csv`; never both, and linked views
of the same rows only once) becomes a goal and its rows sub-goals; a "Parent item" relation
puts a row under another row. Properties are recognised by name: a status or a done
checkbox gives completion, a due/deadline/date property the target date (the end of a
range), a priority select the priority, tags/multi-selects the labels; every other property
is kept in the extras. A row's page (`<title> <id>.md`) gives the row its stable Notion id,
its body (the description) and its to-dos (`- [x]`), which become progress entries.

Habit-tracker databases (one row per day, a checkbox column per habit) become a goal per
habit with a check-in per ticked day. Pages outside databases are imported only when they
hold to-dos. Notion writes times without a zone: they are read in `timezone` (default UTC).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import unquote

from assets.imports.parsers.base import (
    ZIP_LIMITS,
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    ZipLimits,
    base_name,
    compose_description,
    import_parser,
    is_zip,
    priority_from_label,
    safe_zip_members,
)
from assets.imports.parsers.dates import date_at_noon_utc, parse_when, when_to_utc, zone
from assets.imports.parsers.textio import decode_text, normalize_header, read_csv_table

APP = "notion"
NOTION_ID_RE = re.compile(r"^(?P<title>.*?)\s*(?P<id>[0-9a-f]{32})$")
_LINK_ID_RE = re.compile(r"([0-9a-f]{32})\.md\)?", re.IGNORECASE)
_TODO_RE = re.compile(r"^\s*[-*] \[(?P<mark>[ xX])\]\s?(?P<text>.*)$")
_DONE_WORDS = {"done", "complete", "completed", "finished", "closed", "resolved", "shipped"}
_DONE_CHECKBOX = {"done", "completed", "complete", "finished", "is done", "checked", "status"}
_COLUMNS = {
    "status": {"status", "state", "stage", "progress status"},
    "due": {"due", "due date", "deadline", "date", "target date", "do date", "when", "due on"},
    "priority": {"priority", "prio", "importance"},
    "tags": {"tags", "tag", "labels", "label", "category", "categories"},
    "created": {"created", "created time", "created at", "date created", "created on"},
    "updated": {
        "last edited time",
        "last edited",
        "updated",
        "last updated",
        "modified",
        "updated at",
        "last modified",
    },
    "completed_at": {
        "completed at",
        "completed on",
        "date completed",
        "done date",
        "completion date",
    },
    "parent": {"parent item", "parent", "parent task", "parent-task", "parent page"},
    "children": {
        "sub-item",
        "sub-items",
        "subitems",
        "sub items",
        "subtasks",
        "sub-tasks",
        "children",
        "sub-task",
    },
    "description": {"description", "notes", "summary", "details"},
}
_YES, _NO = "yes", "no"


GUIDE = """\
## Notion

**How to export**

In the workspace sidebar open **Settings → General** (or the page's **⋯** menu), choose
**Export**, pick **Markdown & CSV**, tick **Include subpages**, and click **Export**. Upload
the zip Notion e-mails you (with its `Part-N.zip` files inside, if any) as it is.

**What goalport keeps**

- Each database as a goal and its rows as goals under it; a **Parent item** relation puts
  a row under another row.
- A status or done checkbox (completion), a due/deadline/date property (target date), a
  priority select, tags and multi-selects (in the description), every other property in
  the import's extras.
- A row page's text as the description and its to-dos (`- [x]`) as progress.
- Habit trackers (a checkbox column per habit, a row per day) as one goal per habit with
  a check-in per ticked day.

**What it cannot keep**

- Pages outside databases without to-dos, images and files, comments, formulas' logic
  (their values are kept), page icons and covers.
"""


def split_notion_name(stem: str) -> tuple[str, str | None]:
    """`Chores 0123...ef` -> ('Chores', '0123...ef'); names without an id keep None."""
    match = NOTION_ID_RE.match(stem)
    if match:
        return match["title"].strip(), match["id"]
    return stem.strip(), None


def is_notion_member(name: str) -> bool:
    stem = base_name(name).rsplit(".", 1)[0].removesuffix("_all")
    return name.casefold().endswith((".csv", ".md")) and split_notion_name(stem)[1] is not None


@import_parser("notion-export.zip")
def parse_notion(
    data: bytes,
    name: str,
    now: dt.datetime | None,
    timezone: str | None,
    zip_limits: ZipLimits = ZIP_LIMITS,
) -> ParsedImport:
    """Notion"s Markdown & CSV export (zip, nested parts, or one database CSV) as goals."""
    builder = ImportBuilder(APP, now=now, module_name="Notion")
    if is_zip(data):
        files = _export_files(data, name, zip_limits)
    else:
        files = {base_name(name) if name.casefold().endswith(".csv") else "export.csv": data}
    _Export(builder, name, files, zone(timezone), bare=not is_zip(data)).read()
    return builder.finish()


def _export_files(data: bytes, name: str, limits: ZipLimits) -> dict[str, bytes]:
    wanted = ("csv", "md", "zip", "html")
    members = safe_zip_members(
        data,
        file_name=name,
        select=lambda n: n.casefold().rsplit(".", 1)[-1] in wanted,
        limits=limits,
    )
    files: dict[str, bytes] = {}
    # The parts share one budget: many small parts must not add up to a bomb.
    budget = limits.max_total_bytes - sum(len(c) for c in members.values())
    for path, content in members.items():
        if path.casefold().endswith(".zip"):
            inner = safe_zip_members(
                content,
                file_name=f"{name}/{path}",
                select=lambda n: n.casefold().rsplit(".", 1)[-1] in ("csv", "md", "html"),
                limits=dataclasses.replace(limits, max_total_bytes=max(budget, 0)),
            )
            budget -= sum(len(c) for c in inner.values())
            files.update(inner)
        else:
            files[path] = content
    if not any(p.casefold().endswith((".csv", ".md")) for p in files):
        if any(p.casefold().endswith(".html") for p in files):
            raise ImportFormatError(
                name,
                None,
                None,
                "this is Notion's HTML export; export again choosing 'Markdown & CSV'",
            )
        raise ImportFormatError(name, None, None, "the zip holds no Notion CSV or Markdown file")
    return files


@dataclass
class _Page:
    path: str
    page_id: str | None
    title: str
    properties: dict[str, str]
    body: str
    todos: list[tuple[bool, str]]


@dataclass
class _Database:
    path: str
    title: str
    db_id: str | None
    header: list[str]
    rows: list[tuple[int, list[str]]]
    pages_by_title: dict[str, list[_Page]] = field(default_factory=dict)


# One database row as read: row number, cells, title, its page (if exported), page id.
_Row = tuple[int, list[str], str, _Page | None, str]


def _page(path: str, text: str, known_properties: set[str] | None) -> _Page:
    lines = text.splitlines()
    stem = base_name(path).rsplit(".", 1)[0]
    file_title, page_id = split_notion_name(stem)
    title = file_title
    start = 0
    if lines and lines[0].startswith("# "):
        title, start = lines[0][2:].strip(), 1
    while start < len(lines) and not lines[start].strip():
        start += 1
    properties: dict[str, str] = {}
    end = start
    while end < len(lines) and lines[end].strip():
        end += 1
    block = lines[start:end]
    pairs = [line.split(":", 1) for line in block]
    if (
        block
        and all(len(p) == 2 for p in pairs)
        and (
            known_properties is None
            or all(normalize_header(k) in known_properties for k, _ in pairs)
        )
    ):
        properties = {k.strip(): v.strip() for k, v in pairs}
        start = end
    body_lines, todos = [], []
    for line in lines[start:]:
        match = _TODO_RE.match(line)
        if match:
            if match["text"].strip():
                todos.append((match["mark"] != " ", match["text"].strip()))
        else:
            body_lines.append(line)
    return _Page(path, page_id, title, properties, "\n".join(body_lines).strip(), todos)


def relation_items(cell: str) -> list[tuple[str, str]]:
    """(title, path) of each `Title (path.md)` in a relation cell, separated by commas.

    Read left to right with `find`, every character once: the regular expression this
    replaces backtracked over each `(` of a long cell again (seconds for 32 KB)."""
    items: list[tuple[str, str]] = []
    position = 0
    while True:
        close = cell.find(".md)", position)
        if close < 0:
            return items
        opening = cell.rfind(" (", position, close)
        if opening >= 0:
            title = cell[position:opening].strip().lstrip(",").strip()
            path = cell[opening + 2 : close + 3]
            if title and "(" not in title and "(" not in path and ")" not in path:
                items.append((title, path))
        position = close + 4


def _title_key(title: str) -> str:
    return " ".join(unicodedata.normalize("NFC", title).lstrip("@").split()).casefold()


class _Export:
    def __init__(
        self,
        builder: ImportBuilder,
        file_name: str,
        files: dict[str, bytes],
        tz: dt.tzinfo | None,
        bare: bool,
    ) -> None:
        self.builder = builder
        self.file_name = file_name
        self.files = files
        self.tz = tz
        self.bare = bare

    def _label(self, path: str) -> str:
        return self.file_name if self.bare else f"{self.file_name}/{path}"

    def read(self) -> None:
        databases = self._databases()
        used_pages: set[str] = set()
        for database in databases:
            self._attach_pages(database, used_pages)
        for database in databases:
            self._database(database)
        self._loose_pages(
            used_pages, {d.path.rsplit(".", 1)[0].removesuffix("_all") for d in databases}
        )

    def _databases(self) -> list[_Database]:
        chosen: dict[tuple[str, str], str] = {}
        for path in sorted(self.files):
            if not path.casefold().endswith(".csv"):
                continue
            stem = path[:-4]
            group = (stem.removesuffix("_all"), "")
            if stem.endswith("_all") or group not in chosen:
                chosen[group] = path
        databases = []
        for path in chosen.values():
            label = self._label(path)
            text = decode_text(self.files[path], file_name=label)
            table = read_csv_table(
                text, file_name=label, is_header=lambda names: bool(names - {""}), max_preamble=0
            )
            if table is None:
                self.builder.skip(f"{label}", "empty CSV file")
                continue
            stem = base_name(path)[:-4].removesuffix("_all")
            title, db_id = split_notion_name(stem)
            databases.append(_Database(path, title, db_id, table.header, table.rows))
        # Linked or inline views of one database repeat its rows (maybe fewer columns, in
        # another order) under another id: keep the copy with the most columns.
        kept: list[_Database] = []
        for database in sorted(databases, key=lambda d: (-len(d.header), d.path)):
            original = next((k for k in kept if _is_view_of(database, k)), None)
            if original is not None:
                self.builder.skip(
                    f"{self._label(database.path)}",
                    f"a view of database '{original.title}', imported once from "
                    f"{base_name(original.path)}",
                    count=len(database.rows),
                )
                continue
            kept.append(database)
        return sorted(kept, key=lambda d: d.path)

    def _attach_pages(self, database: _Database, used: set[str]) -> None:
        stem = database.path[:-4].removesuffix("_all")
        folders = {stem + "/"}
        directory = stem.rsplit("/", 1)[0] + "/" if "/" in stem else ""
        folders.add(f"{directory}{database.title}/")
        known = {normalize_header(h) for h in database.header}
        for path in sorted(self.files):
            if not path.casefold().endswith(".md") or path in used:
                continue
            folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            if folder not in folders:
                continue
            text = decode_text(self.files[path], file_name=self._label(path))
            page = _page(path, text, known)
            database.pages_by_title.setdefault(_title_key(page.title), []).append(page)
            used.add(path)

    def _database(self, database: _Database) -> None:
        builder = self.builder
        label = self._label(database.path)
        db_ref = database.db_id or hashlib.sha1(database.title.encode()).hexdigest()[:20]
        db_key = builder.add_goal(
            builder.key("database", db_ref),
            title=database.title or "Notion database",
            source_item=f"database '{database.title}' ({label})",
            description=self._stub_body(database),
            extras={"file": base_name(database.path)},
        )
        if _is_habit_tracker(database):
            self._habit_tracker(database, db_key, db_ref, label)
            return
        roles = _column_roles(database.header)
        rows: list[_Row] = []
        seen: dict[str, int] = {}
        for row, cells in database.rows:
            title = cells[0].strip() if cells else ""
            title_key = _title_key(title)
            candidates = database.pages_by_title.get(title_key) or []
            page = candidates.pop(0) if candidates else None
            if page is not None and page.page_id:
                page_id = page.page_id
            else:
                rank = seen.get(title_key, 0)
                seen[title_key] = rank + 1
                page_id = (
                    "h"
                    + hashlib.sha1(f"{db_ref}\x1f{title_key}\x1f{rank}".encode()).hexdigest()[:20]
                )
            rows.append((row, cells, title, page, page_id))
        page_ids = {page_id for *_, page_id in rows}
        titles = {_title_key(title): page_id for _, _, title, _, page_id in rows}
        parents = self._parents(rows, roles, page_ids, titles)
        for row, cells, title, page, page_id in rows:
            with self.builder.row_or_skip(f"row {row} ({label})"):
                self._row(
                    database,
                    label,
                    db_key,
                    roles,
                    row,
                    cells,
                    title.lstrip("@").strip(),
                    page,
                    page_id,
                    parents.get(page_id),
                )

    def _stub_body(self, database: _Database) -> str | None:
        stem = database.path[:-4].removesuffix("_all")
        data = self.files.get(stem + ".md")
        if data is None:
            return None
        return (
            _page(stem + ".md", decode_text(data, file_name=self._label(stem + ".md")), None).body
            or None
        )

    def _parents(
        self,
        rows: list[_Row],
        roles: dict[str, list[int]],
        page_ids: set[str],
        titles: dict[str, str],
    ) -> dict[str, str]:
        parents: dict[str, str] = {}

        def targets(cell: str) -> list[str]:
            found = []
            items = relation_items(cell)
            for title, path in items:
                ids = _LINK_ID_RE.findall(unquote(path))
                if ids and ids[-1].lower() in page_ids:
                    found.append(ids[-1].lower())
                elif _title_key(title) in titles:
                    found.append(titles[_title_key(title)])
            if not items:
                found = [
                    i.lower() for i in _LINK_ID_RE.findall(unquote(cell)) if i.lower() in page_ids
                ]
                if not found and _title_key(cell) in titles:
                    found.append(titles[_title_key(cell)])
            return found

        for _row, cells, _title, _page, page_id in rows:
            for index in roles.get("parent", []):
                if index < len(cells) and cells[index].strip():
                    found = targets(cells[index])
                    if found and found[0] != page_id:
                        parents[page_id] = found[0]
            for index in roles.get("children", []):
                if index < len(cells) and cells[index].strip():
                    for child in targets(cells[index]):
                        if child != page_id:
                            parents.setdefault(child, page_id)
        return parents

    def _row(
        self,
        database: _Database,
        label: str,
        db_key: str,
        roles: dict[str, list[int]],
        row: int,
        cells: list[str],
        title: str,
        page: _Page | None,
        page_id: str,
        parent: str | None,
    ) -> None:
        builder = self.builder

        def values(role: str) -> list[tuple[str, str]]:
            return [
                (database.header[i], cells[i].strip())
                for i in roles.get(role, [])
                if i < len(cells) and cells[i].strip()
            ]

        is_completed = False
        for name, value in values("status"):
            if normalize_header(name) in _DONE_CHECKBOX and value.casefold() in (_YES, _NO):
                is_completed = is_completed or value.casefold() == _YES
            elif _words(value) & _DONE_WORDS:
                is_completed = True
        for _name, value in values("done_checkbox"):
            is_completed = is_completed or value.casefold() == _YES
        target_date = None
        for name, value in values("due"):
            target_date = self._date(value, label, row, name, end=True)
            break
        priority = 2
        for _name, value in values("priority"):
            priority = priority_from_label(value) or 2
        labels = [t.strip() for _, v in values("tags") for t in v.split(",") if t.strip()]
        created_at = next((self._time(v, label, row, n) for n, v in values("created")), None)
        updated_at = next((self._time(v, label, row, n) for n, v in values("updated")), None)
        completed_at = next((self._time(v, label, row, n) for n, v in values("completed_at")), None)
        description_parts = [v for _, v in values("description")]
        if page is not None and page.body:
            description_parts.append(page.body)
        properties = {
            database.header[i]: cells[i].strip()
            for i in roles.get("other", [])
            if i < len(cells) and cells[i].strip()
        }
        key = builder.add_goal(
            builder.key("page", page_id),
            title=title,
            source_item=f"row '{title}' ({label}, row {row})",
            parent=builder.key("page", parent) if parent else db_key,
            description=compose_description("\n\n".join(description_parts), labels=labels),
            priority=priority,
            target_date=target_date,
            is_completed=is_completed,
            completed_at=completed_at,  # on an open row: reported, kept in the extras
            created_at=created_at,
            updated_at=updated_at,
            extras={
                "labels": labels,
                "properties": properties,
                "status": next((v for _, v in values("status")), None),
                "due": next((v for _, v in values("due")), None),
                "priority": next((v for _, v in values("priority")), None),
                "page": page.path if page else None,
            },
        )
        if page is not None:
            self._todos(page, key, page_id, updated_at or created_at)

    def _todos(self, page: _Page, goal: str, page_id: str, recorded_at: dt.datetime | None) -> None:
        for position, (done, text) in enumerate(page.todos):
            self.builder.add_progress(
                self.builder.key("todo", f"{page_id}:{position}"),
                goal=goal,
                value=1 if done else 0,
                max_value=1,
                notes=text,
                source_kind="to-dos",
                recorded_at=recorded_at,
            )

    def _habit_tracker(self, database: _Database, db_key: str, db_ref: str, label: str) -> None:
        builder = self.builder
        date_index, habit_indexes = _habit_tracker_columns(database)
        habits = {}
        for index in habit_indexes:
            name = database.header[index]
            habits[index] = builder.add_goal(
                builder.key("habit", f"{db_ref}:{name}"),
                title=name,
                source_item=f"habit column '{name}' ({label})",
                parent=db_key,
                extras={"trackerDatabase": database.title},
            )
        not_done = 0
        for row, cells in database.rows:
            text = cells[date_index] if date_index < len(cells) else ""
            if not text.strip():
                continue
            day = self._date(text, label, row, database.header[date_index], end=False)
            for index, goal in habits.items():
                value = cells[index].strip().casefold() if index < len(cells) else ""
                if value != _YES:
                    not_done += value == _NO
                    continue
                builder.add_progress(
                    builder.key("checkin", f"{db_ref}:{database.header[index]}:{day.isoformat()}"),
                    goal=goal,
                    value=1,
                    max_value=1,
                    source_kind="check-ins",
                    recorded_at=date_at_noon_utc(day),
                )
        if not_done:
            builder.skip(
                f"{not_done} unticked habit days ({label})",
                "an unticked box is not a check-in",
                count=not_done,
            )

    def _loose_pages(self, used: set[str], database_stems: set[str]) -> None:
        skipped: list[str] = []
        for path in sorted(self.files):
            if not path.casefold().endswith(".md") or path in used:
                continue
            if path[:-3] in database_stems:
                continue  # the database's own stub page
            page = _page(path, decode_text(self.files[path], file_name=self._label(path)), None)
            if not page.todos:
                skipped.append(page.title)
                continue
            page_ref = page.page_id or hashlib.sha1(path.encode()).hexdigest()[:20]
            key = self.builder.add_goal(
                self.builder.key("page", page_ref),
                title=page.title,
                source_item=f"page '{page.title}' ({self._label(path)})",
                description=compose_description(page.body),
                is_completed=all(done for done, _ in page.todos),
                extras={"page": path, "properties": page.properties},
            )
            self._todos(page, key, page_ref, None)
        if skipped:
            self.builder.skip(
                f"{len(skipped)} Markdown pages outside databases ("
                + ", ".join(f"'{t}'" for t in skipped[:5])
                + (", ..." if len(skipped) > 5 else "")
                + ")",
                "pages without to-dos are notes, not goals",
                count=len(skipped),
            )

    def _date(self, text: str, label: str, row: int, column: str, *, end: bool) -> dt.date:
        parts = [p.strip() for p in text.split("→")]
        when = parse_when(parts[-1] if end else parts[0])
        if when is None or when.year is None:
            raise ImportFormatError(label, row, column, f"'{text}' is not a date")
        return when.date()

    def _time(self, text: str, label: str, row: int, column: str) -> dt.datetime:
        when = parse_when(text.split("→")[0].strip())
        if when is None or when.year is None:
            raise ImportFormatError(label, row, column, f"'{text}' is not a date")
        return when_to_utc(when, assume_tz=self.tz)


def _is_view_of(view: _Database, database: _Database) -> bool:
    """Whether `view` shows the same rows as `database`, in some of its columns."""
    if not view.rows or view.title != database.title:
        return False
    columns = {normalize_header(h): i for i, h in enumerate(database.header)}
    wanted = [columns.get(normalize_header(h)) for h in view.header]
    if None in wanted or len(view.rows) != len(database.rows):
        return False
    positions = [i for i in wanted if i is not None]  # all of them, after the check above

    def cell(cells: list[str], index: int) -> str:
        return cells[index].strip() if index < len(cells) else ""

    seen = sorted(tuple(cell(c, i) for i in range(len(view.header))) for _, c in view.rows)
    full = sorted(tuple(cell(c, i) for i in positions) for _, c in database.rows)
    return seen == full


def _words(value: str) -> set[str]:
    cleaned = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in value.casefold())
    return {" ".join(cleaned.split())} | set(cleaned.split())


def _column_roles(header: list[str]) -> dict[str, list[int]]:
    roles: dict[str, list[int]] = {}
    for index, name in enumerate(header):
        if index == 0:
            continue
        normalized = normalize_header(name)
        role = next((r for r, names in _COLUMNS.items() if normalized in names), None)
        if role is None and normalized in _DONE_CHECKBOX:
            role = "done_checkbox"
        roles.setdefault(role or "other", []).append(index)
    return roles


def _is_date(text: str) -> bool:
    when = parse_when(text.split("→")[0].strip())
    return when is not None and when.year is not None


def _habit_tracker_columns(database: _Database) -> tuple[int, list[int]]:
    header, rows = database.header, database.rows

    def column_values(index: int) -> list[str]:
        return [c[index].strip() for _, c in rows if index < len(c) and c[index].strip()]

    roles = _column_roles(header)
    metadata = {i for r in ("created", "updated") for i in roles.get(r, [])}
    checkboxes = [
        i
        for i in range(1, len(header))
        if i not in metadata
        and (values := column_values(i))
        and all(v.casefold() in (_YES, _NO) for v in values)
    ]
    titles = column_values(0)
    if titles and sum(_is_date(t) for t in titles) >= 0.8 * len(titles):
        return 0, checkboxes
    for index in range(1, len(header)):
        if normalize_header(header[index]) in ("date", "day"):
            values = column_values(index)
            if values and sum(_is_date(v) for v in values) >= 0.8 * len(values):
                return index, checkboxes
    return -1, []


def _is_habit_tracker(database: _Database) -> bool:
    date_index, checkboxes = _habit_tracker_columns(database)
    if date_index < 0 or not checkboxes:
        return False
    if date_index == 0:
        return True
    done_like = [i for i in checkboxes if normalize_header(database.header[i]) in _DONE_CHECKBOX]
    return len(checkboxes) >= 2 and not done_like
