"""Export renderers: one user's tables (Arrow) in, the bytes of one export file out.

This is the public entry point; each format lives in its own module. Every renderer takes
`tables` (app table name -> `pa.Table` with exactly APP_ARROW_SCHEMAS; a missing table
counts as empty) and the keyword options `user_id`, `exported_at` and `filters`, and is
pure: no I/O, no Dagster, the same input gives the same bytes. `assets.formats.readers` holds the
exact inverse of each.
"""

from __future__ import annotations

from assets.formats.json import (
    EXPORT_JSON_SCHEMA_PATH,
    build_export_json_schema,
    render_json,
)
from assets.formats.tabular import render_csv_excel_zip, render_csv_zip, render_parquet_zip
from assets.formats.xlsx import render_xlsx

# format name -> renderer; the names are those of `goalport export --format`
RENDERERS = {
    "json": render_json,
    "csv": render_csv_zip,
    "csv-excel": render_csv_excel_zip,
    "xlsx": render_xlsx,
    "parquet": render_parquet_zip,
}

__all__ = [
    "EXPORT_JSON_SCHEMA_PATH",
    "RENDERERS",
    "build_export_json_schema",
    "render_csv_excel_zip",
    "render_csv_zip",
    "render_json",
    "render_parquet_zip",
    "render_xlsx",
]
