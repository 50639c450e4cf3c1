"""Notion: the "HTML" export zip (Notion's default), nested `Export-...-Part-N.zip` included.

Every page (`<title> <32-hex id>.html`) becomes a goal, under the page whose folder holds
it (`Parent <id>/Child <id>.html`), so the page tree reads as in Notion (three levels kept,
deeper ones flattened by the builder). A database is a page holding a
`table.collection-content`; each of its rows is a goal under it, with the row's properties
read from the row's own page when exported (`table.properties`, typed by its
`property-row-<type>` class) and else from the table's cells. A status or done checkbox
gives completion, a due/deadline/date property the target date (the end of a range), a
priority select the priority, multi-selects the tags, a "Parent item" relation the parent;
other properties go to the extras. A page's to-dos (`ul.to-do-list`) become progress
entries (1 ticked, 0 not), its text the description.

HTML is read with selectolax (lexbor, in C, no Python recursion however deep the markup)
under a size cap per page and a cap on the description's length; archives through the
zip guard of base.py, nested parts sharing one budget.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from selectolax.lexbor import LexborHTMLParser, LexborNode

from assets.imports.parsers.archives import flatten_nested_zips
from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    base_name,
    compose_description,
    import_parser,
    is_zip,
    priority_from_label,
    reading_item,
    safe_zip_members,
)
from assets.imports.parsers.dates import parse_when, when_to_utc, zone

APP = "notion_html"
MAX_PAGE_BYTES = 32 * 1024 * 1024
MAX_BODY_CHARS = 200_000
MAX_PATH_DEPTH = 64
# HTML tree building checks the open elements at each tag, so its cost grows with the square
# of the nesting depth (80,000 nested <div>s: half a minute); Notion nests a few dozen deep.
MAX_NESTING = 1_000
# ... and that cost is the sum, over opening tags, of the depth they open at: about 130
# million per second here. Bounded per page and for the whole export.
MAX_PAGE_NESTING_WORK = 30_000_000
MAX_EXPORT_NESTING_WORK = 1_000_000_000
_TAG_RE = re.compile(rb"<(/?)([a-zA-Z][a-zA-Z0-9]*)")
_VOID_TAGS = {
    b"area",
    b"base",
    b"br",
    b"col",
    b"embed",
    b"hr",
    b"img",
    b"input",
    b"link",
    b"meta",
    b"source",
    b"track",
    b"wbr",
}
_ID_RE = re.compile(r"([0-9a-f]{32})(?:\.html)?$")
_HREF_ID_RE = re.compile(r"([0-9a-f]{32})\.html", re.IGNORECASE)
_DONE_WORDS = {"done", "complete", "completed", "finished", "closed", "resolved", "shipped"}
_ROLES = {
    "status": {"status", "state", "stage"},
    "done": {"done", "completed", "complete", "finished", "is done", "checked"},
    "due": {"due", "due date", "deadline", "date", "target date", "do date", "when"},
    "priority": {"priority", "prio", "importance"},
    "tags": {"tags", "tag", "labels", "label", "category", "categories"},
    "created": {"created", "created time", "created at", "date created"},
    "updated": {"last edited time", "last edited", "updated", "last updated", "modified"},
    "completed_at": {"completed at", "completed on", "date completed", "done date"},
    "parent": {"parent item", "parent", "parent task"},
}
_TYPED_ROLES = {"created_time": "created", "last_edited_time": "updated"}

GUIDE = """\
## Notion (HTML export)

**How to export**

In Notion open **Settings → Export all workspace content** (or a page's
**••• → Export**), choose **Export format: HTML**, **Include content: Everything** and
**Include subpages** on, then **Export**. Upload the `.zip` Notion e-mails you, as it is
(the `Export-…-Part-1.zip` inside it is read too).

**What goalport keeps**

Every page and sub-page (as goals nested like in Notion, three levels at most),
databases (a goal each, their rows goals under them), Status, Done checkboxes, dates
(deadline and ranges), priority selects, multi-select tags, "Parent item" relations,
created and last-edited times, page text (as the description) and to-do blocks (as
progress entries of their page); other properties are kept in the goal's extras.

