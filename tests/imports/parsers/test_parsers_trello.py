"""Trello board and card JSON: board -> list -> card, checklists as progress, archives."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from parser_checks import (
    NOW,
    assert_contract,
    bad_rows,
    by_title,
    fixture_bytes,
    parse_detected,
    rows,
)

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.trello import id_timestamp, parse_trello

UTC = dt.UTC


@pytest.fixture(scope="module")
def board():
    return parse_trello(fixture_bytes("trello", "board.json"), file_name="board.json", now=NOW)


def test_board_lists_and_cards_are_three_levels(board):
    assert_contract(board, "trello")
    goals = by_title(board)
    root = goals["Maison 🏠"]
    assert root["id"] == "trello:board:5e8f1a20aaaaaaaaaaaaaaaa" and root["parentGoalId"] is None
    assert root["description"] == "Everything about the house"
    assert goals["To do"]["parentGoalId"] == root["id"]
    assert goals["Paint the kitchen"]["parentGoalId"] == goals["To do"]["id"]
    assert goals["تنظيف النوافذ"]["parentGoalId"] == goals["Done"]["id"]
    # Lists in `pos` order, then cards by list and `pos`.
    titles = [g["title"] for g in rows(board, "Goal")]
    assert titles.index("To do") < titles.index("Done")
    assert titles.index("Buy brushes") < titles.index("Paint the kitchen")


def test_completion_due_dates_and_creation_times(board):
    goals = by_title(board)
    windows = goals["تنظيف النوافذ"]
    assert windows["isCompleted"] is True
    assert windows["completedAt"] == dt.datetime(2024, 1, 9, 16, 45, 12, 345000, tzinfo=UTC)
    gate = goals["Fix the gate"]  # dueComplete without dateCompleted: the action's time
    assert gate["isCompleted"] and gate["completedAt"] == dt.datetime(
        2024, 1, 21, 6, 59, tzinfo=UTC
    )
    kitchen = goals["Paint the kitchen"]
    assert kitchen["isCompleted"] is False and kitchen["completedAt"] is None
    assert kitchen["targetDate"] == dt.date(2024, 3, 5)
    assert kitchen["createdAt"] == dt.datetime(2024, 2, 1, 9, 0, tzinfo=UTC)  # createCard
    assert goals["Buy brushes"]["createdAt"] == id_timestamp("5e8f1a22cccccccccccccc00")
    assert id_timestamp("5e8f1a20aaaaaaaaaaaaaaaa") == dt.datetime(
        2020, 4, 9, 12, 50, 40, tzinfo=UTC
    )
    assert kitchen["updatedAt"] == dt.datetime(2024, 2, 18, 9, 0, tzinfo=UTC)


def test_due_date_day_follows_the_users_time_zone():
    parsed = parse_trello(
        fixture_bytes("trello", "board.json"),
        file_name="board.json",
        now=NOW,
        timezone="Europe/Paris",
    )
    assert by_title(parsed)["Paint the kitchen"]["targetDate"] == dt.date(2024, 3, 6)
    assert parsed.extras[by_title(parsed)["Paint the kitchen"]["id"]]["due"] == (
        "2024-03-05T23:30:00.000Z"
    )


def test_checklist_items_become_progress_with_their_check_time(board):
    kitchen = by_title(board)["Paint the kitchen"]
    progress = {p["notes"]: p for p in rows(board, "Progress")}
    assert list(progress) == ["Paint (white)", "Tape", "Rollers"]
    paint = progress["Paint (white)"]
    assert paint["id"] == "trello:checkitem:ci1" and paint["goalId"] == kitchen["id"]
    assert (paint["value"], paint["maxValue"]) == (1, 1)
    assert paint["recordedAt"] == dt.datetime(2024, 2, 15, 18, 20, tzinfo=UTC)
    assert progress["Tape"]["value"] == 0
    assert progress["Tape"]["recordedAt"] == kitchen["updatedAt"]
    assert board.extras["trello:checkitem:ci2"]["checklist"] == "Supplies"
    entry = next(e for e in board.report if e.target_table == "Progress")
    assert entry.count == 3 and entry.external_key == kitchen["id"]


def test_labels_members_comments_and_custom_fields_are_kept(board):
    kitchen = by_title(board)["Paint the kitchen"]
    extras = board.extras[kitchen["id"]]
    assert extras["labels"] == ["garden", "red"]  # a colour-only label keeps its colour
    assert extras["members"] == ["Jordan Lee"]
    assert extras["attachments"][0]["name"] == "colours.pdf"
    assert {"name": "Room", "value": "Kitchen"} in extras["customFields"]
    assert {"name": "Budget", "value": "120"} in extras["customFields"]
    assert extras["comments"][0]["text"] == "Use the matte one"
    assert "Tags: garden, red" in kitchen["description"]
    assert "Jordan Lee (2024-02-10): Use the matte one" in kitchen["description"]


def test_archived_lists_and_cards_are_reported_not_imported(board):
    titles = set(by_title(board))
    assert not titles & {"Archived card", "Pool", "Old ideas"}
    skipped = {e.source_item.split("'")[1]: e.reason for e in board.skipped()}
    assert skipped["Archived card"] == "archived in Trello (closed)"
    assert skipped["Pool"] == "in an archived list"
    assert skipped["Old ideas"] == "archived in Trello (closed)"
    everything = parse_trello(fixture_bytes("trello", "board.json"), now=NOW, include_archived=True)
    assert {"Archived card", "Pool", "Old ideas"} <= set(by_title(everything))
    assert_contract(everything, "trello")


def test_single_card_export():
    board = json.loads(fixture_bytes("trello", "board.json"))
    card = dict(board["cards"][0], checklists=board["checklists"], actions=board["actions"])
    data = json.dumps(card).encode()
    parsed = parse_detected(data, "card.json", "trello")
    assert [g["title"] for g in rows(parsed, "Goal")] == ["Paint the kitchen"]
    assert parsed.tables["Progress"].num_rows == 3


def test_empty_board():
    data = json.dumps(
        {"id": "5e8f1a20aaaaaaaaaaaaaaab", "name": "Empty", "lists": [], "cards": []}
    ).encode()
    parsed = parse_trello(data, now=NOW)
    assert_contract(parsed, "trello")
    assert [g["title"] for g in rows(parsed, "Goal")] == ["Empty"]
    assert parsed.tables["Progress"].num_rows == 0


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"id": "b", "name": "B", "lists": ["nope"], "cards": []},
            "board.json, lists[0]: is not an object",
        ),
        ({"name": "not trello"}, "board.json: not a Trello export"),
    ],
)
def test_malformed_boards_name_file_item_and_field(doc, message):
    with pytest.raises(ImportFormatError, match="^" + re.escape(message)):
        parse_trello(json.dumps(doc).encode(), file_name="board.json")


def test_cards_that_cannot_be_read_are_skipped_alone():
    cards = [
        {"name": "no id", "idList": "x"},
        {"id": "c", "idList": "x", "due": "soon"},
        {"id": "d", "name": "Fine", "idList": "x"},
    ]
    doc = {"id": "b", "name": "B", "lists": [], "cards": cards}
    parsed = parse_trello(json.dumps(doc).encode(), file_name="board.json", now=NOW)
    assert_contract(parsed, "trello")
    assert sorted(by_title(parsed)) == ["B", "Fine"]
    assert bad_rows(parsed) == [
        ("card (board.json, cards[0])", "field 'id': missing or not text"),
        ("card (board.json, cards[1])", "field 'due': 'soon' is not a date"),
    ]


def test_broken_json_names_line_and_column():
    with pytest.raises(ImportFormatError, match=r"board.json, line 2, column 12: invalid JSON"):
        parse_trello(b'{"lists": [],\n "cards": [,]}', file_name="board.json")
