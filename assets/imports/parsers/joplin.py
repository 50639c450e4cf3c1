"""Joplin: the `.jex` export (a tar of `<id>.md` items, each ending in a metadata block).

Every item is one Markdown file: its title on the first line, a blank line, the body, a
blank line, then `key: value` lines down to `type_: N` (1 note, 2 notebook, 4 resource,
5 tag, 6 note-tag link). Notebooks become goals nested as in Joplin (`parent_id`), notes
and to-dos goals under their notebook; a to-do's `todo_completed` (Unix milliseconds) is its
completion time and `todo_due` its target date, in the user's time zone. Tags are kept in
the extras and at the end of the description. Notes in Joplin's trash (`deleted_time`) and
conflict copies are reported as skipped. Joplin's ids are stable, so they are the keys.
"""

from __future__ import annotations

import datetime as dt
import re

from assets.imports.parsers.archives import is_tar, safe_tar_members
from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    base_name,
    compose_description,
    import_parser,
    reading_item,
)
from assets.imports.parsers.dates import UTC, from_epoch_ms, parse_timestamp, zone
from assets.imports.parsers.textio import decode_text

APP = "joplin"
NOTE, FOLDER, RESOURCE, TAG, NOTE_TAG = 1, 2, 4, 5, 6
_ITEM_NAME_RE = re.compile(r"^[0-9a-f]{32}\.md$")
_PROPERTY_RE = re.compile(r"^([a-z_]+): ?(.*)$")

GUIDE = """\
## Joplin

**How to export**

In Joplin desktop choose **File → Export all → JEX - Joplin Export File**
(or right-click a notebook → **Export → JEX**). Upload the `.jex` file as it is.

**What goalport keeps**

Notebooks and sub-notebooks (as goals, nested as in Joplin, three levels at
most), notes and to-dos (as goals under their notebook: the note's text becomes the
description), whether a to-do is done and when, its due date, tags, creation and
modification times.

**What it cannot keep**

Attachments and images (only their links stay in the text), note history,
alarms' notification times, location fields, encrypted notes (decrypt them in Joplin
first). Notes in Joplin's trash and conflict copies are left out and listed as skipped.
"""


def is_joplin_item(text: str) -> bool:
    """An item file's text: it ends with a `type_: N` line after `id: <32 hex>`."""
    tail = text.rstrip()[-4096:]
    return bool(re.search(r"(?m)^id: [0-9a-f]{32}$", tail)) and bool(
        re.search(r"(?m)^type_: \d+\Z", tail)
    )


def is_joplin_member(name: str) -> bool:
    return _ITEM_NAME_RE.match(base_name(name)) is not None and "/" not in name.strip("/")


