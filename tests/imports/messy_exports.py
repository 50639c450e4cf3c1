"""Exports of every supported app, built to each app's documented format
(docs in shared/formats, copied facts only) *with* the inconsistencies real users' files
have: completed before created, done without a completion time, a completion time on an
open item, last modified before created, values outside the app's ranges, titles over the
length limit, repeated external ids, parents not in the file, cycles.

Each `MessyExport` says what must come out: the items by title (parent title, done,
creation and completion day), the adjustments the mapping report must hold, and an edited
copy of the file in which exactly one item changed.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
LONG_TITLE = (
    "Write the long essay " + "about moving house " * 12
)  # 248 characters once its spaces are collapsed
SHORT_TITLE = LONG_TITLE[:199].rstrip() + "…"


@dataclass(frozen=True)
class Item:
    """What one imported goal must look like (None: not checked)."""

    parent: str | None = None
    done: bool | None = None
    created: str | None = None  # ISO day of createdAt
    completed: str | None = None  # ISO day of completedAt


@dataclass(frozen=True)
class MessyExport:
    app: str
    file_name: str
    data: bytes
    edited: bytes  # the same export with exactly one item's content changed
    items: dict[str, Item]
    adjustments: tuple[str, ...]  # each must start one adjustment of the report
    edited_title: str
    bad_rows: int = 0
    extra: dict = field(default_factory=dict)


def _csv(rows: list[list[str]], *, bom: bool = False, newline: str = "\r\n") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerows(rows)
    return (("\ufeff" if bom else "") + out.getvalue()).encode()


def todoist_csv() -> MessyExport:
    header = [
        "TYPE", "CONTENT", "DESCRIPTION", "PRIORITY", "INDENT", "AUTHOR", "RESPONSIBLE",
        "DATE", "DATE_LANG", "TIMEZONE", "DURATION", "DURATION_UNIT",
    ]  # fmt: skip

    def rows(description: str) -> list[list[str]]:
        return [
            header,
            ["task", "Plan the move @home", description, "1", "1", "Alex (1)", "",
             "2026-05-01", "en", "Europe/Paris", "90", "minute"],
            ["note", 'Quote attached [[file {"file_name":"quote.pdf","file_type":"application\\/pdf"}]]',
             "", "", "", "Alex (1)", "", "", "en", "Europe/Paris", "", ""],
            ["task", "Rent a van", "", "urgent", "2", "Alex (1)", "", "", "en", "Europe/Paris", "", ""],
            ["task", "Book movers", "", "4", "x", "Alex (1)", "", "", "en", "Europe/Paris", "", ""],
            ["task", LONG_TITLE, "", "4", "1", "Alex (1)", "", "", "en", "Europe/Paris", "", ""],
            ["task", "Level two", "", "4", "2", "", "", "", "en", "UTC", "", ""],
            ["task", "Level three", "", "4", "3", "", "", "", "en", "UTC", "", ""],
            ["task", "Level four", "", "4", "4", "", "", "", "en", "UTC", "", ""],
            ["", "", "", "", "", "", "", "", "", "", "", ""],
        ]  # fmt: skip

    return MessyExport(
        "todoist",
        "Home [2203306141].csv",
        _csv(rows("Boxes first"), bom=True),
        _csv(rows("Boxes first, then the plants"), bom=True),
        {
            "Home": Item(parent=None),
            "Plan the move": Item(parent="Home", done=False),
            "Rent a van": Item(parent="Plan the move"),
            "Book movers": Item(parent="Plan the move"),
            SHORT_TITLE: Item(parent="Home"),
            "Level four": Item(parent=SHORT_TITLE),
        },
        (
            "PRIORITY 'urgent' is not a Todoist priority",
            "INDENT 'x' is not an indent level",
            "title of 248 characters is longer than the app's 200",
        ),
        "Plan the move",
    )


def todoist_json() -> MessyExport:
    def document(milk_description: str) -> bytes:
        items = [
            {"id": "1", "content": "Buy milk", "description": milk_description,
             "project_id": "2203306141", "priority": 4, "checked": True,
             "added_at": "2024-02-10T08:00:00Z", "completed_at": "2024-02-01T09:00:00Z",
             "updated_at": "2024-02-11T08:00:00Z", "labels": ["errands"],
             "duration": {"amount": 15, "unit": "minute"}},
            {"id": "2", "content": "Oat milk", "project_id": "2203306141", "parent_id": "1",
             "priority": 1, "checked": False, "added_at": "2024-02-10T08:00:00Z",
             "completed_at": "2024-02-12T08:00:00Z"},
            {"id": "3", "content": "Water plants", "project_id": "2203306141", "priority": 9,
             "checked": True, "added_at": "2024-02-05T08:00:00Z",
             "updated_at": "2024-02-06T07:00:00Z"},
            {"id": "4", "content": "Fix the tap", "project_id": "2203306141", "priority": 2,
             "checked": False, "added_at": "2024-02-08T08:00:00Z",
             "updated_at": "2024-01-02T08:00:00Z"},
            {"id": "4", "content": "Fix the tap again", "project_id": "2203306141",
             "checked": False, "added_at": "2024-02-09T08:00:00Z"},
            {"id": "5", "content": "Lost child", "project_id": "2203306141", "parent_id": "404",
             "checked": False, "added_at": "2024-02-09T08:00:00Z"},
            {"id": "8", "content": "Chicken", "project_id": "2203306141", "parent_id": "9",
             "checked": False, "added_at": "2024-02-09T08:00:00Z"},
            {"id": "9", "content": "Egg", "project_id": "2203306141", "parent_id": "8",
             "checked": False, "added_at": "2024-02-09T08:00:00Z"},
            {"id": "10", "content": LONG_TITLE, "project_id": "2203306141", "checked": False,
             "added_at": "2024-02-09T08:00:00Z"},
        ]  # fmt: skip
        doc = {
            "sync_token": "abc",
            "projects": [
                {"id": "2203306141", "name": "Home", "created_at": "2024-01-01T00:00:00Z"}
            ],
            "sections": [],
            "items": items,
            "notes": [{"id": "n1", "item_id": "1", "content": "the big carton"}],
        }
        return json.dumps(doc).encode()

    return MessyExport(
        "todoist",
        "todoist-backup.json",
        document("2 litres"),
        document("3 litres"),
        {
            "Home": Item(parent=None),
            "Buy milk": Item("Home", True, "2024-02-01", "2024-02-01"),
            "Oat milk": Item("Buy milk", False, "2024-02-10", None),
            "Water plants": Item("Home", True, "2024-02-05", "2024-02-06"),
            "Fix the tap": Item("Home", False, "2024-01-02"),
            "Fix the tap again": Item("Home", False),
            "Lost child": Item("Imported from Todoist: items whose parent is not in the file"),
            SHORT_TITLE: Item("Home"),
        },
        (
            "completed (2024-02-01T09:00:00Z) before it was created",
            "open, but with a completion time",
            "done without a completion time: completedAt taken from the last change",
            "last modified (2024-01-02T08:00:00Z) before it was created",
            "priority '9' is not a Todoist priority",
            "repeats the external id of an earlier item (todoist:item:4)",
            "its parent todoist:item:404 is not in the file",
            "its parents form a cycle",
            "title of 248 characters",
        ),
        "Buy milk",
    )


def trello() -> MessyExport:
    # a card id's first 8 hex digits are its creation time: 5f000000 = 2020-07-04T00:00Z
    def document(desc: str) -> bytes:
        board = {
            "id": "5e0000000000000000000001",
            "name": "Moving",
            "lists": [{"id": "5e0000000000000000000002", "name": "Doing", "closed": False}],
            "cards": [
                {"id": "5f0000000000000000000001", "name": "Sign lease", "desc": desc,
                 "idList": "5e0000000000000000000002", "dueComplete": True,
                 "dateCompleted": "2019-05-01T10:00:00.000Z",
                 "dateLastActivity": "2020-08-01T00:00:00.000Z"},
                {"id": "5f0000000000000000000002", "name": "Pack books",
                 "idList": "5e0000000000000000000002", "dueComplete": True,
                 "dateLastActivity": "2020-07-10T00:00:00.000Z"},
                {"id": "5f0000000000000000000003", "name": "Reopened",
                 "idList": "5e0000000000000000000002", "dueComplete": False,
                 "dateCompleted": "2020-07-08T00:00:00.000Z",
                 "dateLastActivity": "2020-07-09T00:00:00.000Z"},
                {"id": "5f0000000000000000000004", "name": "Copied card",
                 "idList": "5e0000000000000000000002",
                 "dateLastActivity": "2018-01-01T00:00:00.000Z"},
                {"id": "5f0000000000000000000004", "name": "Copied card twin",
                 "idList": "5e0000000000000000000002",
                 "dateLastActivity": "2020-07-05T00:00:00.000Z"},
                {"id": "5f0000000000000000000005", "name": "Stray card",
                 "idList": "5e00000000000000000000ff",
                 "dateLastActivity": "2020-07-05T00:00:00.000Z"},
                {"id": "5f0000000000000000000006", "name": LONG_TITLE,
                 "idList": "5e0000000000000000000002",
                 "dateLastActivity": "2020-07-05T00:00:00.000Z"},
            ],
            "checklists": [],
            "actions": [],
            "labels": [],
            "members": [],
        }  # fmt: skip
        return json.dumps(board).encode()

    return MessyExport(
        "trello",
        "board.json",
        document("Both signatures"),
        document("Both signatures, and the deposit"),
        {
            "Moving": Item(None),
            "Doing": Item("Moving"),
            "Sign lease": Item("Doing", True, "2019-05-01", "2019-05-01"),
            "Pack books": Item("Doing", True, "2020-07-04", "2020-07-10"),
            "Reopened": Item("Doing", False),
            "Copied card": Item("Doing", False, "2018-01-01"),
            "Copied card twin": Item("Doing"),
            "Stray card": Item("Moving"),
            SHORT_TITLE: Item("Doing"),
        },
        (
            "completed (2019-05-01T10:00:00Z) before it was created",
            "done without a completion time: completedAt taken from the last change",
            "open, but with a completion time",
            "last modified (2018-01-01T00:00:00Z) before it was created",
            "repeats the external id of an earlier item (trello:card:5f0000000000000000000004)",
            "its list 5e00000000000000000000ff is not in the export",
            "title of 248 characters",
        ),
        "Sign lease",
    )


def asana() -> MessyExport:
    header = ["Task ID", "Created At", "Completed At", "Last Modified", "Name",
              "Section/Column", "Assignee", "Due Date", "Tags", "Notes", "Projects",
              "Parent Task", "Priority"]  # fmt: skip

    def rows(notes: str) -> list[list[str]]:
        return [
            header,
            ["1203400000000001", "2024-01-10", "2024-01-05", "2024-01-11", "Launch site",
             "Planning", "Jordan", "2024-03-31", "web", notes, "Relaunch", "", "High"],
            ["1203400000000002", "2024-01-10", "", "2024-01-02", "Pick a domain", "", "",
             "", "", "", "", "Launch site", ""],
            ["1203400000000003", "2024-01-12", "", "2024-01-12", "Write copy", "", "",
             "mid-April", "", "", "Relaunch", "", ""],
            ["1203400000000003", "2024-01-12", "", "2024-01-12", "Write copy twice", "", "",
             "", "", "", "Relaunch", "", ""],
            ["1203400000000004", "2024-01-12", "", "2024-01-12", "Orphan subtask", "", "",
             "", "", "", "", "A task in another project", ""],
            ["1203400000000005", "2024-01-12", "", "2024-01-12", LONG_TITLE, "", "", "", "",
             "", "Relaunch", "", "Sky high"],
        ]  # fmt: skip

    return MessyExport(
        "asana",
        "Relaunch.csv",
        _csv(rows("Kick-off")),
        _csv(rows("Kick-off, then review")),
        {
            "Relaunch": Item(None),
            "Launch site": Item("Relaunch", True, "2024-01-05", "2024-01-05"),
            "Pick a domain": Item("Launch site", False, "2024-01-02"),
            "Write copy": Item("Relaunch", False),
            "Write copy twice": Item("Relaunch", False),
            "Orphan subtask": Item("Relaunch", False),
            SHORT_TITLE: Item("Relaunch"),
        },
        (
            "completed (2024-01-05T12:00:00Z) before it was created",
            "last modified (2024-01-02T12:00:00Z) before it was created",
            "Due Date 'mid-April' is not a date",
            "repeats the external id of an earlier item (asana:task:1203400000000003)",
            "its parent task 'A task in another project' is not in the file",
            "title of 248 characters",
        ),
        "Launch site",
    )


def asana_json() -> MessyExport:
    def document(notes: str) -> bytes:
        project = [{"project": {"gid": "9", "name": "Relaunch"}, "section": {"name": "Doing"}}]
        tasks = [
            {"gid": "11", "name": "Launch site", "notes": notes, "completed": True,
             "completed_at": "2024-01-05T10:00:00.000Z", "created_at": "2024-01-10T10:00:00.000Z",
             "modified_at": "2024-01-11T10:00:00.000Z", "due_on": "2024-03-31",
             "memberships": project, "tags": [{"name": "web"}],
             "custom_fields": [{"name": "Priority", "display_value": "High"}],
             "subtasks": [
                 {"gid": "12", "name": "Pick a domain", "completed": False,
                  "completed_at": "2024-01-12T10:00:00.000Z",
                  "created_at": "2024-01-10T10:00:00.000Z"},
             ]},
            {"gid": "13", "name": "Write copy", "completed": True, "memberships": project,
             "created_at": "2024-01-10T10:00:00.000Z", "modified_at": "2024-01-12T10:00:00.000Z"},
            {"gid": "14", "name": "Orphan", "parent": {"gid": "999", "name": "Elsewhere"},
             "completed": False, "created_at": "2024-01-10T10:00:00.000Z"},
            {"gid": "15", "name": LONG_TITLE, "completed": False, "memberships": project},
            {"gid": "16", "name": "", "completed": False},
        ]  # fmt: skip
        return json.dumps({"data": tasks}).encode()

    return MessyExport(
        "asana",
        "Relaunch.json",
        document("Kick-off"),
        document("Kick-off, then review"),
        {
            "Relaunch": Item(None),
            "Launch site": Item("Relaunch", True, "2024-01-05", "2024-01-05"),
            "Pick a domain": Item("Launch site", False, "2024-01-10"),
            "Write copy": Item("Relaunch", True, "2024-01-10", "2024-01-12"),
            "Orphan": Item("Imported from Asana: items whose parent is not in the file", False),
            SHORT_TITLE: Item("Relaunch"),
        },
        (
            "completed (2024-01-05T10:00:00Z) before it was created",
            "open, but with a completion time",
            "done without a completion time: completedAt taken from the last change",
            "its parent asana:task:999 is not in the file",
            "title of 248 characters",
        ),
        "Launch site",
        bad_rows=1,
    )


def ticktick() -> MessyExport:
    preamble = [
        ["Date: 2024-03-10+0000"],
        ["Version: 7.1"],
        ["Status: \n0 Normal\n1 Completed\n2 Archived"],
    ]
    header = ["Folder Name", "List Name", "Title", "Kind", "Tags", "Content", "Is Check list",
              "Start Date", "Due Date", "Reminder", "Repeat", "Priority", "Status",
              "Created Time", "Completed Time", "Order", "Timezone", "Is All Day",
              "Is Floating", "Column Name", "Column Order", "View Mode", "taskId", "parentId"]  # fmt: skip

    def task(title, content="", priority="0", status="0", created="", completed="", task_id="", parent=""):  # fmt: skip
        return ["", "Inbox", title, "TEXT", "", content, "N", "", "", "", "", priority, status,
                created, completed, "0", "Europe/Paris", "false", "false", "", "", "list",
                task_id, parent]  # fmt: skip

    def rows(content: str) -> list[list[str]]:
        return [
            *preamble,
            header,
            task("Call the bank", content, "5", "2", "2024-02-10T08:00:00+0000",
                 "2024-02-01T08:00:00+0000", "9001"),
            task("Archive receipts", "", "0", "2", "2024-02-10T08:00:00+0000", "", "9002"),
            task("Reopened chore", "", "0", "0", "2024-02-10T08:00:00+0000",
                 "2024-02-11T08:00:00+0000", "9003"),
            task("Odd priority", "", "7", "0", "2024-02-10T08:00:00+0000", "", "9004"),
            task("Odd priority twin", "", "0", "0", "2024-02-10T08:00:00+0000", "", "9004"),
            task("Lost sub-task", "", "0", "0", "2024-02-10T08:00:00+0000", "", "9005", "8000"),
            task(LONG_TITLE, "", "0", "0", "2024-02-10T08:00:00+0000", "", "9006"),
        ]  # fmt: skip

    return MessyExport(
        "ticktick",
        "TickTick-backup-2024-03-10.csv",
        _csv(rows("Ask about the fee"), bom=True, newline="\n"),
        _csv(rows("Ask about the fee and the card"), bom=True, newline="\n"),
        {
            "Inbox": Item(None),
            "Call the bank": Item("Inbox", True, "2024-02-01", "2024-02-01"),
            "Archive receipts": Item("Inbox", True, "2024-02-10", "2024-02-10"),
            "Reopened chore": Item("Inbox", False, "2024-02-10"),
            "Odd priority": Item("Inbox", False),
            "Odd priority twin": Item("Inbox", False),
            "Lost sub-task": Item("Inbox", False),
            SHORT_TITLE: Item("Inbox"),
        },
        (
            "completed (2024-02-01T08:00:00Z) before it was created",
            "done without a completion time: completedAt taken from the last change",
            "open, but with a completion time",
            "Priority '7' is not a TickTick priority",
            "repeats the external id of an earlier item (ticktick:task:9004)",
            "its parent task 8000 is not in the file",
            "title of 248 characters",
        ),
        "Call the bank",
    )


def google_tasks() -> MessyExport:
    def document(notes: str) -> bytes:
        tasks = [
            {"kind": "tasks#task", "id": "dGFzazE", "title": "Renew card", "notes": notes,
             "status": "completed", "created": "2024-02-10T08:00:00.000Z",
             "completed": "2024-02-01T08:00:00.000Z", "updated": "2024-02-11T08:00:00.000Z"},
            {"kind": "tasks#task", "id": "dGFzazI", "title": "Water plants",
             "status": "completed", "created": "2024-02-10T08:00:00.000Z",
             "updated": "2024-02-12T08:00:00.000Z"},
            {"kind": "tasks#task", "id": "dGFzazM", "title": "Reopened",
             "status": "needsAction", "created": "2024-02-10T08:00:00.000Z",
             "completed": "2024-02-11T08:00:00.000Z", "updated": "2024-02-12T08:00:00.000Z"},
            {"kind": "tasks#task", "id": "dGFzazQ", "title": "Moved list",
             "status": "needsAction", "created": "2024-02-10T08:00:00.000Z",
             "updated": "2024-01-15T08:00:00.000Z"},
            {"kind": "tasks#task", "id": "dGFzazQ", "title": "Moved list twin",
             "status": "needsAction", "updated": "2024-02-12T08:00:00.000Z"},
            {"kind": "tasks#task", "id": "dGFzazU", "title": "Orphan", "parent": "bm9wZQ",
             "status": "needsAction", "updated": "2024-02-12T08:00:00.000Z"},
            {"kind": "tasks#task", "id": "dGFzazY", "title": LONG_TITLE,
             "status": "needsAction", "updated": "2024-02-12T08:00:00.000Z"},
        ]  # fmt: skip
        doc = {
            "kind": "tasks#taskLists",
            "items": [
                {
                    "kind": "tasks#tasks",
                    "id": "bGlzdDE",
                    "title": "My Tasks",
                    "updated": "2024-02-12T08:00:00.000Z",
                    "items": tasks,
                }
            ],
        }
        return json.dumps(doc).encode()

    return MessyExport(
        "google_tasks",
        "Tasks.json",
        document("Bring the old one"),
        document("Bring the old one and a photo"),
        {
            "My Tasks": Item(None),
            "Renew card": Item("My Tasks", True, "2024-02-01", "2024-02-01"),
            "Water plants": Item("My Tasks", True, "2024-02-10", "2024-02-12"),
            "Reopened": Item("My Tasks", False),
            "Moved list": Item("My Tasks", False, "2024-01-15"),
            "Moved list twin": Item("My Tasks", False),
            "Orphan": Item("My Tasks", False),
            SHORT_TITLE: Item("My Tasks"),
        },
        (
            "completed (2024-02-01T08:00:00Z) before it was created",
            "done without a completion time: completedAt taken from the last change",
            "open, but with a completion time",
            "last modified (2024-01-15T08:00:00Z) before it was created",
            "repeats the external id of an earlier item (google_tasks:task:dGFzazQ)",
            "its parent task bm9wZQ is not in its list",
            "title of 248 characters",
        ),
        "Renew card",
    )


def habitica() -> MessyExport:
    def document(notes: str) -> bytes:
        todos = [
            {"_id": "t1", "type": "todo", "text": "File taxes", "notes": notes, "priority": 1,
             "completed": True, "dateCompleted": "2024-01-20T12:00:00.000Z",
             "createdAt": "2024-02-01T12:00:00.000Z", "updatedAt": "2024-02-02T12:00:00.000Z"},
            {"_id": "t2", "type": "todo", "text": "Sort mail", "priority": 1, "completed": True,
             "createdAt": "2024-02-01T12:00:00.000Z", "updatedAt": "2024-02-03T12:00:00.000Z"},
            {"_id": "t3", "type": "todo", "text": "Undone", "priority": 1.5, "completed": False,
             "dateCompleted": "2024-02-02T12:00:00.000Z",
             "createdAt": "2024-02-01T12:00:00.000Z", "updatedAt": "2024-02-03T12:00:00.000Z"},
            {"_id": "t4", "type": "todo", "text": "Odd difficulty", "priority": 7,
             "completed": False, "createdAt": "2024-02-05T12:00:00.000Z",
             "updatedAt": "2024-02-01T12:00:00.000Z"},
            {"_id": "t4", "type": "todo", "text": "Odd difficulty twin", "priority": 2,
             "completed": False, "createdAt": "2024-02-05T12:00:00.000Z"},
            {"_id": "t5", "type": "todo", "text": LONG_TITLE, "priority": 1, "completed": False,
             "createdAt": "2024-02-05T12:00:00.000Z"},
            {"type": "todo", "text": "No id at all"},
        ]  # fmt: skip
        doc = {
            "_id": "user-1",
            "auth": {"local": {"email": "player@example.invalid"}},
            "apiToken": "FAKE-API-TOKEN",
            "preferences": {"timezoneOffset": 0},
            "tags": [],
            "tasks": {"habits": [], "dailys": [], "todos": todos, "rewards": []},
        }
        return json.dumps(doc).encode()

    return MessyExport(
        "habitica",
        "habitica-user-data.json",
        document("Before April"),
        document("Before April, with receipts"),
        {
            "File taxes": Item(None, True, "2024-01-20", "2024-01-20"),
            "Sort mail": Item(None, True, "2024-02-01", "2024-02-03"),
            "Undone": Item(None, False),
            "Odd difficulty": Item(None, False, "2024-02-01"),
            "Odd difficulty twin": Item(None, False),
            SHORT_TITLE: Item(None),
        },
        (
            "completed (2024-01-20T12:00:00Z) before it was created",
            "done without a completion time: completedAt taken from the last change",
            "open, but with a completion time",
            "priority (difficulty) '7' is not a Habitica difficulty",
            "last modified (2024-02-01T12:00:00Z) before it was created",
            "repeats the external id of an earlier item (habitica:todo:t4)",
            "title of 248 characters",
        ),
        "File taxes",
        bad_rows=1,
    )


def notion() -> MessyExport:
    header = ["Name", "Status", "Done", "Created", "Last edited time", "Completed at",
              "Parent item", "Priority"]  # fmt: skip

    def rows(priority: str) -> list[list[str]]:
        return [
            header,
            ["Plan trip", "In progress", "No", "May 1, 2023 9:30 AM", "May 20, 2023 10:15 PM", "",
             "", priority],
            ["Book flights", "Done", "Yes", "May 10, 2023 8:00 AM", "May 11, 2023 8:00 AM",
             "May 2, 2023 8:00 AM", "Plan trip", ""],
            ["Pack", "Done", "Yes", "May 2, 2023 8:05 AM", "May 3, 2023 8:05 AM", "", "Plan trip", ""],
            ["Old page", "Not started", "No", "May 9, 2023 8:05 AM", "May 3, 2023 8:05 AM",
             "May 4, 2023 8:05 AM", "", ""],
            ["Chicken", "Not started", "No", "May 2, 2023 8:06 AM", "May 2, 2023 8:06 AM", "", "Egg", ""],
            ["Egg", "Not started", "No", "May 2, 2023 8:06 AM", "May 2, 2023 8:06 AM", "", "Chicken", ""],
            [LONG_TITLE, "Not started", "No", "May 2, 2023 8:06 AM", "May 2, 2023 8:06 AM", "", "", ""],
        ]  # fmt: skip

    name = "Tasks 0123456789abcdef0123456789abcdef_all.csv"
    return MessyExport(
        "notion",
        name,
        _csv(rows("High"), bom=True),
        _csv(rows("Low"), bom=True),
        {
            "Tasks": Item(None),
            "Book flights": Item("Plan trip", True, "2023-05-02", "2023-05-02"),
            "Pack": Item("Plan trip", True, "2023-05-02", "2023-05-03"),
            "Old page": Item("Tasks", False, "2023-05-03"),
            SHORT_TITLE: Item("Tasks"),
        },
        (
            "completed (2023-05-02T08:00:00Z) before it was created",
            "done without a completion time: completedAt taken from the last change",
            "open, but with a completion time",
            "its parents form a cycle",
            "title of 248 characters",
        ),
        "Plan trip",
    )


def loop_habits() -> MessyExport:
    folder = FIXTURES / "loop_habits" / "export"
    habits = (folder / "Habits.csv").read_text()
    edited = habits.replace("Sit quietly", "Sit quietly, eyes closed")
    return MessyExport(
        "loop_habits",
        "Loop Habits CSV 2024-02-03.zip",
        zip_folder_with(folder, {}),
        zip_folder_with(folder, {"Habits.csv": edited}),
        {"Meditate": Item(None), "Run": Item(None)},
        ("value 12.50 is above its target 5.00",),
        "Meditate",
    )


def zip_folder_with(folder: Path, replaced: dict[str, str]) -> bytes:
    """The folder as a zip (paths relative to it), with some files' text replaced."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                name = path.relative_to(folder).as_posix()
                content = replaced[name].encode() if name in replaced else path.read_bytes()
                archive.writestr(name, content)
    return buffer.getvalue()


