"""Exports hold exactly what the database holds for each user: every row, no other user's
row, no value changed. Files are read back with readers that are not goalport's own (json,
csv, openpyxl, pyarrow) and compared with what SQL finds, value by value."""

import csv
import datetime as dt
import io
import json
import re
import zipfile
from decimal import Decimal

import openpyxl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from assets.exports.batches import export_users, make_filter
from resources import schema
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from synthetic.seed import seed_database

SAMPLED = 3


@pytest.fixture
def seeded(pg_url):
    seed_database(pg_url, 10, seed=11, heavy_every=0)
    return pg_url


def sql_rows(url: str, table: sa.Table, user_id: str) -> dict[str, dict]:
    """The user's rows of `table` as SQL returns them, keyed by id, timestamps in UTC."""
    owner = table.c.id if table.name == "User" else table.c.userId
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).where(owner == user_id)).mappings().all()
    engine.dispose()
    return {r["id"]: {k: _utc(v) for k, v in r.items()} for r in rows}


def _utc(value):
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC)
    return value


def sampled_users(url: str) -> list[str]:
    """Users with the most progress rows, and one with Bible and work data."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ids = conn.execute(
            sa.text(
                'SELECT u.id FROM "User" u ORDER BY (SELECT count(*) FROM "Progress" p '
                'WHERE p."userId" = u.id) DESC, u.id'
            )
        ).scalars()
        chosen = list(ids)[:SAMPLED]
    engine.dispose()
    return chosen


def typed(column: sa.Column, text):
    """A value from a text format, typed like the column, for comparison with SQL."""
    if text is None:
        return None
    kind = column.type
    if isinstance(kind, sa.Numeric):
        return Decimal(text)
    if isinstance(kind, sa.DateTime):
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC)
    if isinstance(kind, sa.Date):
        return dt.date.fromisoformat(text)
    if isinstance(kind, sa.Boolean):
        return {"true": True, "false": False}[str(text).lower()] if isinstance(text, str) else text
    if isinstance(kind, sa.Integer):
        return int(text)
    return text


def assert_same_rows(table: sa.Table, expected: dict, actual_rows: list[dict], where: str):
    actual = {row["id"]: row for row in actual_rows}
    assert set(actual) == set(expected), f"{where}: ids differ for {table.name}"
    for row_id, row in expected.items():
        for column in table.columns:
            got = actual[row_id][column.name]
            assert got == row[column.name], f"{where}: {table.name}.{column.name} of {row_id}"


def json_rows(document: dict) -> dict[str, list[dict]]:
    """Flatten the JSON export back into rows per table (goals are a nested tree)."""
    rows: dict[str, list[dict]] = {t.name: [] for t in schema.APP_TABLES}
    rows["User"] = [document["user"]]
    rows["Module"] = document["modules"]

    def walk(goals):
        for goal in goals:
            rows["Goal"].append(
                {k: v for k, v in goal.items() if k not in ("progress", "subGoals")}
            )
            rows["Progress"].extend(goal["progress"])
            walk(goal["subGoals"])

    walk(document["goals"])
    for table in schema.APP_TABLES:
        if table.name not in ("User", "Module", "Goal", "Progress"):
            rows[table.name] = document[table.name]
    return {
        name: [
            {c.name: typed(c, row[c.name]) for c in schema.metadata.tables[name].columns}
            for row in table_rows
        ]
        for name, table_rows in rows.items()
    }


def csv_rows(data: bytes) -> dict[str, list[dict]]:
    """pyarrow's CSV reader tells an empty quoted field ("" = empty text) from an empty
    unquoted one (NULL); the csv module checks that each file is plain RFC 4180."""
    result = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for table in schema.APP_TABLES:
            raw = archive.read(f"{table.name}.csv")
            assert not raw.startswith(b"\xef\xbb\xbf"), "machine CSV has no BOM"
            records = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
            assert records[0] == [c.name for c in table.columns]
            parsed = pacsv.read_csv(
                io.BytesIO(raw),
                convert_options=pacsv.ConvertOptions(
                    column_types={c.name: pa.string() for c in table.columns},
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
            assert parsed.num_rows == len(records) - 1
            result[table.name] = [
                {c.name: typed(c, row[c.name]) for c in table.columns} for row in parsed.to_pylist()
            ]
    return result


def xlsx_rows(data: bytes) -> dict[str, list[dict]]:
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    result = {}
    for table in schema.APP_TABLES:
        sheet_rows = list(workbook[table.name].iter_rows(values_only=True))
        header = list(sheet_rows[0])
        result[table.name] = [
            {c.name: xlsx_value(c, values[header.index(c.name)]) for c in table.columns}
            for values in sheet_rows[1:]
        ]
    return result


OOXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def xlsx_value(column: sa.Column, value):
    kind = column.type
    if value is None:
        return None
    if isinstance(value, str):
        # Control characters are stored as _xHHHH_ (ECMA-376 Part 1, 22.4.2.4); openpyxl's
        # read-only mode leaves inline strings escaped, Excel shows the character.
        return OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    if isinstance(kind, sa.Numeric):
        return Decimal(repr(value)).quantize(Decimal(1).scaleb(-kind.scale))
    if isinstance(kind, sa.DateTime):
        micro = round(value.microsecond / 1000) * 1000
        value = value.replace(microsecond=0) + dt.timedelta(microseconds=micro)
        return value.replace(tzinfo=dt.UTC)
    if isinstance(kind, sa.Date):
        return value.date() if isinstance(value, dt.datetime) else value
    return value


def parquet_rows(data: bytes) -> dict[str, list[dict]]:
    result = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for table in schema.APP_TABLES:
            parquet = pq.read_table(io.BytesIO(archive.read(f"{table.name}.parquet")))
            result[table.name] = [
                {k: _utc(v) for k, v in row.items()} for row in parquet.to_pylist()
            ]
    return result


READERS = {
    "json": lambda b: json_rows(json.loads(b)),
    "csv-machine": csv_rows,  # values exact; the spreadsheet-safe "csv": tests/formats
    "xlsx": xlsx_rows,
    "parquet": parquet_rows,
}


def check_exports_match_database(url: str, storage: ObjectStorage, user_ids: list[str]):
    result = export_users(AppDatabase(url=url), storage, user_ids, list(READERS))
    assert {(f.user_id, f.format) for f in result.files} == {
        (u, fmt) for u in user_ids for fmt in READERS
    }
    for exported in result.files:
        data = storage.read_bytes(exported.stored.key)
        assert len(data) == exported.stored.size
        rows = READERS[exported.format](data)
        for table in schema.APP_TABLES:
            expected = sql_rows(url, table, exported.user_id)
            where = f"{exported.format} export of {exported.user_id}"
            assert_same_rows(table, expected, rows[table.name], where)
            owner = "id" if table.name == "User" else "userId"
            assert {r[owner] for r in rows[table.name]} <= {exported.user_id}


@pytest.mark.slow
def test_every_format_holds_exactly_the_users_rows(seeded, tmp_path):
    users = sampled_users(seeded)
    check_exports_match_database(seeded, ObjectStorage(url=str(tmp_path / "store")), users)


@pytest.mark.slow
def test_exports_through_s3(seeded, s3_url):
    users = sampled_users(seeded)[:1]
    storage = ObjectStorage(url=s3_url)
    check_exports_match_database(seeded, storage, users)
    assert storage.list("exports") and all(
        k.startswith(f"exports/{users[0]}/") for k in storage.list("exports")
    )


def test_seeded_data_exercises_the_hard_values(seeded):
    """The comparison above is only as strong as the data: make sure it has the hard cases."""
    engine = sa.create_engine(seeded)
    with engine.connect() as conn:
        texts = conn.execute(
            sa.text("SELECT string_agg(coalesce(notes, ''), '') FROM \"Progress\"")
        ).scalar()
        titles = conn.execute(sa.text('SELECT array_agg(title) FROM "Goal"')).scalar()
        null_notes = conn.execute(
            sa.text('SELECT count(*) FROM "Progress" WHERE notes IS NULL')
        ).scalar()
    engine.dispose()
    everything = texts + "".join(titles)
    assert any(ord(ch) > 0x1F000 for ch in everything), "emoji"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in everything), "CJK"
    assert any("\u0590" <= ch <= "\u06ff" for ch in everything), "right-to-left script"
    assert "\n" in everything
    assert any(t[0] in "=+-@" for t in titles)
    assert null_notes > 0


def test_selective_export_pushes_filters_into_the_queries(seeded):
    database = AppDatabase(url=seeded)
    user = sampled_users(seeded)[0]
    everything = database.extract([user]).per_user()[user]
    since, until = dt.date(2026, 3, 1), dt.date(2026, 5, 31)
    chosen = database.extract([user], make_filter(["fitness", "bible"], "2026-03-01", "2026-05-31"))
    tables = chosen.per_user()[user]
    kinds = dict(
        zip(
            everything["Module"]["id"].to_pylist(),
            everything["Module"]["kind"].to_pylist(),
            strict=True,
        )
    )
    assert set(tables["Module"]["kind"].to_pylist()) <= {"fitness", "bible"}
    assert {kinds[m] for m in tables["Goal"]["moduleId"].to_pylist()} <= {"fitness", "bible"}
    goal_ids = set(tables["Goal"]["id"].to_pylist())
    expected_progress = {
        row["id"]
        for row in everything["Progress"].to_pylist()
        if row["goalId"] in goal_ids and since <= row["recordedAt"].date() <= until
    }
    assert set(tables["Progress"]["id"].to_pylist()) == expected_progress
    assert tables["WorkTask"].num_rows == 0 and tables["WorkProject"].num_rows == 0
    assert tables["BibleReadingPlan"].num_rows == everything["BibleReadingPlan"].num_rows


def test_one_batch_never_mixes_users(seeded):
    database = AppDatabase(url=seeded)
    users = database.all_user_ids()
    per_user = database.extract(users).per_user()
    assert set(per_user) == set(users)
    for uid, tables in per_user.items():
        for name, table in tables.items():
            owner = "id" if name == "User" else "userId"
            assert set(table[owner].to_pylist()) <= {uid}
            assert table["id"].to_pylist() == sorted(table["id"].to_pylist())
    total = {n: t.num_rows for n, t in database.extract(users).tables.items()}
    assert total == {n: sum(p[n].num_rows for p in per_user.values()) for n in total}
