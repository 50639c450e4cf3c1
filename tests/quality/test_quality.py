"""Data-quality gates: broken rows in a real PostgreSQL database make exactly their rule
fail, naming the right ids and users, and stop only those users' exports; the Dagster
asset checks show the same, WARN while some users can be exported and ERROR (blocking the
run) when none can. The suites run once per batch, in a run and without one."""

import datetime as dt
import json
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from assets.exports.batches import export_users
from assets.exports.defs import (
    EXPORT_RUN_RESOURCES,
    ExportConfig,
    export_files,
    export_job,
    extracted_batch,
)
from assets.quality import suites
from assets.quality.defs import extracted_batch_quality
from assets.quality.report import merge_reports
from assets.quality.rules import goal_tree_reaches_root, quality_rules
from assets.quality.suites import run_quality_suites
from resources.database import AppDatabase
from resources.schema import APP_ARROW_SCHEMAS
from resources.storage import ObjectStorage
from synthetic.load import load_population
from synthetic.population import generate_population

FAR_FUTURE = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def tables_from_rows(rows: dict[str, list[dict]]) -> dict[str, pa.Table]:
    return {
        name: pa.Table.from_pylist(r, schema=APP_ARROW_SCHEMAS[name]) for name, r in rows.items()
    }


def break_one_rule_per_user(n_users: int = 30, seed: int = 5):
    """A synthetic population where each of several users breaks exactly one rule in a way
    the database constraints allow. Returns the rows and {rule key: (user id, bad ids)}."""
    rows = {
        name: t.to_pylist()
        for name, t in generate_population(n_users, seed=seed, heavy_every=0).items()
    }
    users = [u["id"] for u in rows["User"]]
    of_user = lambda table, uid: [r for r in rows[table] if r["userId"] == uid]  # noqa: E731
    parents = {g["parentGoalId"] for g in rows["Goal"]}
    cases: dict[str, tuple[str, list[str]]] = {}
    spare = iter(users)

    def victim(needs) -> str:
        for uid in spare:
            if needs(uid):
                return uid
        raise AssertionError("the population is too small for every case")

    def goal_of(uid, where=lambda g: True):
        return next(g for g in of_user("Goal", uid) if where(g))

    uid = victim(lambda u: of_user("Goal", u))
    goal = goal_of(uid)
    goal["priority"] = 9
    cases["Goal.priority_in_range"] = (uid, [goal["id"]])

    uid = victim(lambda u: of_user("Goal", u))
    goal = goal_of(uid)
    goal["title"] = "x" * 201
    cases["Goal.text_within_limits"] = (uid, [goal["id"]])

    uid = victim(lambda u: of_user("Goal", u))
    goal = goal_of(uid)
    goal["updatedAt"] = goal["createdAt"] - dt.timedelta(days=1)
    cases["Goal.created_before_updated"] = (uid, [goal["id"]])

    uid = victim(lambda u: any(not g["isCompleted"] for g in of_user("Goal", u)))
    goal = goal_of(uid, lambda g: not g["isCompleted"])
    goal["completedAt"] = goal["createdAt"]
    cases["Goal.completedAt_iff_isCompleted"] = (uid, [goal["id"]])

    leaves = lambda u: [g for g in of_user("Goal", u) if g["id"] not in parents]  # noqa: E731
    uid = victim(lambda u: len(leaves(u)) >= 2)
    first, second = leaves(uid)[:2]
    first["parentGoalId"], second["parentGoalId"] = second["id"], first["id"]
    cases["Goal.goal_tree_acyclic"] = (uid, sorted([first["id"], second["id"]]))

    # References to rows of ANOTHER user (the last user, who is left alone otherwise).
    other = users[-1]
    other_goal = of_user("Goal", other)[0]
    uid = victim(lambda u: of_user("Goal", u))
    goal = goal_of(uid)
    goal["parentGoalId"] = other_goal["id"]
    cases["Goal.parentGoalId_resolves"] = (uid, [goal["id"]])

    uid = victim(lambda u: of_user("Goal", u))
    goal = goal_of(uid)
    goal["moduleId"] = of_user("Module", other)[0]["id"]
    cases["Goal.moduleId_resolves"] = (uid, [goal["id"]])

    uid = victim(lambda u: of_user("Progress", u))
    entry = of_user("Progress", uid)[0]
    entry["goalId"] = other_goal["id"]
    cases["Progress.goalId_resolves"] = (uid, [entry["id"]])

    uid = victim(lambda u: any(p["maxValue"] is not None for p in of_user("Progress", u)))
    entry = next(p for p in of_user("Progress", uid) if p["maxValue"] is not None)
    entry["value"] = entry["maxValue"] + Decimal("1.00")
    cases["Progress.value_within_maxValue"] = (uid, [entry["id"]])

    uid = victim(lambda u: of_user("Progress", u))
    entry = of_user("Progress", uid)[0]
    entry["recordedAt"] = FAR_FUTURE
    cases["Progress.recorded_not_in_future"] = (uid, [entry["id"]])

    uid = victim(lambda u: True)
    next(u for u in rows["User"] if u["id"] == uid)["email"] = "not-an-email"
    cases["User.email_well_formed"] = (uid, [uid])

    uid = victim(lambda u: of_user("WorkProject", u))
    project = of_user("WorkProject", uid)[0]
    project["budget"] = Decimal("-5.00")
    cases["WorkProject.budget_not_negative"] = (uid, [project["id"]])

    uid = victim(lambda u: any(t["status"] != "done" for t in of_user("WorkTask", u)))
    task = next(t for t in of_user("WorkTask", uid) if t["status"] != "done")
    task["completedAt"] = task["createdAt"]
    cases["WorkTask.completedAt_iff_done"] = (uid, [task["id"]])

    good = [u for u in users if u not in {c[0] for c in cases.values()}]
    assert other in good and len(good) >= 5
    return rows, cases, good


