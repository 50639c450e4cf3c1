"""Habitica user-data JSON: habits, dailies, to-dos, history, check-lists, no secrets kept."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from parser_checks import NOW, assert_contract, by_title, fixture_bytes, rows

from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.habitica import parse_habitica

UTC = dt.UTC
DATA = fixture_bytes("habitica", "habitica-user-data.json")


@pytest.fixture(scope="module")
def habitica():
    assert detect_source(DATA, "habitica-user-data.json") == "habitica"
    return parse_habitica(DATA, file_name="habitica-user-data.json", now=NOW)


def test_tasks_become_goals_with_difficulty_and_tags(habitica):
    assert_contract(habitica, "habitica")
    goals = by_title(habitica)
    water = goals["Drink water 💧"]
    assert water["id"] == "habitica:habit:h1000000-0000-4000-8000-000000000001"
    assert water["parentGoalId"] is None and water["difficulty"] == 1  # trivial
    assert goals["Stretch"]["difficulty"] == 3  # medium
    assert goals["Journal"]["difficulty"] == 5  # hard
    assert goals["Call mom"]["difficulty"] == 2  # easy
    assert water["description"] == "8 glasses\n\nTags: Santé"
    taxes = goals["Файлы налоговой"]
    # An unknown tag id is kept as it is rather than dropped.
    assert habitica.extras[taxes["id"]]["labels"] == [
        "work",
        "bbbbbbbb-dead-4000-8000-000000000009",
    ]


def test_dailies_keep_their_schedule_as_text(habitica):
    goals = by_title(habitica)
    assert habitica.extras[goals["Stretch"]["id"]]["recurrence"] == "every week on Mon, Wed, Fri"
    assert "Repeats: every week on Mon, Wed, Fri" in goals["Stretch"]["description"]
    # An all-false `repeat` of a daily-frequency task is ignored.
    assert habitica.extras[goals["Journal"]["id"]]["recurrence"] == "every 2 days"
    assert habitica.extras[goals["Pay rent"]["id"]]["recurrence"] == "every month on day 1"
    assert habitica.extras[goals["Stretch"]["id"]]["streak"] == 4


def test_todos_completion_and_due_day_in_the_users_zone(habitica):
    goals = by_title(habitica)
    mom = goals["Call mom"]
    assert mom["isCompleted"] and mom["completedAt"] == dt.datetime(
        2024, 2, 27, 18, 30, 0, 500000, tzinfo=UTC
    )
    taxes = goals["Файлы налоговой"]
    # timezoneOffset 300 = UTC-5: 05:00Z is local midnight of 5 March.
    assert taxes["targetDate"] == dt.date(2024, 3, 5) and not taxes["isCompleted"]
    assert goals["Stretch"]["isCompleted"] is False  # dailies are ongoing


def test_history_and_checklists_become_progress(habitica):
    goals = by_title(habitica)
    progress = rows(habitica, "Progress")
    water = [p for p in progress if p["goalId"] == goals["Drink water 💧"]["id"]]
    assert [(p["value"], p["notes"]) for p in water] == [
        (3, "+3 / -1"),
        (2, "+2 / -0"),
        (1, "scored"),
    ]
    assert water[0]["recordedAt"] == dt.datetime(2024, 2, 28, 8, tzinfo=UTC)
    assert water[0]["id"] == "habitica:history:h1000000-0000-4000-8000-000000000001:1709107200000"
    stretch = [p for p in progress if p["goalId"] == goals["Stretch"]["id"]]
    # Checklist item, then history: done, missed; a not-due day is not a miss.
    assert [(p["value"], p["maxValue"]) for p in stretch] == [(1, 1), (1, 1), (0, 1)]
    unknown = [e for e in habitica.skipped() if "does not say" in e.reason]
    assert unknown and unknown[0].count == 1
    taxes = [p for p in progress if p["goalId"] == goals["Файлы налоговой"]["id"]]
    assert [(p["notes"], p["value"]) for p in taxes] == [("Receipts", 1), ("Form 3", 0)]


def test_achievements_and_rewards(habitica):
    achievements = {a["title"]: a for a in rows(habitica, "Achievement")}
    assert achievements["Streak"]["points"] == 3
    assert achievements["Party up"]["points"] == 1
    assert achievements["Ultimate gear sets"]["points"] == 1
    assert achievements["Challenges"]["points"] == 1
    assert "Beast master" not in achievements and "Quests" not in achievements
    assert achievements["Streak"]["earnedAt"] == dt.datetime(2024, 2, 29, 9, tzinfo=UTC)
    reward = [e for e in habitica.skipped() if "Ice cream" in e.source_item]
    assert reward and reward[0].reason == "rewards have no place in the app"


def test_no_secret_from_the_export_reaches_the_result(habitica):
    everything = json.dumps(
        {
            "tables": {n: t.to_pylist() for n, t in habitica.tables.items()},
            "extras": habitica.extras,
            "report": [dataclasses.asdict(e) for e in habitica.report],
            "warnings": habitica.warnings,
        },
        default=str,
    )
    for secret in ("FAKE-API-TOKEN", "player@example.invalid", "FAKE-PUSH-TOKEN", "fakeplayer"):
        assert secret not in everything


def test_empty_account():
    data = json.dumps({"tasks": {"habits": [], "dailys": [], "todos": [], "rewards": []}}).encode()
    parsed = parse_habitica(data, now=NOW)
    assert_contract(parsed, "habitica")
    assert all(t.num_rows == 0 for t in parsed.tables.values())


def test_a_task_without_an_id_is_skipped_alone_and_counts_as_bad():
    tasks = [{"text": "no id", "type": "todo"}, {"_id": "ok", "text": "Fine", "type": "todo"}]
    data = json.dumps({"tasks": {"habits": [], "dailys": [], "todos": tasks}}).encode()
    parsed = parse_habitica(data, file_name="u.json", now=NOW)
    assert_contract(parsed, "habitica")
    assert list(by_title(parsed)) == ["Fine"]
    [skipped] = parsed.skipped()
    assert skipped.bad and skipped.source_item == "todo (u.json, tasks.todos[0])"
    assert skipped.reason == "missing or not text"
    assert parsed.unmappable_rows() == 1


def test_odd_difficulty_and_history_date_are_reported_on_their_task():
    task = {
        "_id": "x",
        "text": "odd",
        "priority": 7,
        "history": [{"date": "yesterday", "completed": True}, {"date": 1706774400000}],
    }
    data = json.dumps({"tasks": {"habits": [], "dailys": [task], "todos": []}}).encode()
    parsed = parse_habitica(data, file_name="u.json", now=NOW)
    assert_contract(parsed, "habitica")
    goal = by_title(parsed)["odd"]
    assert goal["difficulty"] is None
    [adjusted] = parsed.adjusted()
    assert "'7' is not a Habitica difficulty" in adjusted.adjustments[0]
    [bad] = [e for e in parsed.skipped() if e.bad]
    assert "tasks.dailys[0].history[0]" in bad.source_item
    assert bad.reason == "its date 'yesterday' is not a date"
