"""The Excel-safe CSV flavour: what makes goalport's CSV safe to open in a spreadsheet, and
its exact reverse.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula (CSV
injection), and reads a file without a byte-order mark in the system's code page. The
Excel flavour therefore starts with a UTF-8 BOM and writes every string value that starts
with a trigger with an apostrophe before it; values that start with an apostrophe are
escaped too, which makes "drop one leading apostrophe" the exact reverse.

It is a flavour of the CSV export, not a format of its own: the same zip of one file per
table, the same `datapackage.json` (whose `goalport.csvFlavour` says which flavour, and
whose `excelEscaping` states these rules for third parties), read back by the one CSV reader
(`assets.formats.csv`, which also holds `render_csv_excel_zip`). It is what the export
format `csv` writes, since that is the zip people download and open; the plain flavour is
`csv-machine`. The GDPR bundle carries both. Pure: Arrow columns in, Arrow columns out.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

EXCEL_FLAVOUR = "excel"
UTF8_BOM = b"\xef\xbb\xbf"
EXCEL_ENCODING = "utf-8-sig"  # the data package's name for UTF-8 after a BOM

# A text cell starting with one of these is written with a leading apostrophe, so a
# spreadsheet never runs it as a formula.
EXCEL_ESCAPE_PREFIX = "'"
EXCEL_ESCAPE_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "'")
_EXCEL_ESCAPE_REGEX = "^([=+\\-@\t\r\n'])"


def excel_escape(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The string column with the prefix before every value that starts with a trigger."""
    if not pc.any(pc.match_substring_regex(column, _EXCEL_ESCAPE_REGEX)).as_py():
        return column  # ids and most text: nothing to escape, no copy
    return pc.replace_substring_regex(
        column, pattern=_EXCEL_ESCAPE_REGEX, replacement=EXCEL_ESCAPE_PREFIX + "\\1"
    )


def excel_unescape(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The reverse of `excel_escape`: one leading prefix removed from every value."""
    return pc.replace_substring_regex(
        column, pattern="^" + re.escape(EXCEL_ESCAPE_PREFIX), replacement="", max_replacements=1
    )


def excel_escaping_description() -> dict:
    """The escaping rules as the data package states them (`goalport.excelEscaping`)."""
    return {
        "appliesTo": "every non-null value of every string field",
        "prefix": EXCEL_ESCAPE_PREFIX,
        "triggers": list(EXCEL_ESCAPE_TRIGGERS),
        "rule": "a value starting with one of the triggers is written with the prefix before it",
        "reverse": "remove the first character of every string value that starts with the prefix",
    }