def habitica_history() -> MessyExport:
    def rows(name: str) -> list[list[str]]:
        return [
            ["Task Name", "Task ID", "Task Type", "Date", "Value"],
            ["Drink water", "h-1", "habit", "2024-02-01 08:00:00", "1"],
            ["Drink water", "h-1", "habit", "2024-02-02 08:00:00", "2"],
            [name, "d-1", "daily", "2024-02-01 00:00:00", "0"],
            [name, "d-1", "daily", "2024-02-02 00:00:00", "1.5"],
            [name, "d-1", "daily", "2024-02-03 00:00:00", "0.5"],
            ["Broken", "d-2", "daily", "not a date", "1"],
        ]

    return MessyExport(
        "habitica",
        "habitica-tasks-history.csv",
        _csv(rows("Read")),
        _csv(rows("Read a chapter")),
        {"Drink water": Item(None, False, "2024-02-01"), "Read": Item(None, False, "2024-02-01")},
        (),
        "Read",
        bad_rows=1,
    )


def all_messy_exports() -> dict[str, MessyExport]:
    return {
        "todoist_csv": todoist_csv(),
        "todoist_json": todoist_json(),
        "trello": trello(),
        "asana": asana(),
        "asana_json": asana_json(),
        "ticktick": ticktick(),
        "google_tasks": google_tasks(),
        "habitica": habitica(),
        "habitica_history": habitica_history(),
        "notion": notion(),
        "loop_habits": loop_habits(),
    }
