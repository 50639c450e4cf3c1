"""The public template catalog in object storage, and the sensor that keeps it current.

`templates/catalog/index.json` lists every public template (categories, tags, versions,
download counts, rating) and `templates/catalog/<templateKey>/v<N>.json` holds each public
version's template file, so the app and third parties can browse and fetch templates
without database access. A sensor fingerprints the public GoalTemplate rows (count, newest
change, downloads, ratings) and asks for a rebuild only when that fingerprint moves.
"""

import json

import dagster as dg

from assets.templates.catalog import catalog_fingerprint, rebuild_catalog
from assets.templates.template_file import TemplateFormatError, load_template
from resources import run_policy
from resources.database import AppDatabase
from resources.storage import ObjectStorage
from resources.storage_layout import catalog_index_key


@dg.asset(
    group_name="templates",
    kinds={"postgres", "json", "s3"},
    retry_policy=run_policy.io_retry_policy(),
)
def template_catalog(
    context: dg.AssetExecutionContext, database: AppDatabase, storage: ObjectStorage
) -> dg.MaterializeResult:
    """The public template catalog: an index of every public template and one file per
    public version, rebuilt from the GoalTemplate rows; unpublished versions are removed."""
    result = rebuild_catalog(database.engine, storage)
    context.log.info(
        f"catalog of {result.templates} templates ({result.versions} versions): "
        f"{len(result.files_written)} files written, {len(result.files_deleted)} removed"
    )
    return dg.MaterializeResult(
        metadata={
            "templates": result.templates,
            "versions": result.versions,
            "index_url": dg.MetadataValue.url(result.index_url),
            "index_bytes": result.index_bytes,
            "files_written": len(result.files_written),
            "files_deleted": len(result.files_deleted),
            "fingerprint": result.fingerprint,
        }
    )


@dg.asset_check(asset=template_catalog)
def template_catalog_files_valid(storage: ObjectStorage) -> dg.AssetCheckResult:
    """Every version file the index names exists and is a valid template file, so a
    download link in the catalog never leads to nothing or to a broken plan."""
    index = json.loads(storage.read_bytes(catalog_index_key()))
    problems = []
    files = [v["file"] for t in index["templates"] for v in t["versions"]]
    for key in files:
        if not storage.exists(key):
            problems.append(f"{key}: missing")
            continue
        try:
            load_template(storage.read_bytes(key), where=key)
        except TemplateFormatError as exc:
            problems.append(str(exc))
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"files": len(files), "problems": dg.MetadataValue.json(problems[:20])},
    )


template_catalog_job = dg.define_asset_job(
    "template_catalog_job",
    selection=dg.AssetSelection.assets(template_catalog),
    executor_def=dg.in_process_executor,
    tags=run_policy.job_tags(run_policy.TEMPLATES),
    description="Rebuild the public template catalog in object storage.",
)


@dg.sensor(
    job=template_catalog_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def template_catalog_sensor(context: dg.SensorEvaluationContext, database: AppDatabase):
    """Rebuild the catalog when the public templates changed since the last rebuild it asked
    for (the cursor holds that fingerprint; the run key makes a repeat harmless)."""
    fingerprint = catalog_fingerprint(database.engine)
    if fingerprint == context.cursor:
        return dg.SkipReason("public templates unchanged since the last catalog rebuild")
    context.update_cursor(fingerprint)
    return dg.RunRequest(run_key=f"template-catalog-{fingerprint}")


defs = dg.Definitions(
    assets=[template_catalog],
    asset_checks=[template_catalog_files_valid],
    jobs=[template_catalog_job],
    sensors=[template_catalog_sensor],
)
