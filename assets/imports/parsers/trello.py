"""Trello: the board JSON export (and the single-card export).

The board is a goal, each list a sub-goal and each card a sub-goal of its list, so the
board reads in the app as it did in Trello (board -> list -> card). Checklist items become
progress entries of their card (1 when checked, 0 when not), with the time Trello logged the
check when the export still has that action. Labels, members, attachments, comments, custom
fields and the card URL go to the extras; archived (`closed`) lists and cards are reported
as skipped unless `include_archived=True`.

Trello ids are stable across exports, so they are the external ids. A card's creation time
is the timestamp hidden in the first 8 hex digits of its id when the `createCard` action
was cut from the 1000-action window.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

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
from assets.imports.parsers.dates import UTC, iso_utc, parse_timestamp, zone
from assets.imports.parsers.textio import load_json

APP = "trello"
_OBJECT_ID_RE = re.compile(r"^[0-9a-f]{24}$")


GUIDE = """\
## Trello

**How to export**

Open the board, click **⋯ (Show menu) → Print, export, and share → Export as JSON**, and
save the page it opens as a `.json` file. A single card's **Share → Export JSON** works too.

**What goalport keeps**

- The board as a goal, each list as a goal under it, each card under its list.
- Card descriptions, due dates, completion (**Due date complete**), checklists (each item
  a progress entry, done or not), labels, members, comments, custom fields and the card
  link (the last ones with the import's extras).

**What it cannot keep**

- Archived lists and cards (reported as skipped).
- Attachments themselves and activity older than Trello's last 1,000 actions.
"""


def is_trello_board(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("lists"), list)
        and isinstance(doc.get("cards"), list)
    )


def is_trello_card(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and "idList" in doc
        and "idBoard" in doc
        and "name" in doc
        and any(k in doc for k in ("checkItemStates", "badges", "idChecklists", "dueComplete"))
    )


def id_timestamp(object_id: str | None) -> dt.datetime | None:
    """When Trello created the object: the first 4 bytes of its id are Unix seconds."""
    if not object_id or not _OBJECT_ID_RE.match(object_id):
        return None
    return dt.datetime.fromtimestamp(int(object_id[:8], 16), tz=UTC)


@import_parser("trello.json")
def parse_trello(
    data: bytes,
    name: str,
    now: dt.datetime | None,
    timezone: str | None,
    include_archived: bool = False,
) -> ParsedImport:
    """A Trello board (or single card) JSON export as goals and check-list progress."""
    doc = load_json(data, file_name=name)
    builder = ImportBuilder(APP, now=now, module_name="Trello")
    reader = _BoardReader(builder, name, zone(timezone) or UTC, include_archived)
    if is_trello_board(doc):
        reader.read_board(doc)
    elif is_trello_card(doc):
        reader.read_single_card(doc)
    else:
        raise ImportFormatError(
            name, None, None, "not a Trello export: expected a board (lists, cards) or a card"
        )
    return builder.finish()


parse_trello_json = parse_trello


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class _BoardReader:
    def __init__(
        self, builder: ImportBuilder, file_name: str, tz: dt.tzinfo, include_archived: bool
    ) -> None:
        self.builder = builder
        self.file_name = file_name
        self.tz = tz
        self.include_archived = include_archived
        self.created: dict[str, dt.datetime] = {}
        self.completed: dict[str, dt.datetime] = {}
        self.checked: dict[str, dt.datetime] = {}
        self.comments: dict[str, list[dict]] = {}
        self.labels: dict[str, dict] = {}
        self.label_names: dict[str, str] = {}
        self.members: dict[str, str] = {}
        self.custom_fields: dict[str, dict] = {}

    def _require_id(self, item: Any, where: str) -> str:
        if not isinstance(item, dict):
            raise ImportFormatError(self.file_name, where, None, "is not an object")
        value = item.get("id")
        if not isinstance(value, str) or not value:
            raise ImportFormatError(self.file_name, where, "id", "missing or not text")
        return value

    def _index(self, doc: dict) -> None:
        for action in as_list(doc.get("actions")):
            action = as_dict(action)
            when = parse_timestamp(_text(action.get("date")))
            data = as_dict(action.get("data"))
            card_id = as_text(as_dict(data.get("card")).get("id"))
            kind = action.get("type")
            if when is None or not card_id:
                continue
            if kind in ("createCard", "copyCard", "convertToCardFromCheckItem"):
                self.created.setdefault(card_id, when)
            elif kind == "commentCard":
                author = as_text(as_dict(action.get("memberCreator")).get("fullName")) or None
                self.comments.setdefault(card_id, []).append(
                    {"text": _text(data.get("text")), "date": iso_utc(when), "author": author}
                )
            elif kind == "updateCheckItemStateOnCard":
                item_id = as_text(as_dict(data.get("checkItem")).get("id"))
                if item_id:
                    self.checked.setdefault(item_id, when)  # actions are newest first
            elif kind == "updateCard" and as_dict(data.get("card")).get("dueComplete") is True:
                self.completed.setdefault(card_id, when)
        for label in as_list(doc.get("labels")):
            if as_text(as_dict(label).get("id")):
                self.labels[label["id"]] = label
        self.label_names = {
            color: name
            for color, name in as_dict(doc.get("labelNames")).items()
            if isinstance(name, str) and name
        }
        for member in as_list(doc.get("members")):
            if as_text(as_dict(member).get("id")):
                name = member.get("fullName") or member.get("username")
                self.members[member["id"]] = name if isinstance(name, str) else member["id"]
        for custom in as_list(doc.get("customFields")):
            if as_text(as_dict(custom).get("id")):
                self.custom_fields[custom["id"]] = custom

    def read_board(self, doc: dict) -> None:
        builder = self.builder
        with reading_item(self.file_name, "actions, labels or members"):
            self._index(doc)
        board_id = self._require_id(doc, "board")
        board_key = builder.add_goal(
            builder.key("board", board_id),
            title=_text(doc.get("name")) or "Trello board",
            source_item=f"board '{doc.get('name')}' ({self.file_name})",
            description=compose_description(_text(doc.get("desc"))),
            created_at=id_timestamp(board_id),
            updated_at=parse_timestamp(_text(doc.get("dateLastActivity"))),
            extras={
                "url": doc.get("url") or doc.get("shortUrl"),
                "shortLink": doc.get("shortLink"),
                "closed": doc.get("closed") or None,
                "labelNames": self.label_names,
                "background": as_dict(doc.get("prefs")).get("background"),
            },
        )
        checklists: dict[str, list[dict]] = {}
        for position, checklist in enumerate(as_list(doc.get("checklists"))):
            self._require_id(checklist, f"checklists[{position}]")
            checklists.setdefault(_text(checklist.get("idCard")), []).append(checklist)
        list_keys: dict[str, str | None] = {}
        lists = [(i, item) for i, item in enumerate(doc["lists"])]
        for position, item in sorted(lists, key=lambda pair: _pos(pair[1])):
            list_id = self._require_id(item, f"lists[{position}]")
            title = _text(item.get("name")) or "Untitled list"
            if item.get("closed") and not self.include_archived:
                list_keys[list_id] = None
                builder.skip(
                    f"list '{title}'",
                    "archived in Trello (closed)",
                    external_key=builder.key("list", list_id),
                )
                continue
            list_keys[list_id] = builder.add_goal(
                builder.key("list", list_id),
                title=title,
                source_item=f"list '{title}' (lists[{position}])",
                parent=board_key,
                created_at=id_timestamp(list_id),
                extras={
                    "pos": item.get("pos"),
                    "closed": item.get("closed") or None,
                    "softLimit": item.get("softLimit"),
                },
            )
        cards = [(i, card) for i, card in enumerate(doc["cards"])]
        list_rank = {list_id: rank for rank, list_id in enumerate(list_keys)}
        cards.sort(
            key=lambda pair: (
                list_rank.get(_text(as_dict(pair[1]).get("idList")), -1),
                _pos(pair[1]),
            )
        )
        for position, card in cards:
            with builder.row_or_skip(f"card ({self.file_name}, cards[{position}])"):
                self._board_card(position, card, list_keys, board_key, checklists)

    def _board_card(
        self,
        position: int,
        card: Any,
        list_keys: dict[str, str | None],
        board_key: str,
        checklists: dict[str, list],
    ) -> None:
        builder = self.builder
        card_id = self._require_id(card, f"cards[{position}]")
        list_id = _text(card.get("idList"))
        title = _text(card.get("name"))
        if list_id in list_keys and list_keys[list_id] is None:
            builder.skip(
                f"card '{title}' (cards[{position}])",
                "in an archived list",
                external_key=builder.key("card", card_id),
            )
            return
        if card.get("closed") and not self.include_archived:
            builder.skip(
                f"card '{title}' (cards[{position}])",
                "archived in Trello (closed)",
                external_key=builder.key("card", card_id),
            )
            return
        parent = list_keys.get(list_id)
        if parent is None:
            builder.warn(
                f"{self.file_name}: card '{title}' names a list not in the "
                "export; imported under the board"
            )
            builder.adjust(
                builder.key("card", card_id),
                f"its list {list_id or '(none)'} is not in the export: imported under the board",
            )
            parent = board_key
        with reading_item(self.file_name, f"cards[{position}]"):
            self._card(card, card_id, f"cards[{position}]", parent, checklists.get(card_id, []))

    def read_single_card(self, card: dict) -> None:
        with reading_item(self.file_name, "card actions"):
            self._index(card)
        card_id = self._require_id(card, "card")
        with reading_item(self.file_name, "card"):
            self._card(card, card_id, "card", None, as_list(card.get("checklists")))

    def _card(
        self, card: dict, card_id: str, where: str, parent: str | None, checklists: list[dict]
    ) -> None:
        builder = self.builder
        title = _text(card.get("name"))
        due_at = parse_timestamp(_text(card.get("due")))
        if card.get("due") and due_at is None:
            raise ImportFormatError(
                self.file_name, where, "due", f"'{card.get('due')}' is not a date"
            )
        completed_at = parse_timestamp(_text(card.get("dateCompleted")))
        # `dueComplete` says whether it is done (a reopened card keeps its dateCompleted)
        due_complete = card.get("dueComplete")
        is_completed = due_complete if isinstance(due_complete, bool) else completed_at is not None
        if is_completed and completed_at is None:
            completed_at = self.completed.get(card_id)
        labels = self._labels(card)
        comments = list(reversed(self.comments.get(card_id, [])))
        created_at = self.created.get(card_id) or id_timestamp(card_id)
        updated_at = parse_timestamp(_text(card.get("dateLastActivity")))
        recurrence = _text(card.get("recurrenceRule")) or None
        key = builder.add_goal(
            builder.key("card", card_id),
            title=title,
            source_item=f"card '{title}' ({where})",
            parent=parent,
            description=compose_description(
                _text(card.get("desc")),
                labels=labels,
                recurrence=recurrence,
                comments=[
                    f"{c['author'] or 'someone'} ({c['date'][:10]}): {c['text']}" for c in comments
                ],
            ),
            target_date=due_at.astimezone(self.tz).date() if due_at else None,
            is_completed=is_completed,
            completed_at=completed_at,
            created_at=created_at,
            updated_at=updated_at,
            extras={
                "labels": labels,
                "due": iso_utc(due_at),
                "start": card.get("start"),
                "pos": card.get("pos"),
                "closed": card.get("closed") or None,
                "dueComplete": card.get("dueComplete") or None,
                "recurrence": recurrence,
                "url": card.get("shortUrl") or card.get("url"),
                "members": [
                    self.members.get(m, m) for m in as_list(card.get("idMembers")) if as_text(m)
                ],
                "attachments": [
                    {"name": a.get("name"), "url": a.get("url")}
                    for a in as_list(card.get("attachments"))
                    if isinstance(a, dict)
                ],
                "customFields": self._custom_fields(card),
                "comments": comments,
            },
        )
        recorded_fallback = updated_at or created_at
        for checklist in sorted(checklists, key=_pos):
            checklist = as_dict(checklist)
            checklist_name = _text(checklist.get("name"))
            for item in sorted(as_list(checklist.get("checkItems")), key=_pos):
                if not as_text(as_dict(item).get("id")):
                    continue
                done = item.get("state") == "complete"
                builder.add_progress(
                    builder.key("checkitem", item["id"]),
                    goal=key,
                    value=1 if done else 0,
                    max_value=1,
                    notes=_text(item.get("name")),
                    source_kind="check-list items",
                    recorded_at=self.checked.get(item["id"]) or recorded_fallback,
                    extras={
                        "checklist": checklist_name,
                        "checklistId": checklist.get("id"),
                        "state": item.get("state"),
                        "pos": item.get("pos"),
                        "due": item.get("due"),
                    },
                )

    def _labels(self, card: dict) -> list[str]:
        labels = card.get("labels")
        if not isinstance(labels, list) or not labels:
            labels = [
                self.labels[i] for i in as_list(card.get("idLabels")) if as_text(i) in self.labels
            ]
        names = []
        for label in labels:
            if isinstance(label, dict):
                color = _text(label.get("color"))
                names.append(_text(label.get("name")) or self.label_names.get(color) or color)
        return [n for n in names if n]

    def _custom_fields(self, card: dict) -> list[dict]:
        values = []
        for item in as_list(card.get("customFieldItems")):
            if not isinstance(item, dict):
                continue
            field = self.custom_fields.get(as_text(item.get("idCustomField")), {})
            value = item.get("value")
            if item.get("idValue"):
                options = {
                    as_text(o.get("id")): as_dict(o.get("value")).get("text")
                    for o in as_list(field.get("options"))
                    if isinstance(o, dict)
                }
                value = options.get(as_text(item["idValue"]), item["idValue"])
            elif isinstance(value, dict) and len(value) == 1:
                value = next(iter(value.values()))
            values.append({"name": field.get("name") or item.get("idCustomField"), "value": value})
        return values


def _pos(item: Any) -> float:
    value = item.get("pos") if isinstance(item, dict) else None
    return float(value) if isinstance(value, int | float) else float("inf")
