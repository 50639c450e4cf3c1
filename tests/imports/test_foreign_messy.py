"""Messy exports of every supported app (tests/imports/messy_exports.py) through the whole
import on a real PostgreSQL database: the preview passes the quality gate (no row of the
file is invalid: adjusted rows are not), the apply writes every item, the adjustments are
in the preview stored on the job and printed by `goalport import`, the same file again
changes nothing, and an edited file updates exactly the item that changed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from import_support import import_file, populate
from messy_exports import all_messy_exports
from test_foreign_reimport import goals_by_title, updated_fields, written

from assets.imports.jobs import get_import_job
from assets.imports.preview import TooManyBadRowsError
from pipelines.cli.main import main

MESSY = all_messy_exports()


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(MESSY))
def test_messy_export_imports_once_and_reimports_only_what_changed(database, storage, case):
    export = MESSY[case]
    engine = database.engine
    user_id = populate(engine, 1, 90)[0]
    # a file with a row that cannot be mapped is accepted once that row is within the share
    tolerance = {"max_bad_share": 0.2}
    job_id, first = import_file(
        database, storage, user_id, export.data, file_name=export.file_name, **tolerance
    )
    job = get_import_job(engine, job_id)
    assert job["status"] == "applied", job["errorMessage"]
    assert first.counts["Goal"]["invalid"] == 0
    goals = goals_by_title(engine, user_id, export.app)
    assert set(export.items) <= set(goals)

    preview = json.loads(job["previewData"])
    reported = [a for e in preview["file"]["report"] for a in e.get("adjustments", [])]
    for expected in export.adjustments:
        # times the file writes without a zone are read in the user's: compare the words
        assert any(a.startswith(expected.split(" (")[0]) for a in reported), expected
    assert preview["file"]["mapping"]["adjusted"] > 0 or not export.adjustments
    assert preview["file"]["mapping"]["unmappable"] == export.bad_rows

    _, same = import_file(
        database, storage, user_id, export.data, file_name=export.file_name, **tolerance
    )
    assert written(same) == {}
    assert goals_by_title(engine, user_id, export.app) == goals

    _, edited = import_file(
        database, storage, user_id, export.edited, file_name=export.file_name, **tolerance
    )
    changed = goals[export.edited_title]["id"]
    assert written(edited) == {"Goal": {"create": 0, "update": 1, "delete": 0}}
    assert set(updated_fields(edited)) == {changed}
    after = goals_by_title(engine, user_id, export.app)
    untouched = {t: g for t, g in goals.items() if g["id"] != changed}
    assert {t: g for t, g in after.items() if g["id"] != changed} == untouched


def test_adjustments_are_printed_by_goalport_import(database, storage, tmp_path, monkeypatch):
    export = MESSY["todoist_json"]
    user_id = populate(database.engine, 1, 91)[0]
    monkeypatch.setenv("GOALPORT_DATABASE_URL", database.resolved_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "cli-storage"))
    path = tmp_path / export.file_name
    path.write_bytes(export.data)
    result = CliRunner().invoke(
        main, ["import", str(path), "--user", user_id], input="n\n", catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "adjusted to fit the app's rules" in result.output
    assert (
        "adjusted task 'Buy milk' (items[0]): completed (2024-02-01T09:00:00Z) before it was "
        "created (2024-02-10T08:00:00Z): createdAt moved to the earliest known time of the item"
    ) in result.output


def test_unmappable_rows_count_toward_max_bad_rows(database, storage):
    export = MESSY["habitica"]  # one to-do of eight has no id at all
    user_id = populate(database.engine, 1, 92)[0]
    with pytest.raises(TooManyBadRowsError) as refused:
        import_file(database, storage, user_id, export.data, file_name=export.file_name)
    assert "1 of 8 rows (12.5%) are invalid" in str(refused.value)
    assert "1 rows could not be mapped" in str(refused.value)
