"""The synthetic population is deterministic, internally consistent and varied, and the bulk
loader puts exactly it into PostgreSQL and SQLite.

Everything later (extraction, exports, checks, imports, benchmarks) is tested against this
data, so a broken reference or a missing kind of awkward text here would hide bugs there.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa

from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES, APP_TABLES
from resources.schema import progress as progress_table
from synthetic.load import load_population
from synthetic.population import (
    MAX_SUBGOAL_DEPTH,
    MODULE_KINDS,
    generate_population,
    generated_user_ids,
)
from synthetic.seed import seed_database

LIMIT = datetime(2026, 11, 1, tzinfo=UTC)
ID = re.compile(r"^c[0-9a-z]{24}$")
EMAIL = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*@[a-z0-9-]+(\.[a-z0-9-]+)+$")


@pytest.fixture(scope="module")
def population() -> dict[str, pa.Table]:
    return generate_population(120, seed=11, heavy_every=0)


def _np(column) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False)


def test_same_seed_gives_identical_tables_with_the_app_schema():
    first = generate_population(30, seed=5, heavy_every=0)
    second = generate_population(30, seed=5, heavy_every=0)
    assert list(first) == list(APP_TABLE_NAMES)
    for name in APP_TABLE_NAMES:
        assert first[name].schema == APP_ARROW_SCHEMAS[name]
        assert first[name].num_rows > 0, name
        assert first[name].equals(second[name]), name
    assert generated_user_ids(30, seed=5).equals(first["User"]["id"].combine_chunks())


def test_different_seeds_give_different_ids_and_emails():
    a = generate_population(30, seed=5, heavy_every=0)
    b = generate_population(30, seed=6, heavy_every=0)
    a_ids = {i for name in APP_TABLE_NAMES for i in a[name]["id"].to_pylist()}
    b_ids = {i for name in APP_TABLE_NAMES for i in b[name]["id"].to_pylist()}
    assert a_ids.isdisjoint(b_ids)
    assert set(a["User"]["email"].to_pylist()).isdisjoint(b["User"]["email"].to_pylist())


def test_ids_are_unique_cuid_like_and_emails_well_formed(population):
    all_ids = []
    for name in APP_TABLE_NAMES:
        ids = population[name]["id"]
        assert pc.count_distinct(ids).as_py() == len(ids), name
        assert pc.all(pc.match_substring_regex(ids, ID.pattern)).as_py(), name
        all_ids += ids.to_pylist()
    assert len(set(all_ids)) == len(all_ids)
    emails = population["User"]["email"].to_pylist()
    assert len(set(emails)) == len(emails)
    assert all(EMAIL.match(e) for e in emails), [e for e in emails if not EMAIL.match(e)]


def test_every_reference_resolves_to_a_row_of_the_same_user(population):
    user_ids = population["User"]["id"]
    checked = 0
    for table in APP_TABLES:
        data = population[table.name]
        if "userId" in data.column_names:
            assert pc.all(pc.is_in(data["userId"], value_set=user_ids)).as_py(), table.name
        for fk in table.foreign_keys:
            column, target = fk.parent.name, fk.column.table.name
            if target == "User":
                continue
            refs = data.select([column, "userId"]).filter(pc.is_valid(data[column]))
            owners = population[target].select(["id", "userId"]).rename_columns(["ref", "owner"])
            joined = refs.join(owners, keys=column, right_keys="ref", join_type="left outer")
            assert joined.num_rows == refs.num_rows
            assert pc.all(pc.equal(joined["userId"], joined["owner"])).as_py(), (
                f"{table.name}.{column} points at another user's (or no) {target} row"
            )
            assert refs.num_rows > 0, f"{table.name}.{column} is never set"
            checked += 1
    assert checked == 8


def test_goal_trees_have_no_cycles_and_reach_three_levels(population):
    goals = population["Goal"]
    index = {gid: i for i, gid in enumerate(goals["id"].to_pylist())}
    parent = np.array([index.get(p, -1) for p in goals["parentGoalId"].to_pylist()])
    created = _np(goals["createdAt"].cast(pa.int64()))
    depth = np.zeros(len(parent), dtype=int)
    cursor = parent.copy()
    for _ in range(MAX_SUBGOAL_DEPTH + 1):
        depth += cursor >= 0
        cursor = np.where(cursor >= 0, parent[np.maximum(cursor, 0)], -1)
    assert (cursor == -1).all(), "a chain of parents longer than the maximum depth: a cycle?"
    assert depth.max() == MAX_SUBGOAL_DEPTH
    assert (created[parent >= 0] >= created[parent[parent >= 0]]).all()


def test_ranges_flags_and_timestamps_are_consistent(population):
    goals = population["Goal"]
    assert pc.all(
        pc.and_(pc.greater_equal(goals["priority"], 1), pc.less_equal(goals["priority"], 5))
    ).as_py()
    difficulty = pc.drop_null(goals["difficulty"])
    assert pc.min(difficulty).as_py() >= 1 and pc.max(difficulty).as_py() <= 5
    assert goals["difficulty"].null_count > 0
    assert pc.all(pc.equal(goals["isCompleted"], pc.is_valid(goals["completedAt"]))).as_py()
    done = goals.filter(goals["isCompleted"])
    assert pc.all(pc.less_equal(done["createdAt"], done["completedAt"])).as_py()
    assert pc.all(pc.less_equal(done["completedAt"], done["updatedAt"])).as_py()

    progress = population["Progress"]
    value, maximum = progress["value"], progress["maxValue"]
    assert pc.min(value).as_py() >= 0
    bounded = progress.filter(pc.is_valid(maximum))
    assert 0 < bounded.num_rows < progress.num_rows
    assert pc.all(pc.less_equal(bounded["value"], bounded["maxValue"])).as_py()
    assert pc.any(pc.equal(bounded["value"], bounded["maxValue"])).as_py()
    # Progress is recorded while its goal runs: after creation, not after completion.
    span = goals.select(["id", "createdAt", "completedAt"]).rename_columns(
        ["goalId", "goalCreated", "goalCompleted"]
    )
    timed = progress.join(span, keys="goalId")
    assert pc.all(pc.greater_equal(timed["recordedAt"], timed["goalCreated"])).as_py()
    ended = timed.filter(pc.is_valid(timed["goalCompleted"]))
    assert pc.all(pc.less_equal(ended["recordedAt"], ended["goalCompleted"])).as_py()

    for table, earlier, later in [
        ("User", "createdAt", "updatedAt"),
        ("Goal", "createdAt", "updatedAt"),
        ("BibleStudyNote", "createdAt", "updatedAt"),
        ("WorkProject", "createdAt", "updatedAt"),
        ("WorkTask", "createdAt", "completedAt"),
        ("WorkProject", "startDate", "dueDate"),
        ("BibleReadingPlan", "startDate", "endDate"),
        ("BibleReading", "verseStart", "verseEnd"),
    ]:
        data = population[table].filter(
            pc.and_(pc.is_valid(population[table][earlier]), pc.is_valid(population[table][later]))
        )
        assert data.num_rows > 0
        assert pc.all(pc.less_equal(data[earlier], data[later])).as_py(), (table, earlier, later)

    tasks = population["WorkTask"]
    assert pc.all(
        pc.equal(pc.equal(tasks["status"], "done"), pc.is_valid(tasks["completedAt"]))
    ).as_py()
    assert set(tasks["status"].to_pylist()) == {"todo", "doing", "done"}
    assert set(population["WorkProject"]["status"].to_pylist()) <= {
        "planned",
        "active",
        "on_hold",
        "done",
    }
    assert pc.min(tasks["priority"]).as_py() >= 1 and pc.max(tasks["priority"]).as_py() <= 5
    assert set(population["Module"]["kind"].to_pylist()) == set(MODULE_KINDS)

    readings = population["BibleReading"]
    assert pc.all(
        pc.equal(pc.is_valid(readings["verseStart"]), pc.is_valid(readings["verseEnd"]))
    ).as_py()
    notes = population["BibleStudyNote"]
    linked = notes.filter(pc.is_valid(notes["readingId"])).join(
        readings.select(["id", "book", "chapter"]).rename_columns(
            ["readingId", "rBook", "rChapter"]
        ),
        keys="readingId",
    )
    assert linked.num_rows > 0
    assert linked["book"].to_pylist() == linked["rBook"].to_pylist()
    assert linked["chapter"].to_pylist() == linked["rChapter"].to_pylist()

    settings = population["UserSetting"]
    pairs = list(zip(settings["userId"].to_pylist(), settings["key"].to_pylist(), strict=True))
    assert len(set(pairs)) == len(pairs)
    for text in pc.drop_null(settings["value"]).to_pylist():
        json.loads(text)

    for name in APP_TABLE_NAMES:
        for field in APP_ARROW_SCHEMAS[name]:
            column = population[name][field.name]
            if pa.types.is_timestamp(field.type):
                micros = _np(pc.drop_null(column).cast(pa.int64()))
                assert (micros % 1000 == 0).all(), f"{name}.{field.name} has sub-millisecond parts"
                assert pc.max(column).as_py() < LIMIT, f"{name}.{field.name}"
            elif pa.types.is_date32(field.type):
                assert pc.max(column).as_py() < LIMIT.date(), f"{name}.{field.name}"


def _chars(population) -> list[str]:
    texts = []
    for name in APP_TABLE_NAMES:
        for field in APP_ARROW_SCHEMAS[name]:
            if pa.types.is_string(field.type) and field.name != "id":
                texts += pc.drop_null(population[name][field.name]).to_pylist()
    return texts


def test_awkward_text_and_nulls_are_all_there(population):
    texts = _chars(population)

    def some(predicate) -> bool:
        return any(predicate(t) for t in texts)

    assert some(lambda t: any(ord(c) >= 0x1F300 for c in t)), "emoji"
    assert some(lambda t: any(0x4E00 <= ord(c) <= 0x9FFF for c in t)), "CJK"
    assert some(lambda t: any(0x0600 <= ord(c) <= 0x06FF for c in t)), "Arabic"
    assert some(lambda t: any(0x0590 <= ord(c) <= 0x05FF for c in t)), "Hebrew"
    assert some(
        lambda t: any(c.isalpha() and ord(c) < 0x250 and unicodedata.decomposition(c) for c in t)
    ), "accents"
    assert some(lambda t: "\n" in t) and some(lambda t: "\r\n" in t), "multi-line"
    assert some(lambda t: t == ""), "empty string (not NULL)"
    for lead in "=+-@":
        assert some(lambda t, lead=lead: t.startswith(lead)), f"text starting with {lead}"
    notes = population["Progress"]["notes"]
    assert pc.any(pc.match_substring(notes, "\n")).as_py()

    for name in APP_TABLE_NAMES:
        for field in APP_ARROW_SCHEMAS[name]:
            column = population[name][field.name]
            if field.nullable:
                assert 0 < column.null_count < len(column), f"{name}.{field.name}"
            else:
                assert column.null_count == 0, f"{name}.{field.name}"


def test_heavy_users_are_every_nth_from_index_one():
    tables = generate_population(5, seed=2, heavy_every=3)
    users = tables["User"]["id"].to_pylist()
    progress = pc.value_counts(tables["Progress"]["userId"]).to_pylist()
    per_user = {row["values"]: row["counts"] for row in progress}
    goals = {
        row["values"]: row["counts"]
        for row in pc.value_counts(tables["Goal"]["userId"]).to_pylist()
    }
    heavy = [users[1], users[4]]
    for user in heavy:
        assert per_user[user] >= 50_000 and goals[user] == 500
    for user in set(users) - set(heavy):
        assert per_user.get(user, 0) < 5_000
    light = generate_population(5, seed=2, heavy_every=0)
    assert light["Progress"].num_rows < 5_000


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_users"):
        generate_population(-1)
    with pytest.raises(ValueError, match="seed"):
        generate_population(3, seed=-2)
    with pytest.raises(ValueError, match="heavy_every"):
        generate_population(3, heavy_every=-1)
    assert all(t.num_rows == 0 for t in generate_population(0).values())


# ---------------------------------------------------------------- loading


def _sample_ids(tables: dict[str, pa.Table]) -> dict[str, list[str]]:
    samples = {}
    for name, table in tables.items():
        n = table.num_rows
        samples[name] = sorted({table["id"][i].as_py() for i in (0, n // 2, n - 1)})
    return samples


def _assert_database_holds(url: str, tables: dict[str, pa.Table], naive_utc: bool) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            for table in APP_TABLES:
                count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
                assert count == tables[table.name].num_rows, table.name
            # Every row: the sampled ones value by value, all of them through a digest.
            for table in APP_TABLES:
                expected = tables[table.name]
                for row_id in _sample_ids(tables)[table.name]:
                    want = expected.filter(pc.equal(expected["id"], row_id)).to_pylist()[0]
                    got = dict(
                        conn.execute(sa.select(table).where(table.c.id == row_id)).mappings().one()
                    )
                    for column, value in want.items():
                        stored = got[column]
                        if naive_utc and isinstance(stored, datetime):
                            stored = stored.replace(tzinfo=UTC)  # SQLite keeps no zone
                        assert stored == value, (table.name, row_id, column, stored, value)
                        if isinstance(value, Decimal):
                            assert str(stored) == str(value)
            progress = conn.execute(
                sa.select(
                    sa.func.sum(progress_table.c.value), sa.func.count(progress_table.c.notes)
                )
            ).one()
            # Range filters compare stored values (strings, on SQLite) with bound parameters.
            goals = tables["Goal"]
            since = goals["createdAt"][goals.num_rows // 3].as_py()
            goal_table = next(t for t in APP_TABLES if t.name == "Goal")
            newer = conn.execute(
                sa.select(sa.func.count()).where(goal_table.c.createdAt >= since)
            ).scalar()
            assert newer == pc.sum(pc.greater_equal(goals["createdAt"], since)).as_py()
            # (SQLite sums in floating point: exact once rounded to the cents.)
            total = Decimal(str(progress[0])).quantize(Decimal("0.01"))
            assert total == sum(tables["Progress"]["value"].to_pylist())
            assert progress[1] == len(tables["Progress"]) - tables["Progress"]["notes"].null_count
    finally:
        engine.dispose()


def test_load_into_postgres_holds_exactly_the_tables(pg_url):
    tables = generate_population(30, seed=3, heavy_every=0)
    # Many record batches per table: the ingestion streams them one after another.
    tables = {
        name: pa.Table.from_batches(table.to_batches(max_chunksize=1_000), table.schema)
        for name, table in tables.items()
    }
    assert tables["Progress"].column("id").num_chunks > 1
    counts = load_population(sa.create_engine(pg_url), tables)
    assert counts == {name: tables[name].num_rows for name in APP_TABLE_NAMES}
    _assert_database_holds(pg_url, tables, naive_utc=False)
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        texts = conn.execute(sa.text('SELECT title FROM "Goal" ORDER BY id')).scalars().all()
    engine.dispose()
    assert texts == tables["Goal"]["title"].to_pylist()


def test_bulk_path_restores_foreign_keys_and_rejects_broken_references(pg_url):
    engine = sa.create_engine(pg_url)
    constraints = sa.text(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' ORDER BY 1, 2"
    )
    with engine.connect() as conn:
        before = conn.execute(constraints).all()
    tables = generate_population(10, seed=4, heavy_every=0)
    # A progress row pointing at a goal that does not exist: the whole load must fail.
    progress = tables["Progress"]
    goal_ids = progress["goalId"].to_pylist()
    goal_ids[-1] = "c000000000000000000000000"
    broken = dict(tables)
    broken["Progress"] = progress.set_column(
        progress.schema.get_field_index("goalId"),
        progress.schema.field("goalId"),
        pa.array(goal_ids, pa.string()),
    )
    with pytest.raises(
        ValueError,
        match="Progress_goalId_fkey.*nothing was loaded|nothing was loaded.*Progress_goalId_fkey",
    ):
        load_population(engine, broken, defer_foreign_keys=True)
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT count(*) FROM "User"')).scalar() == 0
        assert conn.execute(constraints).all() == before

    load_population(engine, tables, defer_foreign_keys=True)
    with engine.connect() as conn:
        assert conn.execute(constraints).all() == before
        assert len(before) >= 18
    engine.dispose()
    _assert_database_holds(pg_url, tables, naive_utc=False)


def test_a_broken_reference_loads_nothing_with_foreign_keys_checked_per_row(pg_url):
    tables = generate_population(10, seed=4, heavy_every=0)
    achievements = tables["Achievement"]
    user_ids = achievements["userId"].to_pylist()
    user_ids[0] = "c000000000000000000000000"
    tables["Achievement"] = achievements.set_column(
        achievements.schema.get_field_index("userId"),
        achievements.schema.field("userId"),
        pa.array(user_ids, pa.string()),
    )
    engine = sa.create_engine(pg_url)
    with pytest.raises(ValueError, match="loading Achievement failed, nothing was loaded"):
        load_population(engine, tables, defer_foreign_keys=False)
    with engine.connect() as conn:
        for table in APP_TABLES:
            count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            assert count == 0, table.name
    engine.dispose()


def test_binary_copy_keeps_extreme_and_negative_decimals(pg_url):
    tables = generate_population(12, seed=9, heavy_every=0)
    projects = tables["WorkProject"]
    n = projects.num_rows
    assert n >= 4
    budgets = [Decimal("-12.34"), Decimal("0.00"), Decimal("9999999999.99"), None]
    budgets += [Decimal("-9999999999.99")] * (n - len(budgets))
    column = projects.schema.get_field_index("budget")
    tables["WorkProject"] = projects.set_column(
        column, projects.schema.field("budget"), pa.array(budgets, pa.decimal128(12, 2))
    )
    load_population(sa.create_engine(pg_url), tables)
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        stored = (
            conn.execute(sa.text('SELECT budget FROM "WorkProject" ORDER BY id')).scalars().all()
        )
    engine.dispose()
    assert [None if b is None else str(b) for b in stored] == [
        None if b is None else str(b) for b in budgets
    ]


def test_load_into_sqlite_holds_exactly_the_tables(sqlite_url):
    tables = generate_population(30, seed=3, heavy_every=0)
    counts = load_population(sa.create_engine(sqlite_url), tables)
    assert counts == {name: tables[name].num_rows for name in APP_TABLE_NAMES}
    _assert_database_holds(sqlite_url, tables, naive_utc=True)


def test_loader_refuses_tables_it_does_not_know(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    with pytest.raises(ValueError, match="not app tables"):
        load_population(engine, {"Goals": pa.table({"id": ["x"]})})
    tables = generate_population(2, heavy_every=0)
    with pytest.raises(ValueError, match="User"):
        load_population(engine, {"User": tables["User"].drop_columns(["timezone"])})


@pytest.mark.parametrize("url_fixture", ["pg_url", "sqlite_url"])
def test_seed_database_refuses_to_seed_the_same_users_twice(url_fixture, request):
    url = request.getfixturevalue(url_fixture)
    counts = seed_database(url, 4, seed=21, heavy_every=0)
    assert counts["User"] == 4 and counts["Progress"] > 0
    with pytest.raises(ValueError, match=r"already has 4 of the 4 users that seed 21"):
        seed_database(url, 4, seed=21, heavy_every=0)
    with pytest.raises(ValueError, match=r"already has 4 of the 6 users"):
        seed_database(url, 6, seed=21, heavy_every=0)
    seed_database(url, 3, seed=22, heavy_every=0)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT count(*) FROM "User"')).scalar() == 7
    engine.dispose()


def test_seed_database_loads_a_heavy_user_into_postgres(pg_url):
    counts = seed_database(pg_url, 2, seed=8, heavy_every=1)
    heavy_id = generated_user_ids(2, seed=8)[1].as_py()
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text('SELECT count(*) FROM "Progress" WHERE "userId" = :u'), {"u": heavy_id}
        ).scalar()
        total = conn.execute(sa.text('SELECT count(*) FROM "Progress"')).scalar()
    engine.dispose()
    assert rows >= 50_000
    assert total == counts["Progress"]


def test_load_through_psycopg2_too(pg_url):
    """`postgresql://` URLs default to psycopg2; the load goes through ADBC whatever
    SQLAlchemy's driver is."""
    tables = generate_population(6, seed=12, heavy_every=0)
    engine = sa.create_engine(pg_url.replace("+psycopg:", "+psycopg2:"))
    assert engine.dialect.driver == "psycopg2"
    load_population(engine, tables, defer_foreign_keys=True)
    engine.dispose()
    _assert_database_holds(pg_url, tables, naive_utc=False)
