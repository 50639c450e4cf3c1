"""Proof that an export file holds everything that was extracted for its user.

Each file is read with goalport's own reader for its format (`assets.formats.registry`) and
compared, table by table, with the Arrow tables it was rendered from: the number of rows,
and a checksum of the content. Then the copy in storage is read back and must be the same
file, byte for byte (SHA-256), so what was checked is what is handed out. "100% export
accuracy" is this check passing for every file of every run; its result is recorded with
the export (`ExportedFile.completeness`).

The checksum is SHA-256 over a canonical text of the table: its column names, then its
rows in id order, each value as `<byte length>:<text>` (Arrow's cast to text; timestamps
and dates as their ticks since the epoch) and a null as `-`, so an empty string and a null differ and no text can pass for two values.
Two tables get the same checksum exactly when they hold the same rows with the same
values, however they were produced. `batch_checksums` computes it for every user of a
batch at once (one sort and one text conversion per table, then a hash per user's rows):
per user, thousands of tiny tables would cost more than reading the files back.

Pure: no Dagster, no storage; the caller passes the bytes it read back.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.formats.registry import export_format
from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES, owner_column, table_or_empty


def _conformed(table: pa.Table, table_name: str) -> pa.Table:
    schema = APP_ARROW_SCHEMAS[table_name]
    return table if table.schema.equals(schema) else table.select(schema.names).cast(schema)


def _header(table_name: str) -> bytes:
    return ("|".join(APP_ARROW_SCHEMAS[table_name].names) + "\n").encode()


def _row_texts(table: pa.Table) -> pa.Array:
    """One canonical text per row (see the module docstring), as one large_string array."""
    colon, bar, null = (pa.scalar(c, pa.large_string()) for c in (":", "|", "-"))
    fields = []
    for column in table.columns:
        if pa.types.is_temporal(column.type):
            # Ticks since the epoch: exact, and far cheaper to print than ISO text.
            column = column.cast(pa.int64() if pa.types.is_timestamp(column.type) else pa.int32())
        text = column.cast(pa.large_string())
        size = pc.cast(pc.binary_length(text), pa.large_string())
        fields.append(pc.fill_null(pc.binary_join_element_wise(size, text, colon), null))
    rows = pc.binary_join_element_wise(*fields, bar)
    return rows.combine_chunks() if isinstance(rows, pa.ChunkedArray) else rows


def _row_bytes(rows: pa.Array) -> tuple[np.ndarray, memoryview]:
    """The rows' text offsets (one more than rows) and the bytes they index."""
    if len(rows) == 0:
        return np.zeros(1, dtype=np.int64), memoryview(b"")
    _, offsets, data = rows.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[rows.offset : rows.offset + len(rows) + 1]
    return offsets, memoryview(data)


def table_checksum(table: pa.Table, table_name: str) -> str:
    """`sha256:<hex>` of the table's canonical content (see the module docstring)."""
    table = _conformed(table, table_name)
    rows = _row_texts(table)
    if table.num_rows > 1:
        rows = rows.take(pc.sort_indices(table["id"]))
    offsets, data = _row_bytes(rows)
    digest = hashlib.sha256(_header(table_name))
    digest.update(data[offsets[0] : offsets[-1]])
    return "sha256:" + digest.hexdigest()


def table_checksums(tables: Mapping[str, pa.Table]) -> dict[str, str]:
    """The checksum of every app table of one user's data (a missing table is empty)."""
    return {name: table_checksum(table_or_empty(tables, name), name) for name in APP_TABLE_NAMES}


def batch_checksums(
    tables: Mapping[str, pa.Table], user_ids: Iterable[str]
) -> dict[str, dict[str, str]]:
    """user id -> `table_checksums` of that user's rows, for a whole batch at once."""
    users = list(user_ids)
    result: dict[str, dict[str, str]] = {u: {} for u in users}
    for name in APP_TABLE_NAMES:
        owner = owner_column(name)
        empty = "sha256:" + hashlib.sha256(_header(name)).hexdigest()
        table = tables.get(name)
        table = _conformed(table, name) if table is not None else None
        if table is None or table.num_rows == 0:
            for u in users:
                result[u][name] = empty
            continue
        # Rows grouped by user, in id order within each: sort the ids, then (stably) the users.
        by_id = pc.sort_indices(table["id"]).to_numpy()
        codes = pc.dictionary_encode(table[owner].combine_chunks())
        owners = codes.dictionary.to_pylist()
        code = codes.indices.to_numpy(zero_copy_only=False)
        order = by_id[np.argsort(code[by_id], kind="stable")]
        offsets, data = _row_bytes(_row_texts(table).take(pa.array(order)))
        code = code[order]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(code)) + 1))
        ends = np.append(starts[1:], len(code))
        found = {}
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            digest = hashlib.sha256(_header(name))
            digest.update(data[offsets[start] : offsets[end]])
            found[owners[code[start]]] = "sha256:" + digest.hexdigest()
        for u in users:
            result[u][name] = found.get(u, empty)
    return result


