"""Google Keep: the notes and checklists of a Google Takeout archive (`.zip` or `.tgz`).

Takeout names Keep's folder in the account's language (`Takeout/Keep/`, `Takeout/Notizen/`,
...), so notes are found by their JSON keys, not their folder: an object with
`textContent` or `listContent`, `isTrashed`, and Keep's microsecond timestamps. Each note
becomes a goal (its text the description; a checklist's items sub-goals, done when ticked),
archived notes included (kept in the extras), trashed ones reported as skipped. Labels are
kept as tags. Keep notes carry no id: a note's key is its creation time in microseconds,
which Keep never changes, and an item's key its note's plus its position.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from assets.imports.parsers.archives import archive_members, is_tar
from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ParsedImport,
    as_dict,
    as_list,
    as_text,
    compose_description,
    import_parser,
    is_zip,
    reading_item,
)
from assets.imports.parsers.dates import UTC
from assets.imports.parsers.textio import load_json

APP = "google_keep"
_TIMESTAMPS = ("userEditedTimestampUsec", "createdTimestampUsec")
MAX_TITLE_CHARS = 200

GUIDE = """\
## Google Keep

**How to export**

Go to **Google Takeout** (takeout.google.com), click **Deselect all**, tick
**Keep**, then **Next step → Create export**. Download the `.zip` (or `.tgz`) Google sends
and upload it as it is; the Keep folder may have another name in your language.

**What goalport keeps**

Every note and checklist (as a goal: the note's text becomes the description, a
checklist's items sub-goals, ticked items done), labels (as tags), archived and pinned
notes, colours, creation and last-edit times.

**What it cannot keep**

Images, drawings and audio recordings (listed in the goal's extras by file
name), reminders (Takeout leaves them out), collaborators. Notes in Keep's trash are left
out and listed as skipped.
"""


def is_keep_note(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and ("textContent" in doc or "listContent" in doc)
        and "isTrashed" in doc
        and any(k in doc for k in _TIMESTAMPS)
    )


def is_keep_candidate(name: str) -> bool:
    """A Takeout member that may be a Keep note: a JSON file one folder below the root's
    service folder (`Takeout/<Keep, in any language>/<note>.json`)."""
    parts = name.split("/")
    return name.casefold().endswith(".json") and len(parts) >= 2


@import_parser("takeout.zip")
def parse_google_keep(
    data: bytes, name: str, now: dt.datetime | None, timezone: str | None
) -> ParsedImport:
    """Google Keep notes from a Takeout archive (zip or tgz), or one note's JSON."""
    if is_zip(data) or is_tar(data):
        members = archive_members(data, file_name=name, select=is_keep_candidate)
    else:
        members = {name: data}
    builder = ImportBuilder(APP, now=now, module_name="Google Keep")
    notes = 0
    for path in sorted(members):
        if not path.casefold().endswith(".json"):
            continue
        content = members[path]
        where = f"{name}/{path}" if path != name else name
        try:
            doc = load_json(content, file_name=where)
        except RecursionError:
            raise ImportFormatError(where, None, None, "JSON nested too deep") from None
        if not is_keep_note(doc):
            continue
        notes += 1
        with reading_item(name, f"note '{path}'"):
            _note(builder, doc, path)
    if notes == 0:
        raise ImportFormatError(name, None, None, "holds no Google Keep note")
    return builder.finish()


def _usec(value: Any) -> dt.datetime | None:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        return dt.datetime.fromtimestamp(value / 1_000_000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _note(builder: ImportBuilder, doc: dict, path: str) -> None:
    created = _usec(doc.get("createdTimestampUsec"))
    edited = _usec(doc.get("userEditedTimestampUsec"))
    stamp = doc.get("createdTimestampUsec")
    note_id = str(stamp) if isinstance(stamp, int | str) and str(stamp).isdigit() else path
    title = " ".join(as_text(doc.get("title")).split())
    text = as_text(doc.get("textContent"))
    items = [as_dict(i) for i in as_list(doc.get("listContent"))]
    label = f"note '{title}' ({path})"
    key = builder.key("note", note_id)
    if doc.get("isTrashed") is True:
        builder.skip(label, "in Keep's trash", external_key=key)
        return
    labels = [as_text(as_dict(x).get("name")) for x in as_list(doc.get("labels"))]
    labels = [x for x in labels if x]
    fallback = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not fallback and items:
        fallback = as_text(items[0].get("text")).strip()
    if not title:
        title = fallback[:MAX_TITLE_CHARS] or "Untitled note"
    done = bool(items) and all(i.get("isChecked") is True for i in items)
    goal = builder.add_goal(
        key,
        title=title,
        source_item=label,
        description=compose_description(text, labels=labels),
        is_completed=done,
        # a note carries no completion time; its last edit is the nearest the file knows
        completed_at=edited if done else None,
        created_at=created,
        updated_at=edited,
        extras={
            "labels": labels,
            "archived": doc.get("isArchived") is True or None,
            "pinned": doc.get("isPinned") is True or None,
            "color": doc.get("color") if doc.get("color") not in (None, "DEFAULT") else None,
            "attachments": [
                as_text(as_dict(a).get("filePath")) for a in as_list(doc.get("attachments"))
            ],
            "links": [as_text(as_dict(a).get("url")) for a in as_list(doc.get("annotations"))],
            "sharees": [as_text(as_dict(s).get("email")) for s in as_list(doc.get("sharees"))],
        },
    )
    for position, item in enumerate(items):
        checked = item.get("isChecked") is True
        builder.add_goal(
            builder.key("item", f"{note_id}:{position}"),
            title=as_text(item.get("text")) or "Untitled item",
            source_item=f"item {position + 1} of {label}",
            parent=goal,
            is_completed=checked,
            completed_at=edited if checked else None,
            created_at=created,
            updated_at=edited,
        )
