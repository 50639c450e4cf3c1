"""The two engines of the data-quality rules find the same rows: pyarrow
(`assets.quality.arrow_checks`, for ordinary batches) and great-expectations itself (large
batches). Both run on the same hostile batch, and on edge values where a naive pyarrow
version would differ (NaN, a newline before the end of an e-mail, Unicode spaces, JSON that
only Python accepts); the batch size chooses the engine; the pyarrow path never imports
great-expectations (pandas it may: pyarrow imports it to convert Python values)."""

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from assets.quality import suites
from assets.quality.rules import EMAIL_PATTERN, Rule
from assets.quality.suites import ARROW, GREAT_EXPECTATIONS, run_quality_suites
from resources.schema import APP_ARROW_SCHEMAS
from synthetic.population import generate_population

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def hostile_batch() -> dict[str, pa.Table]:
    """30 synthetic users, then rows broken the ways real files and attackers break them."""
    rows = {
        name: t.to_pylist() for name, t in generate_population(30, seed=11, heavy_every=0).items()
    }
    users, goals, progress = rows["User"], rows["Goal"], rows["Progress"]
    users[0]["email"] = "trailing@newline.org\n"  # Python's `$` matches before it
    users[1]["email"] = "nbsp\u00a0inside@example.org"  # a Unicode space: not an address
    users[2]["email"] = "two@@example.org"
    users[3]["email"] = ""
    users[4]["timezone"] = "Mars/Olympus_Mons"
    users[5]["timezone"] = None
    users[6]["firstName"] = "é" * 200 + "\u0301"  # 201 code points
    users[7]["updatedAt"] = users[7]["createdAt"] - dt.timedelta(seconds=1)
    users[8]["createdAt"] = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
    goals[0]["priority"] = 0
    goals[1]["priority"] = None
    goals[2]["difficulty"] = 6
    goals[3]["id"] = goals[4]["id"]  # a duplicated id
    goals[5]["title"] = ""
    goals[6]["completedAt"], goals[6]["isCompleted"] = None, True
    goals[7]["parentGoalId"] = "no-such-goal"
    goals[8]["moduleId"] = None
    goals[9]["updatedAt"] = NOW + dt.timedelta(days=1, seconds=1)
    goals[10]["updatedAt"] = NOW + dt.timedelta(days=1)  # on the limit: fine
    progress[0]["value"] = Decimal("-0.01")
    progress[1]["value"], progress[1]["maxValue"] = Decimal("5.00"), Decimal("4.99")
    progress[2]["goalId"] = goals[-1]["id"]  # probably another user's goal
    progress[3]["notes"] = "x" * 5001
    progress[4]["userId"] = "nobody"
    for setting, value in zip(
        rows["UserSetting"],
        ["NaN", "{'single': 'quotes'}", "", "[1, 2", '"\\ud800"', None],
        strict=False,
    ):
        setting["value"] = value
    for module, kind in zip(
        rows["Module"], ["Fitness", "work projects", "ok_kind\n", "1st"], strict=False
    ):
        module["kind"] = kind
    for task, status in zip(rows["WorkTask"], ["DONE", "done ", None], strict=False):
        task["status"] = status
    readings = rows["BibleReading"]
    if readings:
        readings[0]["chapter"], readings[-1]["verseEnd"] = 151, 0
    return {n: pa.Table.from_pylist(r, schema=APP_ARROW_SCHEMAS[n]) for n, r in rows.items()}


def test_both_engines_report_the_same_rows_users_and_ids_on_a_hostile_batch():
    tables = hostile_batch()
    by_arrow = run_quality_suites(tables, now=NOW, engine=ARROW)
    by_gx = run_quality_suites(tables, now=NOW, engine=GREAT_EXPECTATIONS)
    assert by_arrow.engine.startswith("pyarrow") and by_gx.engine.startswith("great_expectations")
    assert by_arrow.results == by_gx.results

    failing = {r.key for r in by_arrow.failures}
    # not a comparison of two empty reports: each kind of expectation found something
    for key in (
        "User.email_well_formed",  # regex
        "User.timezone_known",  # in set
        "User.text_within_limits",
        "User.recorded_not_in_future",  # between, timestamps
        "Goal.priority_in_range",  # between, integers with a null
        "Goal.difficulty_in_range",
        "Goal.id_unique",
        "Goal.completedAt_iff_isCompleted",
        "Goal.parentGoalId_resolves",
        "Progress.value_not_negative",  # between, decimals as floats
        "Progress.userId_resolves",
        "UserSetting.value_is_json",
        "Module.kind_well_formed",
        "WorkTask.status_known",
    ):
        assert key in failing, key
    emails = next(r for r in by_arrow.failures if r.key == "User.email_well_formed")
    users = tables["User"]["id"].to_pylist()
    # the newline before the end passes (as in GX); the others do not
    assert set(emails.example_ids) == {users[1], users[2], users[3]}
    json_rule = next(r for r in by_arrow.failures if r.key == "UserSetting.value_is_json")
    assert json_rule.unexpected_count == 3  # "NaN" and a lone surrogate are JSON to Python


def derived_rule(
    name: str, expectation: str, values: list, arrow_type=None, pad=None, **kwargs
) -> Rule:
    """A rule on the Goal table judging `values` (one per goal row, padded with `pad`)."""

    def derive(tables):
        n = tables["Goal"].num_rows
        return pa.array(values + [pad] * (n - len(values)), type=arrow_type)

    return Rule("Goal", name, name, expectation, name, kwargs, derive)