def check_export_completeness(
    data: bytes,
    fmt: str,
    expected: Mapping[str, pa.Table],
    *,
    expected_checksums: Mapping[str, str] | None = None,
) -> dict:
    """Compare an export file's bytes with the tables it was made from.

    Returns a JSON-ready dict: `passed`; `verified` (False for formats without a reader,
    e.g. the HTML report, which is for reading and whose data the other formats carry);
    the file's `sha256`; `rows` and `expected_rows`; per-table counts and checksums; and
    `problems` saying what is missing or different. `expected_checksums` (from
    `table_checksums(expected)`) saves recomputing them for each format of one user."""
    started = time.perf_counter()
    result = _compare_with_extracted(
        data, fmt, export_format(fmt).read, expected, expected_checksums
    )
    result["seconds"] = round(time.perf_counter() - started, 4)
    return result


def check_exports_completeness(
    files: Sequence[bytes],
    fmt: str,
    expected: Sequence[Mapping[str, pa.Table]],
    expected_checksums: Sequence[Mapping[str, str] | None],
) -> list[dict]:
    """`check_export_completeness` for several files of one format (one per user), reading
    them together where the format can (`ExportFormat.read_many`): the same results, faster."""
    read_many = export_format(fmt).read_many

    def one_by_one() -> list[dict]:
        return [
            check_export_completeness(data, fmt, tables, expected_checksums=sums)
            for data, tables, sums in zip(files, expected, expected_checksums, strict=True)
        ]

    if read_many is None or len(files) < 2:
        return one_by_one()
    started = time.perf_counter()
    try:
        found = read_many(files)
    except ValueError:
        return one_by_one()  # one of them is unreadable: each result says its own
    seconds = (time.perf_counter() - started) / len(files)
    results = []
    for data, tables, sums, read in zip(files, expected, expected_checksums, found, strict=True):
        started = time.perf_counter()
        result = _compare_with_extracted(data, fmt, lambda _data, read=read: read, tables, sums)
        result["seconds"] = round(seconds + time.perf_counter() - started, 4)
        results.append(result)
    return results


def _compare_with_extracted(data, fmt, reader, expected, expected_checksums) -> dict:
    result: dict = {"format": fmt, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if reader is None:
        return {**result, "verified": False, "passed": True, "note": f"no reader for {fmt}"}
    try:
        found = reader(data)
    except ValueError as exc:
        return _failed(result, f"the file cannot be read back: {exc}")

    tables, problems = {}, []
    for name in APP_TABLE_NAMES:
        want = table_or_empty(expected, name)
        got = found.get(name)
        if got is None:
            problems.append(f"{name}: missing from the file ({want.num_rows} rows expected)")
            tables[name] = {"rows": 0, "expected_rows": want.num_rows, "ok": False}
            continue
        want_sum = (expected_checksums or {}).get(name) or table_checksum(want, name)
        # Equal tables have equal checksums; hashing the file's side is needed only when
        # the tables differ in layout (row order, chunks, nullability) or in content.
        same = got.num_rows == want.num_rows and got.equals(want)
        got_sum = want_sum if same else table_checksum(got, name)
        ok = got.num_rows == want.num_rows and got_sum == want_sum
        tables[name] = {
            "rows": got.num_rows,
            "expected_rows": want.num_rows,
            "checksum": got_sum,
            "ok": ok,
        }
        if got.num_rows != want.num_rows:
            problems.append(f"{name}: {got.num_rows} rows in the file, {want.num_rows} extracted")
        elif not ok:
            problems.append(f"{name}: same number of rows, but the content differs (checksum)")
    return {
        **result,
        "verified": True,
        "passed": not problems,
        "rows": sum(t["rows"] for t in tables.values()),
        "expected_rows": sum(t["expected_rows"] for t in tables.values()),
        "tables": tables,
        "problems": problems,
    }


def confirm_stored_copy(completeness: Mapping, stored: bytes) -> dict:
    """`completeness` (of the bytes that were checked), confirmed against the bytes read
    back from storage: they must be the same file, byte for byte."""
    actual = hashlib.sha256(stored).hexdigest()
    confirmed = {**completeness, "stored_sha256": actual, "stored_bytes": len(stored)}
    if actual == completeness["sha256"]:
        return confirmed
    problem = (
        f"the stored file is not the file that was checked ({len(stored)} bytes stored, "
        f"{completeness['bytes']} checked; sha256 {actual[:12]}... vs "
        f"{completeness['sha256'][:12]}...)"
    )
    return {
        **confirmed,
        "passed": False,
        "problems": [*completeness.get("problems", []), problem],
    }


def _failed(result: dict, problem: str) -> dict:
    return {**result, "verified": True, "passed": False, "problems": [problem]}


def describe_completeness_failure(completeness: Mapping) -> str:
    """One line for a person: which format and what is wrong with it."""
    problems = "; ".join(completeness.get("problems") or ["unknown problem"])
    return f"{completeness.get('format')} export incomplete: {problems}"
