"""Rows as compact JSON text: the before and after of every row an import touches.

`ImportChange` stores each row as JSON with the values the export formats write (ISO
times, decimals as text), and undo compares the row as it is now with the stored text, so
both sides must be written by the same code, byte for byte: this module.
"""

from __future__ import annotations

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from assets.formats.common import as_export_text


def rows_as_json(table: pa.Table) -> list[str]:
    """Each row as compact JSON with export-format values: ImportChange's before/after."""
    return rows_json_array(table).to_pylist()


# what orjson escapes in a string; any other character it writes as it is
_JSON_ESCAPED = r'["\\\x00-\x1f]'


def rows_json_array(table: pa.Table) -> pa.StringArray:
    """`rows_as_json` as one Arrow array, joined column by column rather than row by row:
    byte for byte what orjson writes for each row as a dict of its export values."""
    if table.num_rows == 0:
        return pa.array([], pa.string())
    pieces = []
    for i, name in enumerate(table.column_names):
        pieces.append(("{" if i == 0 else ",") + orjson.dumps(name).decode() + ":")
        pieces.append(_json_values(as_export_text(table[name])))
    return pc.binary_join_element_wise(*pieces, "}", "")


def _json_values(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value of the column as JSON text (as orjson writes it)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_integer(t):
        text = column.cast(pa.string())
    elif pa.types.is_boolean(t):
        text = pc.if_else(column, "true", "false")
    elif pa.types.is_string(t):
        text = pc.binary_join_element_wise('"', column, '"', "")
        escaped = pc.fill_null(pc.match_substring_regex(column, _JSON_ESCAPED), False)
        if pc.any(escaped).as_py():
            written = [orjson.dumps(v).decode() for v in column.filter(escaped).to_pylist()]
            text = pc.replace_with_mask(text, escaped, pa.array(written, pa.string()))
    else:
        return pa.array([orjson.dumps(v).decode() for v in column.to_pylist()], pa.string())
    return pc.fill_null(text, "null")