EDGE_CASES = [
    # (rule, the positions that must be unexpected)
    (
        derived_rule(
            "floats",
            "ExpectColumnValuesToBeBetween",
            [0.0, -0.0, float("nan"), -1e-300, float("inf"), 5.0, None],
            pa.float64(),
            min_value=0,
            max_value=5,
        ),
        [3, 4],  # NaN is null to pandas, so never unexpected
    ),
    (
        derived_rule(
            "ints",
            "ExpectColumnValuesToBeBetween",
            [1, 5, 6, 0, None, -(2**40)],
            pa.int64(),
            min_value=1,
            max_value=5,
        ),
        [2, 3, 5],
    ),
    (
        derived_rule(
            "codes", "ExpectColumnValuesToBeUnique", [1, 2, 2, None, None, 3, 1], pa.int64()
        ),
        [0, 1, 2, 6],  # two nulls are not duplicates
    ),
    (
        derived_rule(
            "nulls",
            "ExpectColumnValuesToNotBeNull",
            [1.5, float("nan"), None, 0.0],
            pa.float64(),
            pad=0.0,
        ),
        [1, 2],
    ),
    (
        derived_rule(
            "emails",
            "ExpectColumnValuesToMatchRegex",
            ["a@b.co\n", "a@b.co\n\n", "a\u2003b@c.de", "a@b.c", "é@ü.de", "a@b.co ", "a@b.co"],
            pa.string(),
            regex=EMAIL_PATTERN,
        ),
        [1, 2, 5],  # a newline before the end matches `$`; a one-letter domain is fine
    ),
    (
        derived_rule(
            "json",
            "ExpectColumnValuesToBeJsonParseable",
            ["Infinity", "-NaN", "1e999", "{}", " [] ", "\ufeff{}", "null"],
            pa.string(),
        ),
        [1, 5],
    ),
    (
        derived_rule(
            "set",
            "ExpectColumnValuesToBeInSet",
            ["a", "A", "a ", None, "b"],
            pa.string(),
            value_set=["a", "b"],
        ),
        [1, 2],
    ),
]


@pytest.mark.parametrize("rule,expected", EDGE_CASES, ids=[r.name for r, _ in EDGE_CASES])
def test_edge_values_are_judged_by_both_engines_exactly_as_pandas_judges_them(rule, expected):
    tables = hostile_batch()
    goal_ids = tables["Goal"]["id"].to_pylist()
    reports = {
        engine: run_quality_suites(tables, now=NOW, rules=[rule], engine=engine)
        for engine in (ARROW, GREAT_EXPECTATIONS)
    }
    arrow_result, gx_result = (reports[e].results[0] for e in (ARROW, GREAT_EXPECTATIONS))
    assert arrow_result == gx_result
    assert sorted(arrow_result.example_ids) == sorted(goal_ids[i] for i in expected[:5])
    assert arrow_result.unexpected_count == len(expected)


def test_the_batch_size_chooses_the_engine(monkeypatch):
    tables = {n: t.slice(0, 50) for n, t in hostile_batch().items()}
    rows = sum(t.num_rows for t in tables.values())
    monkeypatch.setenv("GOALPORT_GX_MIN_ROWS", str(rows + 1))
    assert run_quality_suites(tables, now=NOW).engine.startswith("pyarrow")
    monkeypatch.setenv("GOALPORT_GX_MIN_ROWS", str(rows))
    assert run_quality_suites(tables, now=NOW).engine.startswith("great_expectations")
    monkeypatch.setenv("GOALPORT_QUALITY_ENGINE", "arrow")
    assert run_quality_suites(tables, now=NOW).engine.startswith("pyarrow")
    monkeypatch.setenv("GOALPORT_QUALITY_ENGINE", "pandas")
    with pytest.raises(ValueError, match="GOALPORT_QUALITY_ENGINE='pandas'"):
        run_quality_suites(tables, now=NOW)


def test_a_small_batch_is_checked_without_importing_great_expectations(tmp_path):
    for name, table in generate_population(3, seed=2, heavy_every=0).items():
        with pa.OSFile(str(tmp_path / f"{name}.arrow"), "wb") as sink:
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
    script = (
        "import json, sys, pathlib, pyarrow as pa\n"
        "from assets.quality.suites import run_quality_suites\n"
        "tables = {p.stem: pa.ipc.open_file(str(p)).read_all()\n"
        f"          for p in pathlib.Path({str(tmp_path)!r}).glob('*.arrow')}}\n"
        "report = run_quality_suites(tables)\n"
        "assert report.passed, report.failures\n"
        "print(json.dumps([report.engine, 'great_expectations' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    engine, imported = json.loads(done.stdout)
    assert engine.startswith("pyarrow") and imported is False


def test_an_unknown_expectation_is_refused_by_name():
    rule = derived_rule("odd", "ExpectColumnValuesToBeIncreasing", [1, 2], pa.int64())
    with pytest.raises(ValueError, match="ExpectColumnValuesToBeIncreasing has no pyarrow"):
        run_quality_suites(hostile_batch(), now=NOW, rules=[rule], engine=ARROW)


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown quality engine 'spark'"):
        suites.find_unexpected({"Goal": (pa.table({"x": np.arange(2)}), [])}, "spark")
