"""Round trips through PostgreSQL: export a seeded user in every format, erase or corrupt
their rows, import the file, and the database holds exactly what it held before; a second
export is the same file, and a second import of it changes nothing.

Property-tested over random seeded populations (hypothesis picks the seed, the user and
the kind of damage) with real renderers, readers, staging, diff and bulk apply."""

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from import_support import (
    corrupt_user_rows,
    dump,
    erase_user_rows,
    export_user,
    import_file,
    populate,
    reset,
)

from assets.imports.jobs import get_import_job
from resources.storage import ObjectStorage

FORMATS = ["json", "csv", "csv-machine", "xlsx", "parquet", "xml"]
DAMAGE = ["erase-account", "erase-rows", "corrupt", "corrupt-touching-updatedAt"]


@pytest.mark.parametrize("fmt", FORMATS)
@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    pick=st.integers(min_value=0, max_value=2),
    damage=st.sampled_from(DAMAGE),
)
@pytest.mark.slow
def test_export_damage_import_restores_exactly(database, tmp_path, fmt, seed, pick, damage):
    engine = database.engine
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    reset(engine)
    users = populate(engine, 3, seed)
    user_id = sorted(users)[pick]
    before = dump(engine)
    exported = export_user(database, user_id, fmt)

    if damage == "erase-account":
        erase_user_rows(engine, user_id, keep_account=False)
        mode, policy = "merge", "fail"
    elif damage == "erase-rows":
        erase_user_rows(engine, user_id, keep_account=True)
        mode, policy = "merge", "fail"
    else:
        corrupt_user_rows(engine, user_id, touch_updated_at=damage.endswith("updatedAt"))
        # corrupted rows edited "after the export" are conflicts: the backup must win
        mode, policy = "replace", "take-incoming"
    assert dump(engine) != before

    job_id, plan = import_file(
        database, storage, user_id, exported, file_name=f"restore.{fmt}", mode=mode, policy=policy
    )
    assert plan.issues == [] and plan.refused == []
    if damage == "corrupt-touching-updatedAt":
        assert plan.totals()["conflict"] == 3
    assert dump(engine) == before
    assert get_import_job(engine, job_id)["status"] == "applied"
    assert export_user(database, user_id, fmt) == exported

    _, again = import_file(database, storage, user_id, exported, apply=False)
    totals = again.totals()
    assert again.row_writes == 0 and not again.has_changes
    assert totals["create"] == totals["update"] == totals["delete"] == totals["conflict"] == 0
    assert totals["unchanged"] == sum(
        len(rows) for rows in (r for r in _user_rows(before, user_id))
    )


def _user_rows(snapshot: dict, user_id: str):
    """The user's rows in a dump, per table."""
    from resources import schema

    for table in schema.APP_TABLES:
        index = 0 if table.name == "User" else [c.name for c in table.columns].index("userId")
        yield [row for row in snapshot[table.name] if row[index] == user_id]


@pytest.mark.slow
def test_encrypted_backup_and_bundle_restore(database, tmp_path, monkeypatch):
    """A backup (zip with manifest.json and data/export.json, age-encrypted to the user's
    key, as the backup job writes it) and a passphrase-encrypted export both restore."""
    from assets.backups.archive import build_backup_archive
    from resources import age
    from resources.keys import KeyVault, new_master_key

    monkeypatch.setenv("GOALPORT_MASTER_KEY", new_master_key())
    engine = database.engine
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    user_id = sorted(populate(engine, 2, 77))[0]
    before = dump(engine)
    export = export_user(database, user_id, "json")
    counts = {n: t.num_rows for n, t in database.extract([user_id]).tables.items()}
    archive, _ = build_backup_archive(
        user_id=user_id,
        created_at=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        fmt="json",
        export=export,
        row_counts=counts,
        include=None,
    )
    recipient = KeyVault(database_url=database.resolved_url).ensure_user_key(user_id)
    backup = age.encrypt(archive, recipients=[recipient])

    erase_user_rows(engine, user_id, keep_account=True)
    job_id, plan = import_file(database, storage, user_id, backup, file_name="b.zip.age")
    assert plan.file["encrypted"] and plan.file["format"] == "backup/json"
    assert dump(engine) == before

    locked = age.encrypt(
        export_user(database, user_id, "parquet"), passphrase="s3cret", work_factor=10
    )
    erase_user_rows(engine, user_id, keep_account=True)
    _, plan = import_file(database, storage, user_id, locked, passphrase="s3cret")
    assert plan.file["format"] == "parquet" and plan.file["encrypted"]
    assert dump(engine) == before
