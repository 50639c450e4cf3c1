"""Transitional: the readers' old import path, for modules outside the formats branch.

Each format's reader now lives in its own module beside its renderer, and callers look
them up in `assets.formats.registry` (`reader_of(fmt)`, `FORMATS[fmt].read`). This module
only keeps `assets/backups` and `assets/gdpr` (and their tests) importing while they are
split on other branches; delete it once their imports name the format modules.
"""

from assets.formats.csv import read_csv_zip, read_table_csv
from assets.formats.json import read_json_export, read_json_exports
from assets.formats.parquet import read_parquet_zip
from assets.formats.xlsx import read_xlsx_export

__all__ = [
    "read_csv_zip",
    "read_json_export",
    "read_json_exports",
    "read_parquet_zip",
    "read_table_csv",
    "read_xlsx_export",
]
