"""Exports of Notion (HTML), Things 3, Google Keep and Joplin, built here to each app's
documented format (see docs/IMPORT_MAPPINGS.md), messy the way real users' files are:
unicode and emoji, empty titles, trashed items, very long notes, missing optional fields,
odd time zones, repeated ids and parents that are not in the file. `inconsistent=True` adds
what real apps allow and goalport's rules do not (done before created, modified before
created); `edited=True` is the same account exported again after a few changes.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import plistlib
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from parser_checks import zip_bytes

UTC = dt.UTC
LONG_NOTE = "Très long texte 📝 " * 2_000  # 38,000 characters: over the app's 5,000
NOTE = "Langer Text 📝 " * 300  # 4,500 characters


def note_text(inconsistent: bool) -> str:
    return LONG_NOTE if inconsistent else NOTE


# ------------------------------------------------------------------ Notion HTML

DB = "0123456789abcdef0123456789abcdef"
TRIP = "1" * 32
FLIGHTS = "2" * 32
HOTEL = "3" * 32
ROOT_PAGE = "4" * 32
CHILD_PAGE = "5" * 32
GRANDCHILD = "6" * 32
NO_PAGE_ROW = "7" * 32
ORPHAN_CHILD = "8" * 32


def _uuid(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def notion_page(
    page_id: str,
    title: str,
    *,
    properties: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    body: str = "",
    todos: list[tuple[bool, str]] = (),  # type: ignore[assignment]
    table: str = "",
    description: str = "",
) -> bytes:
    rows = "".join(
        f'<tr class="property-row property-row-{kind}"><th><span class="icon property-icon">'
        f"<svg></svg></span>{name}</th><td>{value}</td></tr>"
        for kind, name, value in properties
    )
    todo_html = "".join(
        f'<ul id="t{i}" class="to-do-list"><li><div class="checkbox checkbox-'
        f'{"on" if done else "off"}"></div> <span class="to-do-children-'
        f'{"checked" if done else "unchecked"}">{text}</span><div class="indented"></div>'
        "</li></ul>"
        for i, (done, text) in enumerate(todos)
    )
    return (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"/>'
        f"<title>{title}</title><style>/* notion */</style></head><body>"
        f'<article id="{_uuid(page_id)}" class="page sans"><header>'
        '<div class="page-header-icon undefined"><span class="icon">✈️</span></div>'
        f'<h1 class="page-title">{title}</h1><p class="page-description">{description}</p>'
        f'<table class="properties"><tbody>{rows}</tbody></table></header>'
        f'<div class="page-body">{body}{todo_html}{table}</div></article></body></html>'
    ).encode()


def _status(text: str) -> str:
    return f'<span class="status-value select-value-color-green"><div class="status-dot"></div>{text}</span>'


def _checkbox(on: bool) -> str:
    return f'<div class="checkbox checkbox-{"on" if on else "off"}"></div>'


def _time(text: str) -> str:
    return f"<time>@{text}</time>"


def _tags(*names: str) -> str:
    return "".join(
        f'<span class="selected-value select-value-color-pink">{n}</span>' for n in names
    )


def _link(path: str, title: str) -> str:
    return f'<a href="{path.replace(" ", "%20")}">{title}</a>'


def notion_html_export(*, edited: bool = False, inconsistent: bool = False) -> bytes:
    folder = f"Tasks {DB}/"
    trip_done = "Done" if edited else "In progress"
    created_trip = "May 25, 2023 9:30 AM" if inconsistent else "May 1, 2023 9:30 AM"
    trip_props = [
        ("status", "Status", _status(trip_done)),
        ("date", "Due", _time("June 1, 2023 → June 30, 2023")),
        ("select", "Priority", _tags("High")),
        ("multi_select", "Tags", _tags("Travel", "Family 👪")),
        ("person", "Assignee", "Jordan Lee"),
        ("created_time", "Created", _time(created_trip)),
        ("last_edited_time", "Last edited", _time("May 20, 2023 10:15 PM")),
    ]
    flights_props = [
        ("status", "Status", _status("Done")),
        ("date", "Due", _time("May 15, 2023")),
        ("relation", "Parent item", _link(f"Plan trip {TRIP}.html", "Plan trip")),
        ("created_time", "Created", _time("May 2, 2023 8:00 AM")),
        ("last_edited_time", "Last edited", _time("May 3, 2023 8:00 AM")),
    ]
    hotel_title = "Réserver l’hôtel 🏨" + (" à Kyoto" if edited else "")
    hotel_props = [
        ("checkbox", "Done", _checkbox(False)),
        ("date", "Due", _time("October 15, 2023 9:30 PM")),
        ("created_time", "Created", _time("September 1, 2023 7:00 AM")),
    ]
    table = (
        '<table class="collection-content"><thead><tr><th>Name</th><th>Status</th>'
        "<th>Due</th><th>Done</th></tr></thead><tbody>"
        f'<tr id="{_uuid(TRIP)}"><td class="cell-title">{_link(folder + f"Plan trip {TRIP}.html", "Plan trip")}</td>'
        f"<td>{_status(trip_done)}</td><td>{_time('June 1, 2023 → June 30, 2023')}</td><td>{_checkbox(False)}</td></tr>"
        f'<tr id="{_uuid(FLIGHTS)}"><td class="cell-title">{_link(folder + f"Book flights {FLIGHTS}.html", "Book flights")}</td>'
        f"<td>{_status('Done')}</td><td>{_time('May 15, 2023')}</td><td>{_checkbox(True)}</td></tr>"
        f'<tr id="{_uuid(HOTEL)}"><td class="cell-title">{_link(folder + f"Hotel {HOTEL}.html", hotel_title)}</td>'
        f"<td></td><td>{_time('October 15, 2023 9:30 PM')}</td><td>{_checkbox(False)}</td></tr>"
        f'<tr id="{_uuid(NO_PAGE_ROW)}"><td class="cell-title"><a href="">Row without page 🌵</a></td>'
        f"<td>{_status('Not started')}</td><td>{_time('not a date')}</td><td>{_checkbox(inconsistent)}</td></tr>"
        "</tbody></table>"
    )
    root = "Export-5f0e8c1a-1111-4222-8333-944455556666/"
    files = {
        root + "index.html": b"<html><body><a href='x'>index</a></body></html>",
        root + f"Tasks {DB}.html": notion_page(
            DB, "Tasks", table=table, description="All my tasks, one database."
        ),
        root + folder + f"Plan trip {TRIP}.html": notion_page(
            TRIP,
            "Plan trip",
            properties=trip_props,
            body="<p>Pack light.</p><h2>Ideas</h2><p>Kyoto &amp; Osaka</p>",
            todos=[(True, "Passport"), (edited, "Adapter 🔌")],
        ),
        root + folder + f"Book flights {FLIGHTS}.html": notion_page(
            FLIGHTS, "Book flights", properties=flights_props
        ),
        root + folder + f"Hotel {HOTEL}.html": notion_page(
            HOTEL, hotel_title, properties=hotel_props
        ),
        root + f"Journal 📓 {ROOT_PAGE}.html": notion_page(
            ROOT_PAGE, "Journal 📓", body=f"<p>{note_text(inconsistent)}</p>"
        ),
        root + f"Journal 📓 {ROOT_PAGE}/Week 1 {CHILD_PAGE}.html": notion_page(
            CHILD_PAGE, "Week 1", body="<p>Monday: ran 5 km</p>"
        ),
        root + f"Journal 📓 {ROOT_PAGE}/Week 1 {CHILD_PAGE}/Day {GRANDCHILD}.html": notion_page(
            GRANDCHILD, "", body="<p>untitled page</p>"
        ),
        # its parent page was not exported (a shared sub-page)
        root + f"Gone {'9' * 32}/Orphan {ORPHAN_CHILD}.html": notion_page(
            ORPHAN_CHILD, "Orphan page"
        ),
    }
    part = zip_bytes(files)
    return zip_bytes(
        {
            "Export-5f0e8c1a-1111-4222-8333-944455556666-Part-1.zip": part,
            "__MACOSX/._Export-Part-1.zip": b"\x00\x05\x16\x07",
        }
    )


# ------------------------------------------------------------------ Things 3

NEW_SCHEMA = """
CREATE TABLE TMArea (uuid TEXT PRIMARY KEY, title TEXT, visible INTEGER, "index" INTEGER,
  cachedTags BLOB, experimental BLOB);
