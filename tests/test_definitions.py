"""The code location loads, and the export job runs for real: a Dagster instance, the test
PostgreSQL database, files in a temporary folder."""

import json
from pathlib import Path

import dagster as dg
import pytest

from assets.exports.defs import ExportConfig, export_job
from pipelines.definitions import defs
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from synthetic.seed import seed_database


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


@pytest.mark.slow
def test_export_job_writes_every_users_files_and_reports_metadata(pg_url, tmp_path):
    seed_database(pg_url, 4, seed=2, heavy_every=0)
    users = AppDatabase(url=pg_url).all_user_ids()[:3]
    storage = ObjectStorage(url=str(tmp_path))
    job = defs.resolve_job_def(export_job.name)
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            run_config=dg.RunConfig(
                ops={
                    "extracted_batch": ExportConfig(
                        user_ids=[*users, "ghost"], formats=["json", "csv"]
                    )
                }
            ),
            resources={"database": AppDatabase(url=pg_url), "storage": storage},
            instance=instance,
        )
        instance_files = [p for p in Path(instance.root_directory).rglob("*") if p.is_file()]
        instance_bytes = b"".join(p.read_bytes() for p in instance_files)
    assert result.success
    keys = storage.list("exports")
    assert sorted({k.split("/")[1] for k in keys}) == sorted(users)
    assert len(keys) == 2 * len(users)
    extract_meta = result.asset_materializations_for_node("extracted_batch")[0].metadata
    assert extract_meta["users"].value == 3
    assert extract_meta["missing_users"].value == ["ghost"]
    files_meta = result.asset_materializations_for_node("export_files")[0].metadata
    assert files_meta["files"].value == 6
    assert files_meta["bytes"].value == sum(len(storage.read_bytes(k)) for k in keys)
    assert sorted(files_meta["uris"].value) == sorted(storage.object_url(k) for k in keys)
    document = json.loads(storage.read_bytes(next(k for k in keys if k.endswith(".json"))))
    assert document["format"] == "goalport.export"
    # the instance's disk holds no copy of the users' data (the default IO manager would
    # have pickled the whole extracted batch there, e-mail addresses included)
    email = document["user"]["email"].encode()
    assert instance_files and email and email not in instance_bytes