**What it cannot keep**

Images, files and embeds, comments, formulas' and rollups' logic (their shown
value is kept), page icons and covers, linked-view filters.
"""


def page_id_of(path: str) -> str | None:
    match = _ID_RE.search(base_name(path).rsplit(".", 1)[0] + ".html")
    return match[1] if match else None


def is_notion_html_member(name: str) -> bool:
    return name.casefold().endswith(".html") and page_id_of(name) is not None


def looks_like_notion_page(html: bytes) -> bool:
    head = html[:65536]
    return b"<article" in head and (b'class="page-title"' in head or b"page sans" in head)


@dataclass
class _Property:
    name: str
    kind: str  # Notion's property type when the page says it, else guessed from the markup
    text: str
    values: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)


@dataclass
class _Page:
    path: str
    page_id: str
    title: str
    properties: list[_Property]
    body: str
    todos: list[tuple[bool, str]]
    rows: list[tuple[str, str, list[_Property]]]  # database rows: id, title, cells


@import_parser("notion-export.zip")
def parse_notion_html(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """Notion's HTML export (zip, nested parts) as pages, databases and their rows."""
    if not is_zip(data):
        raise ImportFormatError(name, None, None, "not a Notion HTML export: expected a zip")
    members = safe_zip_members(
        data,
        file_name=name,
        select=lambda n: n.casefold().endswith((".html", ".zip")),
    )
    files = flatten_nested_zips(members, file_name=name, select=is_notion_html_member)
    pages = []
    total_work = 0
    for path in sorted(files):
        if not is_notion_html_member(path):
            continue
        if path.count("/") > MAX_PATH_DEPTH:
            raise ImportFormatError(name, f"member '{path}'", None, "is nested too deep")
        if len(files[path]) > MAX_PAGE_BYTES:
            raise ImportFormatError(name, f"member '{path}'", None, "is too large for a page")
        deepest, work = nesting(files[path])
        total_work += work
        if deepest > MAX_NESTING:
            raise ImportFormatError(
                name, f"member '{path}'", None, f"nests more than {MAX_NESTING} elements deep"
            )
        if work > MAX_PAGE_NESTING_WORK or total_work > MAX_EXPORT_NESTING_WORK:
            raise ImportFormatError(
                name, f"member '{path}'", None, "nests too many elements too deep to be read"
            )
        pages.append(read_page(path, files.pop(path)))
    if not pages:
        raise ImportFormatError(name, None, None, "the zip holds no Notion HTML page")
    builder = ImportBuilder(APP, now=now, module_name="Notion")
    with reading_item(name, "pages"):
        _Export(builder, pages, zone(timezone)).read()
    return builder.finish()