@import_parser("export.jex")
def parse_joplin(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """A Joplin JEX export (tar of items) as notebooks, notes and to-dos."""
    if not is_tar(data):
        raise ImportFormatError(name, None, None, "not a Joplin export: a .jex file is a tar")
    members = safe_tar_members(data, file_name=name, select=is_joplin_member)
    items: list[tuple[str, dict[str, str], str, str]] = []
    for path in sorted(members):
        text = decode_text(members[path], file_name=f"{name}/{path}")
        with reading_item(name, f"member '{path}'"):
            properties, title, body = split_item(text)
        if properties.get("id"):
            items.append((path, properties, title, body))
    if not items:
        raise ImportFormatError(name, None, None, "the archive holds no Joplin item")
    builder = ImportBuilder(APP, now=now, module_name="Joplin")
    _Items(builder, name, zone(timezone) or UTC, items).read()
    return builder.finish()


def split_item(text: str) -> tuple[dict[str, str], str, str]:
    """(metadata, title, body) of one serialised item, as Joplin writes it."""
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    properties: dict[str, str] = {}
    end = len(lines)
    while end > 0:
        match = _PROPERTY_RE.match(lines[end - 1])
        if match is None:
            break
        # values are written with their newlines escaped
        properties.setdefault(match[1], match[2].replace("\\n", "\n").replace("\\r", ""))
        end -= 1
    head = lines[:end]
    while head and not head[-1].strip():
        head.pop()
    title = head[0].strip() if head else ""
    body = "\n".join(head[2:] if len(head) > 1 and not head[1].strip() else head[1:])
    return properties, title, body.strip("\n")


def _int(value: str | None) -> int:
    try:
        return int(float(value)) if value else 0
    except (ValueError, OverflowError):
        return 0


class _Items:
    def __init__(
        self,
        builder: ImportBuilder,
        file_name: str,
        tz: dt.tzinfo,
        items: list[tuple[str, dict[str, str], str, str]],
    ) -> None:
        self.builder = builder
        self.file_name = file_name
        self.tz = tz
        self.items = items

    def read(self) -> None:
        tag_names: dict[str, str] = {}
        tags_of: dict[str, list[str]] = {}
        folders, notes = [], []
        for item in self.items:
            kind = _int(item[1].get("type_"))
            if kind == FOLDER:
                folders.append(item)
            elif kind == NOTE:
                notes.append(item)
            elif kind == TAG:
                tag_names[item[1]["id"]] = item[2]
        for _, properties, _, _ in self.items:
            if _int(properties.get("type_")) == NOTE_TAG:
                tag = tag_names.get(properties.get("tag_id", ""))
                if tag:
                    tags_of.setdefault(properties.get("note_id", ""), []).append(tag)
        for path, properties, title, _ in folders:
            with reading_item(self.file_name, f"member '{path}'"):
                self._folder(path, properties, title)
        for path, properties, title, body in notes:
            with reading_item(self.file_name, f"member '{path}'"):
                self._note(path, properties, title, body, sorted(tags_of.get(properties["id"], [])))

    def _times(self, properties: dict[str, str]) -> tuple[dt.datetime | None, dt.datetime | None]:
        created = parse_timestamp(properties.get("user_created_time")) or parse_timestamp(
            properties.get("created_time")
        )
        updated = parse_timestamp(properties.get("user_updated_time")) or parse_timestamp(
            properties.get("updated_time")
        )
        return created, updated

    def _parent(self, properties: dict[str, str]) -> str | None:
        parent = properties.get("parent_id", "").strip()
        return self.builder.key("folder", parent) if parent else None

    def _skipped(self, properties: dict[str, str], label: str, kind: str) -> bool:
        key = self.builder.key(kind, properties["id"])
        if _int(properties.get("deleted_time")):
            self.builder.skip(label, "in Joplin's trash", external_key=key)
            return True
        if _int(properties.get("encryption_applied")):
            self.builder.skip(label, "encrypted in Joplin; decrypt it first", external_key=key)
            return True
        if _int(properties.get("is_conflict")):
            self.builder.skip(label, "a conflict copy of another note", external_key=key)
            return True
        return False

    def _folder(self, path: str, properties: dict[str, str], title: str) -> None:
        label = f"notebook '{title}' ({path})"
        if self._skipped(properties, label, "folder"):
            return
        created, updated = self._times(properties)
        self.builder.add_goal(
            self.builder.key("folder", properties["id"]),
            title=title or "Untitled notebook",
            source_item=label,
            parent=self._parent(properties),
            created_at=created,
            updated_at=updated,
            extras={"icon": properties.get("icon")},
        )

    def _note(
        self, path: str, properties: dict[str, str], title: str, body: str, tags: list[str]
    ) -> None:
        is_todo = bool(_int(properties.get("is_todo")))
        label = f"{'to-do' if is_todo else 'note'} '{title}' ({path})"
        if self._skipped(properties, label, "note"):
            return
        created, updated = self._times(properties)
        completed_ms = _int(properties.get("todo_completed"))
        due_ms = _int(properties.get("todo_due"))
        completed_at = from_epoch_ms(completed_ms) if is_todo and completed_ms > 0 else None
        due_at = from_epoch_ms(due_ms) if due_ms > 0 else None
        self.builder.add_goal(
            self.builder.key("note", properties["id"]),
            title=title or _first_line(body) or "Untitled note",
            source_item=label,
            parent=self._parent(properties),
            description=compose_description(body, labels=tags),
            target_date=due_at.astimezone(self.tz).date() if due_at else None,
            is_completed=completed_at is not None,
            completed_at=completed_at,
            created_at=created,
            updated_at=updated,
            extras={
                "isTodo": is_todo,
                "tags": tags,
                "sourceUrl": properties.get("source_url"),
                "author": properties.get("author"),
                "due": due_at.isoformat() if due_at else None,
            },
        )


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()[:200]
    return ""
