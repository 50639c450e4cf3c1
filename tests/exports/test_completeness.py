"""Every export file proves it is complete: read back with goalport's readers, its row counts
and per-table content checksums match what was extracted. A file cut short or altered,
before or after it reached storage, fails the check and is never handed out."""

import datetime as dt
import hashlib
import json

import pyarrow as pa
import pytest
import sqlalchemy as sa

from assets.exports.batches import export_users
from assets.exports.completeness import (
    check_export_completeness,
    check_exports_completeness,
    confirm_stored_copy,
    table_checksum,
    table_checksums,
)
from assets.formats.registry import DATA_FORMATS, FORMATS
from resources.database import AppDatabase, ExtractedBatch
from resources.storage import ObjectStorage, StoredObject
from synthetic.population import generate_population
from synthetic.seed import seed_database

EXPORTED_AT = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def one_user():
    tables = generate_population(3, seed=9, heavy_every=0)
    batch = ExtractedBatch(user_ids=tuple(tables["User"]["id"].to_pylist()), tables=tables)
    per_user = batch.per_user()
    user_id = max(per_user, key=lambda u: per_user[u]["Progress"].num_rows)
    return user_id, per_user[user_id]


def render(fmt, user_id, tables) -> bytes:
    return FORMATS[fmt].render(tables, user_id=user_id, exported_at=EXPORTED_AT, filters=None)


