"""The export area's Dagster definitions: the export job and its assets (`assets.py`), the
request sensor that batches queued `DataExportJob` rows into runs and the run-failure
sensor (`sensors.py`), and the daily expiry job (`schedules.py`)."""

import dagster as dg

from assets.exports.defs.assets import export_files, export_job, extracted_batch
from assets.exports.defs.schedules import expire_exports_job, expire_exports_schedule
from assets.exports.defs.sensors import export_request_sensor, export_run_failure_sensor
from resources.run_memory import IN_RUN_MEMORY_RESOURCES

defs = dg.Definitions(
    assets=[extracted_batch, export_files],
    jobs=[export_job, expire_exports_job],
    schedules=[expire_exports_schedule],
    sensors=[export_request_sensor, export_run_failure_sensor],
    resources=IN_RUN_MEMORY_RESOURCES,
)