CREATE TABLE TMTag (uuid TEXT PRIMARY KEY, title TEXT, shortcut TEXT, usedDate REAL,
  parent TEXT, "index" INTEGER, experimental BLOB);
CREATE TABLE TMTaskTag (tasks TEXT NOT NULL, tags TEXT NOT NULL);
CREATE TABLE TMAreaTag (areas TEXT NOT NULL, tags TEXT NOT NULL);
CREATE TABLE TMChecklistItem (uuid TEXT PRIMARY KEY, userModificationDate REAL,
  creationDate REAL, title TEXT, status INTEGER, stopDate REAL, "index" INTEGER, task TEXT,
  leavesTombstone INTEGER, experimental BLOB);
CREATE TABLE TMTask (uuid TEXT PRIMARY KEY, leavesTombstone INTEGER, creationDate REAL,
  userModificationDate REAL, type INTEGER, status INTEGER, stopDate REAL, trashed INTEGER,
  title TEXT, notes TEXT, notesSync INTEGER, cachedTags BLOB, start INTEGER,
  startDate INTEGER, startBucket INTEGER, reminderTime INTEGER, lastReminderInteractionDate
  REAL, deadline INTEGER, deadlineSuppressionDate INTEGER, t2_deadlineOffset INTEGER,
  "index" INTEGER, todayIndex INTEGER, todayIndexReferenceDate INTEGER, area TEXT,
  project TEXT, heading TEXT, contact TEXT, untrashedLeafActionsCount INTEGER,
  openUntrashedLeafActionsCount INTEGER, checklistItemsCount INTEGER,
  openChecklistItemsCount INTEGER, rt1_repeatingTemplate TEXT, rt1_recurrenceRule BLOB,
  rt1_instanceCreationStartDate INTEGER, rt1_instanceCreationPaused INTEGER,
  rt1_instanceCreationCount INTEGER, rt1_afterCompletionReferenceDate INTEGER,
  rt1_nextInstanceStartDate INTEGER, experimental BLOB, repeater BLOB,
  repeaterMigrationDate REAL);
