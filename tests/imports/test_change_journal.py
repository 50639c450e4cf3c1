"""The change journal of an import (`assets/imports/change_journal.py`) on real databases:
batches of rows, listed back row by row in the order they were recorded, undone exactly
(the app's rows and ExternalRef) when an import spans several batches; and the journals
of imports applied before migration 0009 (one record per row) still undone after it."""

import sqlalchemy as sa
from import_support import dump, import_file, populate
from test_foreign_reimport import TODOIST_NAME, TODOIST_V1, TODOIST_V2, todoist_csv

from assets.imports import change_journal
from assets.imports.change_journal import change_counts, import_changes
from assets.imports.undo import undo_import
from migrations import downgrade, upgrade
from resources import schema
from resources.database import AppDatabase


def external_refs(engine: sa.Engine) -> list[tuple]:
    ref = schema.external_ref
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(ref).order_by(ref.c.id))]


def journal_records(engine: sa.Engine, job_id: str) -> list[tuple]:
    change = schema.import_change
    with engine.connect() as conn:
        query = sa.select(change.c.tableName, change.c.action, change.c.rowCount, change.c.rowId)
        return [tuple(r) for r in conn.execute(query.where(change.c.importJobId == job_id))]


def test_an_import_over_several_batches_is_listed_and_undone_exactly(
    database, storage, monkeypatch
):
    monkeypatch.setattr(change_journal, "BATCH_ROWS", 2)
    engine = database.engine
    user_id = populate(engine, 2, 61)[0]
    import_file(database, storage, user_id, todoist_csv(TODOIST_V1), file_name=TODOIST_NAME)
    before, refs_before = dump(engine), external_refs(engine)

    job_id, plan = import_file(
        database,
        storage,
        user_id,
        todoist_csv(TODOIST_V2),
        file_name=TODOIST_NAME,
        mode="replace",
        policy="take-incoming",
    )
    goal_plan = plan.tables["Goal"]
    expected = {
        "create": goal_plan.creates.num_rows,
        "update": goal_plan.updates.num_rows,
        "delete": goal_plan.deletes.num_rows,
    }
    assert expected["update"] >= 2 and expected["create"] >= 1 and expected["delete"] >= 1
    records = journal_records(engine, job_id)
    # two rows a record at most, none per row; each record counts its rows
    assert all(row_id is None and 1 <= count <= 2 for *_, count, row_id in records)
    goal_records = [r for r in records if r[0] == "Goal"]
    assert len(goal_records) == sum((n + 1) // 2 for n in expected.values() if n)

    with engine.connect() as conn:
        listed = import_changes(conn, job_id)
        counts = change_counts(conn, job_id)
    goals = [c for c in listed if c.table == "Goal"]
    for action, part in (("create", "creates"), ("update", "updates"), ("delete", "deletes")):
        ids = [c.row_id for c in goals if c.action == action]
        assert ids == getattr(goal_plan, part)["id"].to_pylist()
    changed = {c.row_id: c for c in goals}
    for row in goal_plan.updates.to_pylist():
        assert changed[row["id"]].after["title"] == row["title"]
        assert changed[row["id"]].before is not None
    assert all(c.after is None for c in goals if c.action == "delete")
    refs = [c for c in listed if c.table == "ExternalRef"]
    assert {c.action for c in refs} == {"create", "update"}
    assert sum(counts.values()) == len(listed)

    undo_import(database, job_id)
    assert dump(engine) == before
    assert external_refs(engine) == refs_before


def test_a_journal_of_one_record_per_row_is_still_undone(sqlite_url, storage):
    """An import applied before migration 0009: its journal spread back into one record
    per row by the downgrade, then the upgrade; the undo reads it and restores exactly."""
    database = AppDatabase(url=sqlite_url)
    engine = database.engine
    user_id = populate(engine, 1, 67)[0]
    before, refs_before = dump(engine), external_refs(engine)
    job_id, _ = import_file(
        database, storage, user_id, todoist_csv(TODOIST_V1), file_name=TODOIST_NAME
    )
    with engine.connect() as conn:
        listed = import_changes(conn, job_id)
    assert len(listed) == 2 * 7  # five tasks, the project and the module, and their refs
    engine.dispose()

    downgrade(sqlite_url, "0007_user_names")
    with engine.connect() as conn:
        spread = conn.execute(
            sa.text('SELECT "rowId" FROM "ImportChange" WHERE "importJobId" = :j ORDER BY id'),
            {"j": job_id},
        ).scalars()
        assert list(spread) == [c.row_id for c in listed]
    engine.dispose()
    upgrade(sqlite_url)

    assert {count for *_, count, _ in journal_records(engine, job_id)} == {1}
    with engine.connect() as conn:
        assert import_changes(conn, job_id) == listed
    undo_import(database, job_id)
    assert dump(engine) == before
    assert external_refs(engine) == refs_before
    engine.dispose()