def nesting(html: bytes) -> tuple[int, int]:
    """How deep the page's elements nest, and the sum of the depths its tags open at (what
    building its tree costs), from its tags alone in one linear scan that stops as soon
    as either is over its limit. A closing tag only closes an open element of its name, so
    stray closing tags cannot hide depth. A page with at most MAX_NESTING opening tags
    cannot nest deeper, nor cost more than the square of them: it is not scanned (0 work)."""
    opens = html.count(b"<") - html.count(b"</")
    if opens <= MAX_NESTING:
        return opens, 0
    open_by_name: dict[bytes, int] = {}
    depth = deepest = work = 0
    for match in _TAG_RE.finditer(html):
        closing, name = match.groups()
        name = name.lower()
        if closing:
            if open_by_name.get(name):
                open_by_name[name] -= 1
                depth -= 1
        elif name not in _VOID_TAGS:
            open_by_name[name] = open_by_name.get(name, 0) + 1
            depth += 1
            work += depth
            if depth > deepest:
                deepest = depth
                if deepest > MAX_NESTING:
                    break
            if work > MAX_PAGE_NESTING_WORK:
                break
    return deepest, work


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def read_page(path: str, html: bytes) -> _Page:
    tree = LexborHTMLParser(html.decode("utf-8", errors="replace"))
    file_id = page_id_of(path) or ""
    article = tree.css_first("article")
    article_id = (article.attributes.get("id") or "").replace("-", "") if article else ""
    page_id = article_id if re.fullmatch(r"[0-9a-f]{32}", article_id) else file_id
    title_node = tree.css_first("h1.page-title") or tree.css_first("title")
    title = _clean(title_node.text() if title_node else "")
    if not title:
        title = _clean(base_name(path).rsplit(".", 1)[0].removesuffix(file_id))
    properties = [
        _property(row.css_first("th"), row.css_first("td"), _row_type(row))
        for row in tree.css("table.properties tr")
    ]
    todos = []
    for item in tree.css("ul.to-do-list > li"):
        box = item.css_first("div.checkbox")
        text_node = item.css_first("span")
        todos.append(
            (
                bool(box and "checkbox-on" in (box.attributes.get("class") or "")),
                _clean(text_node.text() if text_node else item.text()),
            )
        )
    rows = []
    for table in tree.css("table.collection-content"):
        names = [_clean(th.text()) for th in table.css("thead th")]
        for tr in table.css("tbody tr"):
            cells = tr.css("td")
            row_id = (tr.attributes.get("id") or "").replace("-", "")
            link = tr.css_first("td.cell-title a")
            if link is not None:
                linked = _HREF_ID_RE.search(unquote(link.attributes.get("href") or ""))
                row_id = linked[1].lower() if linked else row_id
            title_cell = tr.css_first("td.cell-title") or (cells[0] if cells else None)
            row_title = _clean(title_cell.text() if title_cell else "")
            values = [
                _property(None, cell, "", name=names[i] if i < len(names) else f"Column {i + 1}")
                for i, cell in enumerate(cells)
                if cell is not title_cell
                and "cell-title" not in (cell.attributes.get("class") or "")
            ]
            rows.append((row_id, row_title, values))
    body_node = tree.css_first("div.page-body")
    body = ""
    if body_node is not None and not rows:
        for todo_list in body_node.css("ul.to-do-list"):
            todo_list.decompose()
        body = body_node.text(separator="\n", strip=True)[:MAX_BODY_CHARS]
    description = tree.css_first("p.page-description")
    if description is not None and _clean(description.text()):
        body = (description.text(strip=True) + "\n\n" + body).strip()
    return _Page(path, page_id, title, properties, body, todos, rows)


def _row_type(row: LexborNode) -> str:
    for name in (row.attributes.get("class") or "").split():
        if name.startswith("property-row-"):
            return name.removeprefix("property-row-")
    return ""


def _property(
    header: LexborNode | None, cell: LexborNode | None, kind: str, *, name: str = ""
) -> _Property:
    name = name or _clean(header.text() if header else "")
    if cell is None:
        return _Property(name, kind, "")
    chosen: list[str] = []
    links: list[str] = []
    time_node = None
    # one selector pass per cell: each css() call compiles its selector again
    for node in cell.css("div.checkbox, span.selected-value, span.status-value, a, time"):
        tag = node.tag
        if tag == "div":
            on = "checkbox-on" in (node.attributes.get("class") or "")
            return _Property(name, kind or "checkbox", "Yes" if on else "No")
        if tag == "span":
            value = _clean(node.text())
            if value:
                chosen.append(value)
        elif tag == "a":
            linked = _HREF_ID_RE.search(unquote(node.attributes.get("href") or ""))
            if linked:
                links.append(linked[1].lower())
        elif time_node is None:
            time_node = node
    text = _clean(time_node.text() if time_node else cell.text())
    if not kind:
        kind = "date" if time_node else ("relation" if links else ("select" if chosen else ""))
    return _Property(name, kind, text, chosen, links)


def _role(prop: _Property) -> str | None:
    if prop.kind in _TYPED_ROLES:
        return _TYPED_ROLES[prop.kind]
    key = prop.name.casefold()
    for role, names in _ROLES.items():
        if key in names:
            return role
    if prop.kind == "status":
        return "status"
    if prop.kind == "multi_select":
        return "tags"
    return None


