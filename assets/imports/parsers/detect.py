"""Which app an uploaded file was exported from, judged by its content.

The file name is a hint at most (a Notion CSV is recognised by its `<name> <32-hex id>`
name *and* its CSV shape); everything else is decided by what is inside: zip member names,
the CSV header (wherever it starts), the JSON document's keys. goalport's own exports and
anything unrecognised are "unknown", never guessed as a foreign app.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable
from typing import Any

from assets.imports.parsers.archives import is_tar, safe_tar_members
from assets.imports.parsers.asana import is_asana_header, is_asana_json, parse_asana
from assets.imports.parsers.base import (
    ImportFormatError,
    ParsedImport,
    base_name,
    collector_paused,
    is_zip,
    require_content,
    safe_zip_members,
    zip_member_names,
)
from assets.imports.parsers.google_keep import is_keep_candidate, is_keep_note, parse_google_keep
from assets.imports.parsers.google_tasks import (
    is_google_tasks,
    is_takeout_tasks_member,
    parse_google_tasks,
)
from assets.imports.parsers.habitica import (
    is_habitica,
    is_habitica_history_header,
    parse_habitica,
)
from assets.imports.parsers.joplin import is_joplin_item, is_joplin_member, parse_joplin
from assets.imports.parsers.loop_habits import is_loop_habits_header, parse_loop_habits
from assets.imports.parsers.microsoft_todo import is_microsoft_todo, parse_microsoft_todo
from assets.imports.parsers.notion import NOTION_ID_RE, is_notion_member, parse_notion
from assets.imports.parsers.notion_html import (
    is_notion_html_member,
    looks_like_notion_page,
    parse_notion_html,
)
from assets.imports.parsers.remember_the_milk import (
    is_remember_the_milk,
    parse_remember_the_milk,
)
from assets.imports.parsers.taskwarrior import (
    is_taskwarrior,
    is_taskwarrior_lines,
    parse_taskwarrior,
)
from assets.imports.parsers.textio import decode_text, load_json, normalize_header, peek_csv_records
from assets.imports.parsers.things3 import looks_like_things, parse_things3, things_member
from assets.imports.parsers.ticktick import is_ticktick_header, parse_ticktick
from assets.imports.parsers.todoist import is_todoist_backup, is_todoist_header, parse_todoist
from assets.imports.parsers.toodledo import is_toodledo_any_header, parse_toodledo
from assets.imports.parsers.trello import is_trello_board, is_trello_card, parse_trello

UNKNOWN = "unknown"
PARSERS: dict[str, Callable[..., ParsedImport]] = {
    "todoist": parse_todoist,
    "notion": parse_notion,
    "trello": parse_trello,
    "asana": parse_asana,
    "ticktick": parse_ticktick,
    "google_tasks": parse_google_tasks,
    "habitica": parse_habitica,
    "loop_habits": parse_loop_habits,
    "notion_html": parse_notion_html,
    "things3": parse_things3,
    "google_keep": parse_google_keep,
    "joplin": parse_joplin,
    "microsoft_todo": parse_microsoft_todo,
    "remember_the_milk": parse_remember_the_milk,
    "taskwarrior": parse_taskwarrior,
    "toodledo": parse_toodledo,
}
SOURCE_APPS = tuple(PARSERS)
_NOTION_DATE_RE = re.compile(r"^@?[A-Z][a-z]+ \d{1,2}, \d{4}")
_NOTION_LINK_RE = re.compile(r"%20[0-9a-f]{32}\.md\)")


def export_guides() -> dict[str, str]:
    """Each supported app's `GUIDE` (how to export from it, what goalport keeps and what it
    cannot; plain Markdown), found on the module of its parser in PARSERS."""
    guides = {}
    for app, parse in PARSERS.items():
        guide = getattr(sys.modules.get(parse.__module__), "GUIDE", None)
        if isinstance(guide, str) and guide.strip():
            guides[app] = guide.strip() + "\n"
    return guides


def detect_source(data: bytes, file_name: str | None = None) -> str:
    """The app (a key of PARSERS) that exported `data`, or "unknown".

    Raises ImportFormatError only for a file that is unsafe to open (an archive over the
    limits, JSON nested deeper than any export).
    """
    name = file_name or "upload"
    if not data:
        return UNKNOWN
    if is_zip(data):
        return _detect_zip(data, name)
    if looks_like_things(data):
        return "things3"
    if is_tar(data):
        return _detect_tar(data, name)
    head = data[:4].lstrip(b"\xef\xbb\xbf")
    if head.startswith(b"age-") or data.startswith(b"-----BEGIN AGE"):
        return UNKNOWN
    try:
        text = decode_text(data[: 4 * 1024 * 1024], file_name=name)
    except ImportFormatError:
        return UNKNOWN
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        return _detect_json(data, name)
    return _detect_csv(text, name, has_bom=data.startswith(b"\xef\xbb\xbf"))


def _detect_json(data: bytes, name: str) -> str:
    try:
        doc = load_json(data, file_name=name)
    except ImportFormatError as exc:
        if "nested" in exc.reason:  # hostile, whichever app it claims to be from
            raise
        return "taskwarrior" if is_taskwarrior_lines(_text_or_empty(data, name)) else UNKNOWN
    if is_trello_board(doc) or is_trello_card(doc):
        return "trello"
    if is_google_tasks(doc):
        return "google_tasks"
    if is_habitica(doc):
        return "habitica"
    if is_keep_note(doc):
        return "google_keep"
    if is_todoist_backup(doc):
        return "todoist"
    if is_asana_json(doc):
        return "asana"
    for app, accepts in (
        ("microsoft_todo", is_microsoft_todo),
        ("remember_the_milk", is_remember_the_milk),
        ("taskwarrior", is_taskwarrior),
    ):
        if accepts(doc):
            return app
    return UNKNOWN


def _text_or_empty(data: bytes, name: str) -> str:
    try:
        return decode_text(data[:65536], file_name=name)
    except ImportFormatError:
        return ""


def _detect_csv(text: str, name: str, *, has_bom: bool = False) -> str:
    records = peek_csv_records(text, limit=12)
    for record in records:
        names = {normalize_header(c) for c in record}
        for app, accepts in (
            ("todoist", is_todoist_header),
            ("ticktick", is_ticktick_header),
            ("asana", is_asana_header),
            ("loop_habits", is_loop_habits_header),
            ("habitica", is_habitica_history_header),
            ("toodledo", is_toodledo_any_header),
        ):
            if accepts(names):
                return app
    if records and records[0] and _looks_like_notion_csv(text, name, records, has_bom):
        return "notion"
    return UNKNOWN


def _looks_like_notion_csv(text: str, name: str, records: list[list[str]], has_bom: bool) -> bool:
    """A Notion database CSV has no fixed columns: its links, dates and checkboxes tell,
    helped by its `<name> <32-hex id>.csv` name and the BOM Notion always writes."""
    if not records[0][0].strip() or _NOTION_LINK_RE.search(text[:65536]):
        return bool(records[0][0].strip())
    cells = [c.strip() for record in records[1:] for c in record]
    notion_cells = sum(1 for c in cells if _NOTION_DATE_RE.match(c))
    checkboxes = sum(1 for c in cells if c in ("Yes", "No"))
    stem = base_name(name).rsplit(".", 1)[0].removesuffix("_all")
    named_like_notion = NOTION_ID_RE.match(stem) is not None
    if named_like_notion:
        return has_bom or notion_cells + checkboxes >= 1
    return has_bom and notion_cells >= 2


def _detect_zip(data: bytes, name: str) -> str:
    names = zip_member_names(data, file_name=name)
    bases = {base_name(n) for n in names}
    if "Habits.csv" in bases:
        return "loop_habits"
    if any(is_notion_member(n) for n in names):
        return "notion"
    inner_zips = [n for n in names if n.casefold().endswith(".zip")]
    if inner_zips and all(re.search(r"Part-\d+\.zip$", n, re.IGNORECASE) for n in inner_zips):
        inner = safe_zip_members(data, file_name=name, select=lambda n: n == inner_zips[0])
        inner_names = zip_member_names(inner[inner_zips[0]], file_name=f"{name}/{inner_zips[0]}")
        if any(is_notion_member(n) for n in inner_names):
            return "notion"
    tasks = [n for n in names if is_takeout_tasks_member(n)]
    if tasks:
        content = safe_zip_members(data, file_name=name, select=lambda n: n == tasks[0])
        if is_google_tasks(_json_or_none(content[tasks[0]], name)):
            return "google_tasks"
    if any(things_member(n) for n in names):
        return "things3"
    found = _detect_archive_files(data, name, names, safe_zip_members)
    if found != UNKNOWN:
        return found
    jsons = sorted(n for n in names if n.casefold().endswith(".json"))[:3]
    if jsons:
        first = safe_zip_members(data, file_name=name, select=lambda n: n in jsons)
        for member in jsons:
            doc = _json_or_none(first[member], name)
            for app, accepts in (
                ("microsoft_todo", is_microsoft_todo),
                ("remember_the_milk", is_remember_the_milk),
            ):
                if accepts(doc):
                    return app
    csvs = [n for n in names if n.casefold().endswith(".csv")]
    if csvs and len(csvs) == len([n for n in names if not n.endswith("/")]):
        first = safe_zip_members(data, file_name=name, select=lambda n: n == csvs[0])
        text = decode_text(first[csvs[0]], file_name=f"{name}/{csvs[0]}")
        if _detect_csv(text, csvs[0]) == "todoist":
            return "todoist"
    return UNKNOWN


def _detect_tar(data: bytes, name: str) -> str:
    names: list[str] = []

    def listed(member: str) -> bool:
        names.append(member)
        return False

    safe_tar_members(data, file_name=name, select=listed)
    return _detect_archive_files(data, name, names, safe_tar_members)


def _detect_archive_files(
    data: bytes, name: str, names: list[str], reader: Callable[..., dict[str, bytes]]
) -> str:
    """Notion HTML pages (in the zip or its Part-N zips), Joplin items or Keep notes, judged
    by the content of a few members read in one pass."""
    pages = [n for n in names if is_notion_html_member(n)]
    parts = [n for n in names if re.search(r"Part-\d+\.zip$", n, re.IGNORECASE)]
    if not pages and parts and reader is safe_zip_members:
        inner = reader(data, file_name=name, select=lambda n: n == parts[0])[parts[0]]
        inner_name = f"{name}/{parts[0]}"
        inner_pages = [
            n for n in zip_member_names(inner, file_name=inner_name) if is_notion_html_member(n)
        ]
        if inner_pages:
            page = safe_zip_members(
                inner, file_name=inner_name, select=lambda n: n == inner_pages[0]
            )
            return "notion_html" if looks_like_notion_page(page[inner_pages[0]]) else UNKNOWN
    items = [n for n in names if is_joplin_member(n)]
    notes = [n for n in names if is_keep_candidate(n)]
    sample = set(pages[:1] + items[:1] + notes[:5])
    if not sample:
        return UNKNOWN
    content = reader(data, file_name=name, select=lambda n: n in sample)
    if pages and looks_like_notion_page(content.get(pages[0], b"")):
        return "notion_html"
    if items and is_joplin_item(content.get(items[0], b"").decode("utf-8", errors="replace")):
        return "joplin"
    if any(is_keep_note(_json_or_none(content.get(n, b""), name)) for n in notes[:5]):
        return "google_keep"
    return UNKNOWN


def _json_or_none(data: bytes, name: str) -> Any:
    try:
        return load_json(data, file_name=name)
    except ImportFormatError:
        return None


def parse_foreign_export(
    data: bytes,
    *,
    file_name: str | None = None,
    now: dt.datetime | None = None,
    timezone: str | None = None,
) -> ParsedImport:
    """Detect the app that exported `data` and parse it with that app's parser.

    `now` stands in for times the source does not record (and resolves Todoist's relative
    dates); `timezone` is the user's IANA zone, used where the source writes local times
    without one. Raises ImportFormatError when the file is no supported app's export.
    """
    name = file_name or "upload"
    require_content(data, name)
    app = detect_source(data, file_name)
    if app == UNKNOWN:
        raise ImportFormatError(
            name,
            None,
            None,
            "not an export of a supported app (" + ", ".join(SOURCE_APPS) + ")",
        )
    with collector_paused():
        return PARSERS[app](data, file_name=file_name, now=now, timezone=timezone)
