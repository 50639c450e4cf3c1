"""Transitional: the CSV and zip helpers' old import path, for modules outside the formats
branch.

They now live in `assets.formats.csv`, `assets.formats.excel_csv` and
`assets.formats.zip_archive`. This module only keeps `assets/gdpr` (and its tests)
importing while it is split on another branch; delete it once their imports name those
modules.
"""

from assets.formats.csv import (
    build_datapackage,
    csv_bytes,
    csv_text_bytes,
    csv_text_table,
    declared_references,
)
from assets.formats.excel_csv import (
    EXCEL_ESCAPE_PREFIX,
    EXCEL_ESCAPE_TRIGGERS,
    UTF8_BOM,
    excel_escape,
)
from assets.formats.zip_archive import write_zip

__all__ = [
    "EXCEL_ESCAPE_PREFIX",
    "EXCEL_ESCAPE_TRIGGERS",
    "UTF8_BOM",
    "build_datapackage",
    "csv_bytes",
    "csv_text_bytes",
    "csv_text_table",
    "declared_references",
    "excel_escape",
    "write_zip",
]