class _Export:
    def __init__(self, builder: ImportBuilder, pages: list[_Page], tz: dt.tzinfo | None) -> None:
        self.builder = builder
        self.pages = pages
        self.tz = tz
        self.by_id = {p.page_id: p for p in pages if p.page_id}

    def key(self, page_id: str) -> str:
        return self.builder.key("page", page_id)

    def read(self) -> None:
        row_parent: dict[str, str] = {}
        row_cells: dict[str, tuple[str, list[_Property]]] = {}
        for page in self.pages:
            for row_id, title, cells in page.rows:
                if not row_id:
                    digest = hashlib.sha1(f"{page.page_id}:{title}".encode()).hexdigest()[:32]
                    row_id = f"h{digest}"
                row_parent.setdefault(row_id, page.page_id)
                row_cells.setdefault(row_id, (title, cells))
        for page in self.pages:
            folder = page.path.rsplit("/", 1)[0] if "/" in page.path else ""
            parent = row_parent.get(page.page_id) or page_id_of(folder + ".html")
            if parent == page.page_id or (parent and parent not in self.by_id):
                parent = None
            self._goal(page.page_id, page.title, page.properties, page, parent)
        for row_id, (title, cells) in row_cells.items():
            if row_id not in self.by_id:  # rows whose page was not exported
                self._goal(row_id, title, cells, None, row_parent[row_id])

    def _goal(
        self,
        page_id: str,
        title: str,
        properties: list[_Property],
        page: _Page | None,
        parent: str | None,
    ) -> None:
        builder = self.builder
        found: dict[str, _Property] = {}
        extras: dict[str, str] = {}
        for prop in properties:
            role = _role(prop)
            if role and role not in found:
                found[role] = prop
            elif prop.text:
                extras[prop.name] = prop.text
        status = found.get("status")
        done_box = found.get("done")
        is_done = (status is not None and status.text.casefold() in _DONE_WORDS) or (
            done_box is not None and done_box.text == "Yes"
        )
        relation = found.get("parent")
        if relation is not None and relation.links:
            parent = relation.links[0]
        created = self._moment(found.get("created"))
        updated = self._moment(found.get("updated"))
        completed = self._moment(found.get("completed_at")) or (updated if is_done else None)
        due = found.get("due")
        priority = priority_from_label(found["priority"].text) if "priority" in found else None
        tags: list[str] = []
        if "tags" in found:
            tags = found["tags"].values or [t for t in found["tags"].text.split(", ") if t]
        for role in ("created", "updated", "completed_at", "due"):
            if role in found and found[role].text and self._moment(found[role]) is None:
                extras[found[role].name] = found[role].text  # not a date: kept as written
        where = page.path if page else f"a row of database {parent}"
        kind = "database" if page is not None and page.rows else "page"
        key = builder.add_goal(
            self.key(page_id),
            title=title or "Untitled",
            source_item=f"{kind} '{title}' ({where})",
            parent=self.key(parent) if parent else None,
            description=compose_description(page.body if page else None, labels=tags),
            priority=priority or 2,
            target_date=self._day(due),
            is_completed=is_done,
            completed_at=completed if is_done else None,
            created_at=created,
            updated_at=updated,
            extras={
                "status": status.text if status else None,
                "labels": tags,
                "properties": extras,
                "relations": {
                    p.name: p.links for p in properties if p.links and _role(p) != "parent"
                },
            },
        )
        for position, (ticked, text) in enumerate(page.todos if page else []):
            builder.add_progress(
                builder.key("todo", f"{page_id}:{position}"),
                goal=key,
                value=1 if ticked else 0,
                max_value=1,
                notes=text,
                source_kind="to-dos",
                recorded_at=updated or created,
            )

    def _moment(self, prop: _Property | None) -> dt.datetime | None:
        if prop is None or not prop.text:
            return None
        when = parse_when(prop.text.split("→")[0].split("(")[0])
        return when_to_utc(when, assume_tz=self.tz) if when and when.year else None

    def _day(self, prop: _Property | None) -> dt.date | None:
        if prop is None or not prop.text:
            return None
        when = parse_when(prop.text.split("→")[-1].split("(")[0])
        return when.date() if when and when.year else None
