"""The Parquet export: one Parquet file per table (`<Table>.parquet`), zipped.

Parquet carries the exact Arrow schema for data tools (pandas, DuckDB, Spark): decimals,
timestamps and dates keep their types, nothing travels as text. Each file's key-value
metadata says what it is (`goalport.format`, version, user, export time, filters), which is
how import detection recognises it. The reader gives the tables back exactly and refuses a
file whose columns or types differ from the app's schema, naming the file and field.
"""

from __future__ import annotations

import io

import orjson
import pyarrow as pa

from assets.formats.common import (
    TABLE_NAMES,
    ExportStamp,
    check_required_values,
    conform_table,
    export_renderer,
    json_default,
    sort_by_id,
    upgrade_legacy_user,
)
from assets.formats.zip_archive import open_zip, write_zip, zip_member
from resources.schema import APP_ARROW_SCHEMAS


@export_renderer
def render_parquet_zip(prepared: dict[str, pa.Table], stamp: ExportStamp) -> bytes:
    """A zip of one Parquet file per table (`<Table>.parquet`) with the exact Arrow schema."""
    import pyarrow.parquet as pq  # ~30 ms to import: only when Parquet is made or read

    # `goalport.<field>`: text as it is; the version and the filters as JSON
    file_metadata = {
        f"goalport.{field}".encode(): (
            value.encode() if isinstance(value, str) else orjson.dumps(value, default=json_default)
        )
        for field, value in stamp.header().items()
    }
    entries = []
    for name, table in prepared.items():
        sink = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(file_metadata), sink)
        entries.append((f"{name}.parquet", sink.getvalue()))
    return write_zip(entries, stamp.exported_at, deflate=False)


def read_parquet_zip(data: bytes) -> dict[str, pa.Table]:
    """The tables of a goalport Parquet zip."""
    import pyarrow.parquet as pq

    archive = open_zip(data, "Parquet export")
    tables = {}
    for name in TABLE_NAMES:
        file_name = f"{name}.parquet"
        raw = zip_member(archive, file_name, "Parquet export")
        try:
            table = pq.read_table(pa.BufferReader(raw))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{file_name}: not a readable Parquet file: {exc}") from exc
        table = conform_table(
            upgrade_legacy_user(table.replace_schema_metadata(None), name),
            APP_ARROW_SCHEMAS[name],
            file_name,
        )
        check_required_values(table, file_name)
        tables[name] = sort_by_id(table, file_name)
    return tables
