"""The column-wise helpers the import's hot paths use give exactly what the row-by-row
versions gave: local ids derived from external keys (stored ids depend on them), and
ImportChange's JSON texts (undo compares them byte for byte)."""

import datetime as dt
from decimal import Decimal

import orjson
import pyarrow as pa

from assets.formats.common import as_export_text
from assets.imports.row_json import rows_as_json, rows_json_array
from assets.imports.staging import derived_id, derived_ids

# ids the one-key-at-a-time implementation derived for these keys (seed "job9", Goal)
KNOWN_IDS = {
    "trello:card:2": "cj9jaakev854auccwt83v4z4f",
    "todoist:task:0123456789abcdef0123": "ckgfe6p3l0s0lg6ccwldr0noi",
    "": "cw3hsdv7zpfn7h7d584t97u8t",
    "é東京😀": "c8r5etfkzqtyqqvecb8vvba06",
}


def test_derived_ids_are_the_ids_derived_before():
    keys = list(KNOWN_IDS)
    assert derived_ids("job9", "Goal", keys).to_pylist() == list(KNOWN_IDS.values())
    assert [derived_id("job9", "Goal", k) for k in keys] == list(KNOWN_IDS.values())
    assert derived_ids("job8", "Goal", keys[:1]).to_pylist() != list(KNOWN_IDS.values())[:1]
    assert derived_ids("job9", "Goal", []).to_pylist() == []


def test_rows_json_is_what_orjson_writes_for_each_row():
    texts = ['a"b', "back\\slash", "two\nlines", "tab\t", "\x00", "\x1f", "\x7f", "\u2028"]
    texts += ["😀 東京", "", None, '\\"', "é\r\n", "plain"]
    n = len(texts)
    table = pa.table(
        {
            "text": pa.array(texts),
            "number": pa.array(range(-7, n - 7), pa.int32()),
            "flag": pa.array([True, False, None, True, False, None, True] * 2),
            "amount": pa.array([Decimal("1.50"), None] * 7, pa.decimal128(12, 2)),
            "day": pa.array([dt.date(2024, 1, 2), None] * 7, pa.date32()),
            "at": pa.array(
                [dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=dt.UTC), None] * 7,
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    table = pa.concat_tables([table, table.slice(3)])  # several chunks
    columns = [as_export_text(table[name]).to_pylist() for name in table.column_names]
    expected = [
        orjson.dumps(dict(zip(table.column_names, values, strict=True))).decode()
        for values in zip(*columns, strict=True)
    ]
    assert rows_as_json(table) == expected
    assert rows_json_array(table).to_pylist() == expected
    assert rows_as_json(table.slice(0, 0)) == []