"""
OLD_SCHEMA = """
CREATE TABLE TMArea (uuid TEXT PRIMARY KEY, title TEXT, visible INTEGER, "index" INTEGER);
CREATE TABLE TMTag (uuid TEXT PRIMARY KEY, title TEXT, shortcut TEXT, parent TEXT,
  "index" INTEGER);
CREATE TABLE TMTaskTag (tasks TEXT NOT NULL, tags TEXT NOT NULL);
CREATE TABLE TMChecklistItem (uuid TEXT PRIMARY KEY, creationDate REAL,
  userModificationDate REAL, title TEXT, status INTEGER, stopDate REAL, "index" INTEGER,
  task TEXT);
CREATE TABLE TMTask (uuid TEXT PRIMARY KEY, creationDate REAL, userModificationDate REAL,
  type INTEGER, status INTEGER, stopDate REAL, trashed INTEGER, title TEXT, notes TEXT,
  start INTEGER, startDate REAL, dueDate REAL, "index" INTEGER, area TEXT, project TEXT,
  heading TEXT, recurrenceRule BLOB, repeatingTemplate TEXT, instanceCreationStartDate REAL);
"""


def packed(day: dt.date) -> int:
    return day.year << 16 | day.month << 12 | day.day << 7


def unix(*args: int) -> float:
    return dt.datetime(*args, tzinfo=UTC).timestamp()


RULE = plistlib.dumps({"fu": 256, "fa": 2, "of": [{"wd": 2}], "tp": 0, "ia": 0})


def things_rows(*, edited: bool = False, inconsistent: bool = False) -> dict[str, list[tuple]]:
    """The account's rows: uuid, type, status, trashed, title, notes, created, modified,
    stopped, deadline, area, project, heading, recurrence rule, its template."""
    done_at = unix(2023, 1, 5, 9) if inconsistent else unix(2023, 11, 6, 18, 30)
    tasks = [
        (
            "P-kitchen",
            1,
            0,
            0,
            "Kitchen renovation 🛠",
            "Budget: 5 000 €",
            unix(2023, 11, 1, 8),
            unix(2023, 11, 2),
            None,
            packed(dt.date(2024, 2, 29)),
            "A-home",
            None,
            None,
            None,
            None,
        ),
        (
            "H-buy",
            2,
            0,
            0,
            "Buy",
            None,
            unix(2023, 11, 1, 8, 1),
            unix(2023, 11, 1, 8, 1),
            None,
            None,
            None,
            "P-kitchen",
            None,
            None,
            None,
        ),
        (
            "T-tiles",
            0,
            3,
            0,
            "Choose tiles",
            None,
            unix(2023, 11, 3, 7),
            unix(2023, 11, 6, 18, 30),
            done_at,
            packed(dt.date(2023, 11, 5)),
            None,
            "P-kitchen",
            "H-buy",
            None,
            None,
        ),
        (
            "T-paint",
            0,
            2 if edited else 0,
            0,
            "Paint walls" + (" (blue)" if edited else ""),
            None,
            unix(2023, 11, 3, 7, 5),
            unix(2023, 10, 1) if inconsistent else unix(2023, 11, 4),
            unix(2024, 1, 2) if edited else None,
            None,
            None,
            "P-kitchen",
            None,
            None,
            None,
        ),
        (
            "T-inbox",
            0,
            0,
            0,
            "",
            note_text(inconsistent),
            unix(2023, 12, 24, 23, 59),
            unix(2023, 12, 24, 23, 59),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ),
        (
            "T-call",
            0,
            0,
            0,
            "Call Mom 📞",
            "",
            unix(2023, 6, 1),
            unix(2023, 6, 1),
            None,
            None,
            "A-family",
            None,
            None,
            RULE,
            None,
        ),
        (
            "T-call-1",
            0,
            3,
            0,
            "Call Mom 📞",
            "",
            unix(2023, 6, 5),
            unix(2023, 6, 5),
            unix(2023, 6, 5),
            None,
            "A-family",
            None,
            None,
            None,
            "T-call",
        ),
        (
            "T-call-2",
            0,
            3,
            0,
            "Call Mom 📞",
            "",
            unix(2023, 6, 19),
            unix(2023, 6, 19),
            unix(2023, 6, 19),
            None,
            "A-family",
            None,
            None,
            None,
            "T-call",
        ),
        (
            "T-trash",
            0,
            0,
            1,
            "Old idea 🗑",
            None,
            unix(2023, 1, 1),
            unix(2023, 1, 1),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ),
        (
            "T-lost",
            0,
            0,
            0,
            "Parent gone",
            None,
            unix(2023, 3, 1),
            unix(2023, 3, 1),
            None,
            None,
            None,
            "P-missing",
            None,
            None,
            None,
        ),
        (
            "T-nodates",
            0,
            0,
            0,
            "No dates at all",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ),
    ]
    areas = [("A-home", "Home 🏠", 1, 0), ("A-family", "Familie & Freunde", 1, 1)]
    tags = [("G-urgent", "Urgent ⚡"), ("G-diy", "DIY")]
    task_tags = [("T-tiles", "G-urgent"), ("T-tiles", "G-diy"), ("P-kitchen", "G-diy")]
    checklist = [
        ("C-1", "Measure the floor", 3, unix(2023, 11, 3, 9), "T-tiles", 0),
        (
            "C-2",
            "Get samples",
            3 if edited else 0,
            unix(2023, 11, 4) if edited else None,
            "T-tiles",
            1,
        ),
    ]
    return {
        "tasks": tasks,
        "areas": areas,
        "tags": tags,
        "task_tags": task_tags,
        "checklist": checklist,
    }


def things_database(
    *, old_schema: bool = False, edited: bool = False, inconsistent: bool = False, wal: bool = True
) -> dict[str, bytes]:
    """`main.sqlite` and (when `wal`) its `-wal`: the to-dos are written after the last
    checkpoint, so they exist only in the WAL, as in a database Things has open."""
    rows = things_rows(edited=edited, inconsistent=inconsistent)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "main.sqlite")
        db = sqlite3.connect(path, isolation_level=None)
        db.executescript(OLD_SCHEMA if old_schema else NEW_SCHEMA)
        if wal:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA wal_autocheckpoint=0")
        db.executemany(
            'INSERT INTO TMArea (uuid, title, visible, "index") VALUES (?,?,?,?)', rows["areas"]
        )
        db.executemany("INSERT INTO TMTag (uuid, title) VALUES (?,?)", rows["tags"])
        db.executemany("INSERT INTO TMTaskTag VALUES (?,?)", rows["task_tags"])
        db.executemany(
            'INSERT INTO TMChecklistItem (uuid, title, status, stopDate, task, "index",'
            " creationDate) VALUES (?,?,?,?,?,?,?)",
            [(*c, unix(2023, 11, 3)) for c in rows["checklist"]],
        )
        if old_schema:
            sql = (
                "INSERT INTO TMTask (uuid, type, status, trashed, title, notes, creationDate,"
                " userModificationDate, stopDate, dueDate, area, project, heading,"
                ' recurrenceRule, repeatingTemplate, start, "index") VALUES'
                " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,0)"
            )
            # old databases: deadlines as REAL seconds, times since 2001-01-01 on some rows
            converted = []
            for t in rows["tasks"]:
                deadline = t[9]
                due = (
                    unix(deadline >> 16, (deadline >> 12) & 15, (deadline >> 7) & 31, 12)
                    if deadline
                    else None
                )
                created = t[6] - 978307200 if t[0] == "T-tiles" and t[6] else t[6]
                converted.append((*t[:6], created, *t[7:9], due, *t[10:]))
            db.executemany(sql, converted)
        else:
            sql = (
                "INSERT INTO TMTask (uuid, type, status, trashed, title, notes, creationDate,"
                " userModificationDate, stopDate, deadline, area, project, heading,"
                ' rt1_recurrenceRule, rt1_repeatingTemplate, start, startDate, "index")'
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1,?,0)"
            )
            db.executemany(
                sql,
                [
                    (*t, packed(dt.date(2023, 11, 3)) if t[0] == "T-tiles" else None)
                    for t in rows["tasks"]
                ],
            )
        files = {"main.sqlite": Path(path).read_bytes()}
        if wal and Path(path + "-wal").exists():
            files["main.sqlite-wal"] = Path(path + "-wal").read_bytes()
        db.close()
    return files


def things_zip(**options: bool) -> bytes:
    files = things_database(**options)
    prefix = "ThingsData-ABCDE/Things Database.thingsdatabase/"
    return zip_bytes({prefix + name: content for name, content in files.items()})


# ------------------------------------------------------------------ Google Keep


def keep_notes(*, edited: bool = False, inconsistent: bool = False) -> dict[str, dict]:
    usec = 1_000_000
    created = 1_700_000_000 * usec
    return {
        "Einkaufsliste.json": {
            "color": "YELLOW",
            "isTrashed": False,
            "isPinned": True,
            "isArchived": False,
            "title": "Einkaufsliste 🛒",
            "listContent": [
                {"textHtml": "Milch", "text": "Milch", "isChecked": True},
                {"textHtml": "Brot", "text": "Brot", "isChecked": edited},
                {"textHtml": "Käse 🧀", "text": "Käse 🧀", "isChecked": False},
            ],
            "labels": [{"name": "Haushalt"}],
            "userEditedTimestampUsec": created + (7200 if edited else 3600) * usec,
            "createdTimestampUsec": created,
        },
        "2023-11-14T22_13_20.000+01_00.json": {  # an untitled note: Takeout names it by time
            "color": "DEFAULT",
            "isTrashed": False,
            "isPinned": False,
            "isArchived": True,
            "title": "",
            "textContent": "Idee: " + note_text(inconsistent),
            "userEditedTimestampUsec": (created - 86_400 * usec)
            if inconsistent
            else created + 60 * usec,
            "createdTimestampUsec": created + 10 * usec,
            "attachments": [{"filePath": "photo.jpg", "mimetype": "image/jpeg"}],
            "annotations": [{"url": "https://example.org", "title": "x", "source": "WEBLINK"}],
        },
        "Erledigt.json": {
            "isTrashed": False,
            "isArchived": False,
            "title": "Erledigt" + (" ✅" if edited else ""),
            "listContent": [{"text": "Steuer", "isChecked": True}],
            "userEditedTimestampUsec": created + 500 * usec,
            "createdTimestampUsec": created + 20 * usec,
        },
        "Papierkorb.json": {
            "isTrashed": True,
            "isArchived": False,
            "title": "Weg",
            "textContent": "gelöscht",
            "userEditedTimestampUsec": created,
            "createdTimestampUsec": created + 30 * usec,
        },
        "Doppelt.json": {  # the same creation time as the shopping list: a repeated id
            "isTrashed": False,
            "isArchived": False,
            "title": "Doppelt",
            "textContent": "",
            "userEditedTimestampUsec": created + 40 * usec,
            "createdTimestampUsec": created,
        },
    }


def tar_bytes(members: dict[str, bytes], *, gzip: bool = True) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def keep_takeout(
    *, folder: str = "Notizen", tgz: bool = True, edited: bool = False, inconsistent: bool = False
) -> bytes:
    members = {
        f"Takeout/{folder}/{name}": json.dumps(note, ensure_ascii=False).encode()
        for name, note in keep_notes(edited=edited, inconsistent=inconsistent).items()
    }
    members[f"Takeout/{folder}/{'Labels.txt'}"] = b"Haushalt\n"
    members["Takeout/archive_browser.html"] = b"<html></html>"
    return tar_bytes(members) if tgz else zip_bytes(members)


# ------------------------------------------------------------------ Joplin


def joplin_item(title: str | None, body: str, **properties: object) -> bytes:
    defaults = {
        "created_time": "2023-04-01T10:00:00.000Z",
        "updated_time": "2023-04-02T10:00:00.000Z",
        "is_conflict": 0,
        "latitude": "0.00000000",
        "longitude": "0.00000000",
        "author": "",
        "source_url": "",
        "is_todo": 0,
        "todo_due": 0,
        "todo_completed": 0,
        "source": "joplin-desktop",
        "application_data": "",
        "order": 0,
        "encryption_cipher_text": "",
        "encryption_applied": 0,
        "markup_language": 1,
        "is_shared": 0,
        "deleted_time": 0,
    }
    meta = {"id": properties.pop("id"), "parent_id": properties.pop("parent_id", "")}
    meta.update(defaults)
    meta.update(properties)
    kind = meta.pop("type_", 1)
    lines = [f"{k}: {v}" for k, v in meta.items()] + [f"type_: {kind}"]
    head = "" if title is None else (f"{title}\n\n{body}\n\n" if body else f"{title}\n\n")
    return (head + "\n".join(lines)).encode()


J_WORK, J_PROJECTS, J_DEEP, J_HOME = "a" * 32, "b" * 32, "c" * 32, "d" * 32
J_REPORT, J_MILK, J_NOTE, J_DEEPTODO, J_TRASHED, J_ORPHAN = (
    "e" * 32,
    "f" * 32,
    "0" * 31 + "1",
    "0" * 31 + "2",
    "0" * 31 + "3",
    "0" * 31 + "4",
)
J_TAG, J_LINK = "0" * 31 + "5", "0" * 31 + "6"
MS = 1_700_000_000_000


def joplin_export(*, edited: bool = False, inconsistent: bool = False) -> bytes:
    items = {
        J_WORK: joplin_item("Arbeit 💼", "", id=J_WORK, type_=2),
        J_PROJECTS: joplin_item("Projekte", "", id=J_PROJECTS, parent_id=J_WORK, type_=2),
        J_DEEP: joplin_item("Tief", "", id=J_DEEP, parent_id=J_PROJECTS, type_=2),
        J_HOME: joplin_item("", "", id=J_HOME, type_=2),
        J_REPORT: joplin_item(
            "Quarterly report",
            "Draft the **numbers**\n\n- revenue\n- costs",
            id=J_REPORT,
            parent_id=J_PROJECTS,
            is_todo=1,
            todo_due=MS + 86_400_000,
            todo_completed=(MS if edited else 0),
            created_time="2023-11-14T09:00:00.000Z",
            updated_time=("2023-11-14T21:00:00.000Z" if edited else "2023-11-14T10:00:00.000Z"),
        ),
        J_MILK: joplin_item(
            "Buy milk 🥛",
            "",
            id=J_MILK,
            parent_id=J_HOME,
            is_todo=1,
            todo_completed=MS - 86_400_000 * (400 if inconsistent else 0),
            created_time="2023-11-13T09:00:00.000Z",
            updated_time="2023-11-14T22:13:20.000Z",
        ),
        J_NOTE: joplin_item("Meeting notes", note_text(inconsistent), id=J_NOTE, parent_id=J_WORK),
        J_DEEPTODO: joplin_item(
            "Deep task",
            "",
            id=J_DEEPTODO,
            parent_id=J_DEEP,
            is_todo=1,
            created_time="2023-05-01T00:00:00.000Z",
            updated_time="2023-04-01T00:00:00.000Z" if inconsistent else "2023-05-02T00:00:00.000Z",
        ),
        J_TRASHED: joplin_item("Old", "bye", id=J_TRASHED, parent_id=J_HOME, deleted_time=MS),
        J_ORPHAN: joplin_item("Orphan", "", id=J_ORPHAN, parent_id="9" * 32),
        J_TAG: joplin_item("wichtig ❗", "", id=J_TAG, type_=5),
        J_LINK: joplin_item(None, "", id=J_LINK, note_id=J_REPORT, tag_id=J_TAG, type_=6),
    }
    members = {f"{key}.md": content for key, content in items.items()}
    members[f"resources/{'1' * 32}.png"] = b"\x89PNG\r\n\x1a\n"
    return tar_bytes(members, gzip=False)