@pytest.fixture
def broken_database(pg_url):
    rows, cases, good = break_one_rule_per_user()
    engine = sa.create_engine(pg_url)
    load_population(engine, tables_from_rows(rows))
    engine.dispose()
    return pg_url, cases, good


def test_each_broken_rule_fails_alone_with_its_ids_and_the_other_users_are_exported(
    broken_database, tmp_path
):
    url, cases, good = broken_database
    database = AppDatabase(url=url)
    storage = ObjectStorage(url=str(tmp_path))
    everyone = database.all_user_ids()
    result = export_users(database, storage, everyone, ["json", "csv"])

    failing = {r.key: r for r in result.quality.failures}
    assert set(failing) == set(cases), "exactly the broken rules fail"
    for key, (user_id, bad_ids) in cases.items():
        rule = failing[key]
        assert rule.user_ids == {user_id}, key
        assert sorted(rule.example_ids) == bad_ids, key
        assert rule.unexpected_count == len(bad_ids), key

    broken_users = {user_id for user_id, _ in cases.values()}
    assert set(result.failed_users) == broken_users
    for key, (user_id, bad_ids) in cases.items():
        message = result.failed_users[user_id]
        assert key in message and bad_ids[0] in message, message
    assert set(result.by_user()) == set(good)
    assert all(f.completeness["passed"] for f in result.files)
    assert len(result.files) == 2 * len(good)
    written_users = {key.split("/")[1] for key in storage.list("exports")}
    assert written_users == set(good)