@pytest.mark.parametrize("fmt", DATA_FORMATS)
def test_a_complete_file_passes_and_a_truncated_one_fails(one_user, fmt):
    user_id, tables = one_user
    data = render(fmt, user_id, tables)
    result = check_export_completeness(data, fmt, tables)
    assert result["passed"] and result["verified"] and result["problems"] == []
    assert result["rows"] == result["expected_rows"] == sum(t.num_rows for t in tables.values())
    assert result["tables"]["Progress"]["rows"] == tables["Progress"].num_rows > 0
    assert result["tables"]["Progress"]["checksum"] == table_checksum(
        tables["Progress"], "Progress"
    )
    assert result["sha256"] == hashlib.sha256(data).hexdigest()

    truncated = check_export_completeness(data[: len(data) * 2 // 3], fmt, tables)
    assert not truncated["passed"]
    assert truncated["problems"][0].startswith("the file cannot be read back:")


def test_a_dropped_row_and_a_changed_value_are_caught(one_user):
    user_id, tables = one_user
    document = json.loads(render("json", user_id, tables))
    goal = next(g for g in document["goals"] if g["progress"])
    dropped = goal["progress"].pop()
    result = check_export_completeness(json.dumps(document).encode(), "json", tables)
    assert not result["passed"]
    expected = tables["Progress"].num_rows
    assert result["problems"] == [
        f"Progress: {expected - 1} rows in the file, {expected} extracted"
    ]
    assert result["tables"]["Goal"]["ok"] and not result["tables"]["Progress"]["ok"]

    goal["progress"].append({**dropped, "notes": (dropped["notes"] or "") + " (edited)"})
    result = check_export_completeness(json.dumps(document).encode(), "json", tables)
    assert result["problems"] == [
        "Progress: same number of rows, but the content differs (checksum)"
    ]


def test_files_read_together_get_the_verdicts_they_get_one_by_one():
    tables = generate_population(6, seed=4, heavy_every=0)
    per_user = ExtractedBatch(
        user_ids=tuple(tables["User"]["id"].to_pylist()), tables=tables
    ).per_user()
    users = sorted(per_user)
    files = [render("json", u, per_user[u]) for u in users]
    document = json.loads(files[2])
    goal = next(g for g in document["goals"] if g["progress"])
    goal["progress"][0]["value"] = "12345.5"  # one changed value in the third user's file
    files[2] = json.dumps(document).encode()
    expected = [per_user[u] for u in users]

    def verdicts(results):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in results]

    together = check_exports_completeness(files, "json", expected, [None] * len(users))
    one_by_one = [
        check_export_completeness(f, "json", t) for f, t in zip(files, expected, strict=True)
    ]
    assert verdicts(together) == verdicts(one_by_one)
    assert [r["passed"] for r in together] == [True, True, False, True, True, True]
    assert together[2]["problems"] == [
        "Progress: same number of rows, but the content differs (checksum)"
    ]

    files[4] = files[4][:-10]  # unreadable: every other file still gets its own verdict
    together = check_exports_completeness(files, "json", expected, [None] * len(users))
    assert [r["passed"] for r in together] == [True, True, False, True, False, True]
    assert together[4]["problems"][0].startswith("the file cannot be read back:")


def test_checksums_ignore_row_order_and_chunking_but_not_values(one_user):
    _, tables = one_user
    progress = tables["Progress"]
    reordered = pa.concat_tables([progress.slice(3), progress.slice(0, 3)])
    assert table_checksum(reordered, "Progress") == table_checksum(progress, "Progress")
    rows = progress.to_pylist()
    rows[0]["notes"] = "" if rows[0]["notes"] is None else None
    changed = pa.Table.from_pylist(rows, schema=progress.schema)
    assert table_checksum(changed, "Progress") != table_checksum(progress, "Progress")
    empty = table_checksums({})
    assert set(empty) == set(tables) and len(set(empty.values())) == len(empty)


def test_a_stored_copy_that_differs_from_the_checked_file_fails(one_user):
    user_id, tables = one_user
    data = render("csv", user_id, tables)
    checked = check_export_completeness(data, "csv", tables)
    assert confirm_stored_copy(checked, data)["passed"]
    result = confirm_stored_copy(checked, data[:-10])
    assert not result["passed"]
    assert result["problems"][0].startswith(
        f"the stored file is not the file that was checked ({len(data) - 10} bytes stored, "
        f"{len(data)} checked"
    )


class TruncatingStorage(ObjectStorage):
    """Object storage that loses the second half of one user's files as it writes them:
    what a broken network path or a full disk does after rendering."""

    damaged_user: str

    def write_bytes(self, key: str, data: bytes) -> StoredObject:
        if key.startswith(f"exports/{self.damaged_user}/"):
            data = data[: len(data) // 2]
        return super().write_bytes(key, data)


def sql_row_counts(url: str, user_id: str) -> dict[str, int]:
    from resources.schema import APP_TABLES

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        counts = {
            t.name: conn.execute(
                sa.select(sa.func.count()).where(
                    (t.c.id if t.name == "User" else t.c.userId) == user_id
                )
            ).scalar_one()
            for t in APP_TABLES
        }
    engine.dispose()
    return counts


def test_a_file_truncated_on_its_way_to_storage_fails_its_user_only(pg_url, tmp_path):
    seed_database(pg_url, 3, seed=4, heavy_every=0)
    database = AppDatabase(url=pg_url)
    users = database.all_user_ids()
    storage = TruncatingStorage(url=str(tmp_path), damaged_user=users[0])
    result = export_users(database, storage, users, ["json", "parquet"], quality_gate=False)

    assert list(result.failed_users) == [users[0]]
    message = result.failed_users[users[0]]
    assert message.startswith(
        "not exported: json export incomplete: the stored file is not the file"
    )
    assert "parquet export incomplete" in message and message.endswith(
        "(the file was deleted; export again)"
    )
    assert [f.user_id for f in result.incomplete_files] == [users[0], users[0]]
    assert not any(k.startswith(f"exports/{users[0]}/") for k in storage.list("exports"))

    assert sorted(result.by_user()) == sorted(users[1:])
    for exported in result.files:
        assert exported.completeness["passed"] and exported.completeness["verified"]
        assert exported.completeness["stored_sha256"] == exported.stored.sha256
        counts = sql_row_counts(pg_url, exported.user_id)
        assert {t: v["rows"] for t, v in exported.completeness["tables"].items()} == counts


def test_a_file_altered_after_the_export_no_longer_passes(pg_url, tmp_path):
    seed_database(pg_url, 2, seed=6, heavy_every=0)
    database = AppDatabase(url=pg_url)
    user_id = database.all_user_ids()[0]
    storage = ObjectStorage(url=str(tmp_path))
    (exported,) = export_users(database, storage, [user_id], ["xlsx"], quality_gate=False).files
    key = exported.stored.key
    tables = database.extract([user_id]).per_user()[user_id]
    assert check_export_completeness(storage.read_bytes(key), "xlsx", tables)["passed"]

    storage.write_bytes(key, storage.read_bytes(key)[:-100])
    result = check_export_completeness(storage.read_bytes(key), "xlsx", tables)
    assert not result["passed"] and "cannot be read back" in result["problems"][0]


def test_completeness_is_proven_through_s3(pg_url, s3_url):
    seed_database(pg_url, 2, seed=8, heavy_every=0)
    database = AppDatabase(url=pg_url)
    storage = ObjectStorage(url=s3_url)
    result = export_users(database, storage, database.all_user_ids(), ["csv"], quality_gate=False)
    assert result.failed_users == {} and len(result.files) == 2
    for exported in result.files:
        assert exported.completeness["passed"]
        assert exported.completeness["stored_sha256"] == exported.stored.sha256
        assert exported.completeness["rows"] == exported.records
