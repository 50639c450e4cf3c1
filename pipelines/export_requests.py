"""The export request area's definitions: the batching sensor, the run-failure sensor and
the daily expiry job. The export job they drive is the export area's `export_job`."""

import dagster as dg

from pipelines.schedules import expire_exports_job, expire_exports_schedule
from pipelines.sensors import export_request_sensor, export_run_failure_sensor

defs = dg.Definitions(
    jobs=[expire_exports_job],
    schedules=[expire_exports_schedule],
    sensors=[export_request_sensor, export_run_failure_sensor],
)