def test_goalport_check_prints_the_failing_rules_and_exits_nonzero(broken_database, monkeypatch):
    from pipelines.cli.main import main

    url, cases, _ = broken_database
    monkeypatch.setenv("GOALPORT_DATABASE_URL", url)
    user_id, bad_ids = cases["Progress.value_within_maxValue"]
    good_user = AppDatabase(url=url).all_user_ids()[-1]

    result = CliRunner().invoke(main, ["check", "--users", f"{user_id},{good_user}"])
    assert result.exit_code == 1, result.output
    assert "FAILED Progress.value_within_maxValue: value is not more than maxValue" in result.output
    assert bad_ids[0] in result.output
    assert "1 of 2 users cannot be exported" in result.output
    assert (
        f"  {user_id}: Progress.value_within_maxValue (1 row, e.g. {bad_ids[0]})" in result.output
    )

    result = CliRunner().invoke(main, ["check", "--users", good_user, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["passed"] and report["users"] == 1 and report["failures"] == []

    result = CliRunner().invoke(main, ["check", "--users", "nobody"])
    assert result.exit_code == 1 and "unknown user id: nobody" in result.output


def test_goalport_export_reports_failed_users_and_exits_nonzero(
    broken_database, monkeypatch, tmp_path
):
    from pipelines.cli.main import main

    url, cases, good = broken_database
    monkeypatch.setenv("GOALPORT_DATABASE_URL", url)
    user_id, bad_ids = cases["Goal.goal_tree_acyclic"]
    result = CliRunner().invoke(main, ["export", user_id, good[0], "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{good[0]}\tjson\t" in result.stdout
    assert f"{user_id}\tFAILED\tnot exported: the data failed quality checks" in result.stderr
    assert "Goal.goal_tree_acyclic" in result.stderr and bad_ids[0] in result.stderr
    assert "1 of 2 users not exported" in result.stderr


def run_export_job(url: str, storage_root, user_ids: list[str]):
    defs = dg.Definitions(
        assets=[extracted_batch, export_files],
        asset_checks=[extracted_batch_quality],
        jobs=[export_job],
        resources={
            "database": AppDatabase(url=url),
            "storage": ObjectStorage(url=str(storage_root)),
            **EXPORT_RUN_RESOURCES,
        },
    )
    with dg.instance_for_test() as instance:
        return defs.resolve_job_def(export_job.name).execute_in_process(
            run_config=dg.RunConfig(ops={"extracted_batch": ExportConfig(user_ids=user_ids)}),
            instance=instance,
            raise_on_error=False,
        )


@pytest.mark.slow
def test_asset_checks_warn_and_the_run_exports_everyone_else(broken_database, tmp_path):
    url, cases, good = broken_database
    goal_users = {cases[k][0] for k in cases if k.startswith("Goal.")}
    chosen = sorted(goal_users | {cases["Progress.recorded_not_in_future"][0]}) + good[:3]
    result = run_export_job(url, tmp_path, chosen)
    assert result.success

    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {f"{t}_quality" for t in APP_ARROW_SCHEMAS}
    goal = checks["Goal_quality"]
    assert not goal.passed and goal.severity == dg.AssetCheckSeverity.WARN
    assert goal.metadata["unexpected: priority_in_range"].value == 1
    assert goal.metadata["affected_users"].value == len(goal_users)
    assert goal.metadata["unexpected: goal_tree_acyclic"].value > 0
    assert "example_ids" not in goal.metadata  # row ids stay on the job rows
    assert "priority is between 1 and 5" in goal.metadata["failures"].value
    progress = checks["Progress_quality"]
    assert (
        not progress.passed and progress.metadata["unexpected: recorded_not_in_future"].value == 1
    )
    assert checks["User_quality"].passed and checks["WorkTask_quality"].passed
    # Dagster's records name no user: the checks give counts, the job rows the reasons
    recorded = json.dumps({name: str(e.metadata) for name, e in checks.items()})
    assert not [u for u in chosen if u in recorded]
    assert not [i for _, ids in cases.values() for i in ids if i in recorded]

    materialized = result.asset_materializations_for_node("export_files")[0].metadata
    assert materialized["files"].value == 3
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        jobs = conn.execute(
            sa.text('SELECT "userId", status, "errorMessage" FROM "DataExportJob"')
        ).all()
    engine.dispose()
    status = {user_id: (state, message) for user_id, state, message in jobs}
    assert {u for u, (state, _) in status.items() if state == "completed"} == set(good[:3])
    user_id, bad_ids = cases["Goal.priority_in_range"]
    state, message = status[user_id]
    assert state == "failed" and "Goal.priority_in_range" in message and bad_ids[0] in message


@pytest.mark.slow
def test_asset_checks_block_the_run_when_no_user_can_be_exported(broken_database, tmp_path):
    url, cases, _ = broken_database
    chosen = [cases["Goal.priority_in_range"][0], cases["User.email_well_formed"][0]]
    result = run_export_job(url, tmp_path, chosen)
    assert not result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    for name in ("Goal_quality", "User_quality"):
        assert not checks[name].passed and checks[name].severity == dg.AssetCheckSeverity.ERROR
        assert checks[name].metadata["batch_blocked"].value is True
    assert checks["Progress_quality"].passed
    assert result.asset_materializations_for_node("export_files") == []
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        jobs = dict(
            conn.execute(sa.text('SELECT "userId", "errorMessage" FROM "DataExportJob"')).all()
        )
    engine.dispose()
    assert "User.email_well_formed" in jobs[chosen[1]]
    assert cases["Goal.priority_in_range"][1][0] in jobs[chosen[0]]


@pytest.fixture
def validations(monkeypatch) -> list[set[str]]:
    """The tables of every validation (by either engine) made while the test runs."""
    made: list[set[str]] = []
    validate = suites.find_unexpected

    def counted(columns, engine):
        made.append(set(columns))
        return validate(columns, engine)

    monkeypatch.setattr(suites, "find_unexpected", counted)
    return made


@pytest.mark.slow
def test_an_export_run_validates_its_batch_once_and_every_step_uses_that_report(
    broken_database, tmp_path, validations
):
    url, cases, good = broken_database
    user_id, bad_ids = cases["Goal.priority_in_range"]
    result = run_export_job(url, tmp_path, [user_id, *good[:2]])
    assert result.success
    assert len(validations) == 1, "the check and the render step reuse extracted_batch's report"

    extracted = result.asset_materializations_for_node("extracted_batch")[0].metadata
    assert extracted["users_failing_quality"].value == 1
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["Goal_quality"].metadata["unexpected: priority_in_range"].value == 1
    assert result.output_for_node("extracted_batch").quality.affected_user_ids == {user_id}
    assert result.asset_materializations_for_node("export_files")[0].metadata["files"].value == 2


def test_an_export_without_dagster_validates_its_batch_once(broken_database, tmp_path, validations):
    url, cases, good = broken_database
    user_id, _ = cases["User.email_well_formed"]
    database = AppDatabase(url=url)
    result = export_users(database, ObjectStorage(url=str(tmp_path)), [user_id, good[0]], ["json"])
    assert len(validations) == 1
    assert set(result.failed_users) == {user_id} and set(result.by_user()) == {good[0]}
    assert result.timings["quality"] == result.quality.seconds > 0


# ---------------------------------------------------------------- pure: rules GX is given


def goal_rules():
    return [r for r in quality_rules() if r.table in ("Goal", "User")]


def small_population():
    return {name: t for name, t in generate_population(4, seed=3, heavy_every=0).items()}


def test_duplicate_and_missing_ids_and_unknown_owners_are_reported():
    tables = small_population()
    goals = tables["Goal"]
    duplicate = goals.slice(0, 1)
    nameless = goals.slice(1, 1).set_column(
        0, pa.field("id", pa.string()), pa.array([None], pa.string())
    )
    orphan_rows = goals.slice(2, 1).to_pylist()
    orphan_rows[0] |= {
        "id": "orphan-goal",
        "userId": "no-such-user",
        "parentGoalId": None,
        "moduleId": None,
    }
    orphan = pa.Table.from_pylist(orphan_rows, schema=goals.schema)
    # What a careless import might stage: a table whose ids may be missing.
    loose = goals.schema.set(0, pa.field("id", pa.string(), nullable=True))
    parts = [goals, duplicate, nameless, orphan]
    tables["Goal"] = pa.concat_tables([part.cast(loose) for part in parts])
    report = run_quality_suites(tables, rules=goal_rules())

    failing = {r.key: r for r in report.failures}
    assert set(failing) == {"Goal.id_unique", "Goal.id_present", "Goal.userId_resolves"}
    assert failing["Goal.id_unique"].example_ids == (goals["id"][0].as_py(),) * 2
    assert failing["Goal.id_present"].example_ids == ("(no id)",)
    assert failing["Goal.userId_resolves"].user_ids == {"no-such-user"}


def test_goal_tree_cycles_are_found_at_any_depth_with_what_hangs_below():
    rows = [
        {"id": "root", "parentGoalId": None},
        {"id": "child", "parentGoalId": "root"},
        {"id": "grandchild", "parentGoalId": "child"},
        {"id": "a", "parentGoalId": "c"},
        {"id": "b", "parentGoalId": "a"},
        {"id": "c", "parentGoalId": "b"},
        {"id": "below-cycle", "parentGoalId": "b"},
        {"id": "self", "parentGoalId": "self"},
        {"id": "dangling", "parentGoalId": "missing"},
    ]
    goals = pa.table(
        {
            "id": [r["id"] for r in rows],
            "userId": ["u"] * len(rows),
            "parentGoalId": [r["parentGoalId"] for r in rows],
        }
    )
    reaches_root = goal_tree_reaches_root({"Goal": goals}).tolist()
    assert dict(zip(goals["id"].to_pylist(), reaches_root, strict=True)) == {
        "root": True,
        "child": True,
        "grandchild": True,
        "a": False,
        "b": False,
        "c": False,
        "below-cycle": False,
        "self": False,
        "dangling": True,
    }


def test_filtered_extracts_do_not_count_references_the_filter_cut():
    tables = small_population()
    goals = tables["Goal"].to_pylist()
    child = next(g for g in goals if g["parentGoalId"])
    tables["Goal"] = pa.Table.from_pylist(
        [g for g in goals if g["id"] != child["parentGoalId"]], schema=tables["Goal"].schema
    )
    unfiltered = run_quality_suites(tables, rules=goal_rules())
    assert "Goal.parentGoalId_resolves" in {r.key for r in unfiltered.failures}
    filtered = run_quality_suites(tables, rules=goal_rules(), filters={"modules": ["fitness"]})
    skipped = next(r for r in filtered.results if r.key == "Goal.parentGoalId_resolves")
    assert skipped.passed and skipped.skipped == "the export is filtered by modules"


def test_reports_of_several_batches_merge_into_one():
    tables = small_population()
    goals = tables["Goal"].to_pylist()
    goals[0]["priority"] = 0
    tables["Goal"] = pa.Table.from_pylist(goals, schema=tables["Goal"].schema)
    rules = [r for r in quality_rules() if r.table == "Goal"]
    first = run_quality_suites(tables, rules=rules)
    second = run_quality_suites(small_population(), rules=rules)
    merged = merge_reports([first, second])
    assert [r.key for r in merged.failures] == ["Goal.priority_in_range"]
    assert merged.failures[0].checked_rows == 2 * tables["Goal"].num_rows
    assert merged.affected_user_ids == {goals[0]["userId"]}
    assert not merged.blocks_batch


@pytest.mark.slow
def test_every_call_validates_the_data_it_is_given():
    tables = small_population()
    first = run_quality_suites(tables)
    assert first.passed
    goals = tables["Goal"].to_pylist()
    goals[0]["difficulty"] = 7
    tables["Goal"] = pa.Table.from_pylist(goals, schema=tables["Goal"].schema)
    changed = run_quality_suites(tables)
    assert [r.key for r in changed.failures] == ["Goal.difficulty_in_range"]
    assert first.passed, "a report is not changed by a later run"
