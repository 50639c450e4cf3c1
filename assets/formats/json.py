"""The JSON export: one versioned document per user, and the JSON Schema that describes it.

The document nests what people think of together (each goal holds its progress and its
sub-goals) and keeps every other table as a flat array under its table name, so a third
party can read it with nothing but a JSON parser and the published schema
(`assets/formats/schemas/export-v1.schema.json`). Values that JSON cannot hold exactly
travel as text (see `assets.formats.common`): decimals with their scale, ISO timestamps and
dates. The reader flattens the document back into the app's tables, exactly, and names the
JSON path of anything wrong.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from assets.formats.common import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TABLE_NAMES,
    ExportStamp,
    as_export_text,
    column_from_values,
    export_renderer,
    format_timestamp,
    json_default,
    raise_key_mismatch,
    sort_by_id,
    upgrade_legacy_user_row,
)
from resources.schema import APP_ARROW_SCHEMAS, empty_table

EXPORT_JSON_SCHEMA_PATH = Path(__file__).parent / "schemas" / "export-v1.schema.json"
EXPORT_JSON_SCHEMA_ID = "urn:goalport:schema:export-v1"

# Tables the document holds under their own keys; every other table is a flat array
# keyed by its table name.
NESTED_TABLES = ("User", "Module", "Goal", "Progress")
FLAT_TABLES = tuple(n for n in TABLE_NAMES if n not in NESTED_TABLES)

# Sub-goals nest at most this deep (the app uses three levels); deeper ones, and goals in a
# parent cycle, continue as top-level goals: their parentGoalId still says where they belong,
# and no JSON parser meets a nesting limit.
MAX_GOAL_DEPTH = 64


@export_renderer
def render_json(prepared: dict[str, pa.Table], stamp: ExportStamp) -> bytes:
    """One user's data as a goalport JSON export document (UTF-8 bytes)."""
    # JSON text as UTF-8 bytes throughout: joining Python str of mixed widths (one emoji
    # makes a whole string four bytes per character) would cost more than everything else
    texts = {name: json_object_texts(table) for name, table in prepared.items()}
    return json_document(prepared, texts, stamp)


def json_document(
    prepared: Mapping[str, pa.Table], texts: Mapping[str, pa.Array], stamp: ExportStamp
) -> bytes:
    """The document from prepared tables (`prepare_export_tables`) and each table's rows as
    JSON object texts (`json_object_texts`, in the same order), made once elsewhere."""
    header = orjson.dumps(
        {  # the published document's order, which is not `stamp.header()`'s
            "format": FORMAT_NAME,
            "formatVersion": FORMAT_VERSION,
            "exportedAt": format_timestamp(stamp.exported_at),
            "userId": stamp.user_id,
            "filters": stamp.filters,
        },
        default=json_default,
    )
    goals, unattached = goal_tree_json(
        prepared["Goal"], texts["Goal"], prepared["Progress"], texts["Progress"]
    )
    parts = [
        header[:-1],  # the object stays open for the data that follows
        b',"user":',
        texts["User"][0].as_py() if len(texts["User"]) else b"null",
        b',"modules":',
        json_array(texts["Module"]),
        b',"goals":',
        *goals,
        b',"unattachedProgress":',
        json_array(unattached),
    ]
    for name in FLAT_TABLES:
        parts += [f',"{name}":'.encode(), json_array(texts[name])]
    parts.append(b"}\n")
    return b"".join(parts)


# ---------------------------------------------------------------- JSON text with Arrow
#
# Each row becomes its JSON object text through Arrow string kernels, column by column,
# instead of a Python dict per row: the same JSON (RFC 8259) several times faster.

# Below this many rows a table is cheaper through orjson, row by row: each Arrow kernel
# call has a fixed cost. Both paths write the same bytes (orjson's compact JSON).
ARROW_TEXT_MIN_ROWS = 1000

_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def json_string_texts(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Each string as a JSON string literal (quoted and escaped); null as `null`."""
    if not _matches(column, r'[\\"\x00-\x1f]'):  # ids and most text: nothing to escape
        return _quoted(column)
    text = pc.replace_substring(column, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    if _matches(text, r"[\x00-\x1f]"):
        for char in "\n\r\t":  # the usual ones first: often no other pass is needed
            text = pc.replace_substring(text, char, _SHORT_ESCAPES[char])
        if _matches(text, r"[\x00-\x1f]"):
            for code in range(32):
                char = chr(code)
                text = pc.replace_substring(text, char, _SHORT_ESCAPES.get(char, f"\\u{code:04x}"))
    return _quoted(text)


def _matches(text: pa.Array | pa.ChunkedArray, pattern: str) -> bool:
    return bool(pc.any(pc.match_substring_regex(text, pattern)).as_py())


def _quoted(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    return pc.fill_null(pc.binary_join_element_wise('"', text, '"', ""), "null")


def json_value_texts(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Each value as JSON text: strings, ISO times and exact decimals quoted; null as `null`."""
    t = column.type
    if pa.types.is_string(t):
        return json_string_texts(column)
    if pa.types.is_boolean(t) or pa.types.is_integer(t):
        return pc.fill_null(column.cast(pa.string()), "null")
    if pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_decimal(t):
        return _quoted(as_export_text(column))  # ISO text and digits: nothing to escape
    raise TypeError(f"no JSON form for {t}")


def json_object_texts(table: pa.Table) -> pa.Array:
    """Each row of the table as a compact JSON object (UTF-8 bytes), fields in schema order."""
    if table.num_rows == 0:
        return pa.array([], pa.binary())
    if table.num_rows < ARROW_TEXT_MIN_ROWS:
        columns = [as_export_text(column) for column in table.columns]
        rows = pa.table(columns, names=table.column_names).to_pylist()
        return pa.array([orjson.dumps(row) for row in rows], pa.binary())
    pieces: list = []
    for i, field in enumerate(table.schema):
        pieces.append(("{" if i == 0 else ",") + orjson.dumps(field.name).decode() + ":")
        pieces.append(json_value_texts(table.column(field.name)))
    pieces.append("}")
    objects = pc.binary_join_element_wise(*pieces, "")
    if isinstance(objects, pa.ChunkedArray):
        objects = objects.combine_chunks()
    return objects.cast(pa.binary())


# Below this many rows, joining row texts in Python beats Arrow's fixed cost per call.
PYTHON_JOIN_MAX_ROWS = 2000


def _join(texts: pa.Array) -> bytes:
    if len(texts) < PYTHON_JOIN_MAX_ROWS:
        return b",".join(texts.to_pylist())
    whole = pa.ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()), texts)
    return pc.binary_join(whole, b",")[0].as_py()


def json_array(texts: pa.Array) -> bytes:
    return b"[" + _join(texts) + b"]"


def goal_tree_json(
    goals: pa.Table, goal_texts: pa.Array, progress: pa.Table, progress_texts: pa.Array
) -> tuple[list[bytes], pa.Array]:
    """The nested goal array's JSON (as pieces), and the texts of progress whose goal is absent.

    Progress can outlive its goal in a selective export (a date range that includes the
    progress but not the goal's creation): it goes to `unattachedProgress`, never lost.
    """
    goal_ids = goals.column("id").to_pylist()
    attached = pc.is_in(
        progress.column("goalId").combine_chunks(), value_set=goals.column("id").combine_chunks()
    )
    progress_of = _progress_by_goal(progress.filter(attached), progress_texts.filter(attached))
    unattached = progress_texts.filter(pc.invert(attached))

    texts = goal_texts.to_pylist()
    parts = [b"["]

    def emit(node: tuple[int, list]) -> None:  # into one flat list: the bytes are copied once
        i, sub_goals = node
        parts.extend(
            (
                texts[i][:-1],  # the goal's own fields, object still open
                b',"progress":[',
                progress_of.get(goal_ids[i], b""),
                b'],"subGoals":[',
            )
        )
        for k, sub_goal in enumerate(sub_goals):
            if k:
                parts.append(b",")
            emit(sub_goal)
        parts.append(b"]}")

    for k, root in enumerate(nest_goals(goal_ids, goals.column("parentGoalId").to_pylist())):
        if k:
            parts.append(b",")
        emit(root)
    parts.append(b"]")
    return parts, unattached


def _progress_by_goal(progress: pa.Table, texts: pa.Array) -> dict[str, bytes]:
    """goal id -> its progress objects' JSON, comma-separated, in id order."""
    if progress.num_rows == 0:
        return {}
    if progress.num_rows < PYTHON_JOIN_MAX_ROWS:
        rows = sorted(
            zip(
                progress.column("goalId").to_pylist(),
                progress.column("id").to_pylist(),  # code point order is UTF-8 byte order
                texts.to_pylist(),
                strict=True,
            )
        )
        grouped: dict[str, list[bytes]] = {}
        for goal_id, _id, text in rows:
            grouped.setdefault(goal_id, []).append(text)
        return {goal_id: b",".join(group) for goal_id, group in grouped.items()}
    order = pc.sort_indices(progress, sort_keys=[("goalId", "ascending"), ("id", "ascending")])
    goal_of_row = progress.column("goalId").combine_chunks().take(order)
    runs = pc.run_end_encode(goal_of_row)
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), runs.run_ends.cast(pa.int32())])
    grouped = pa.ListArray.from_arrays(offsets, texts.take(order))
    joined = pc.binary_join(grouped, b",")
    return dict(zip(runs.values.to_pylist(), joined.to_pylist(), strict=True))


def nest_goals(ids: list[str], parents: list[str | None]) -> list[tuple[int, list]]:
    """Goals (by position, ids sorted) nested by parent: [(index, [sub-goal nodes]), ...].

    A goal whose parent is not in the export, or is itself, is top-level. Deeper than
    MAX_GOAL_DEPTH, or inside a parent cycle, a goal starts a new top-level tree.
    """
    position = {goal_id: i for i, goal_id in enumerate(ids)}
    nodes: list[tuple[int, list]] = [(i, []) for i in range(len(ids))]
    children: dict[int, list[int]] = {}
    roots: list[int] = []
    for i, parent in enumerate(parents):
        p = position.get(parent) if parent is not None else None
        if p is not None and p != i:
            children.setdefault(p, []).append(i)
        else:
            roots.append(i)

    placed: set[int] = set()

    def place(root: int) -> None:
        placed.add(root)
        stack = [(root, 0)]
        while stack:
            i, depth = stack.pop()
            for child in children.get(i, ()):
                if child in placed:
                    continue
                if depth + 1 > MAX_GOAL_DEPTH:
                    roots.append(child)
                    continue
                placed.add(child)
                nodes[i][1].append(nodes[child])
                stack.append((child, depth + 1))

    def place_roots_from(start: int) -> int:
        while start < len(roots):  # place() may add deep sub-goals as new roots
            place(roots[start])
            start += 1
        return start

    done = place_roots_from(0)
    for i in range(len(ids)):
        if i not in placed:  # in a parent cycle: no ancestor is top-level
            roots.append(i)
            done = place_roots_from(done)
    return [nodes[i] for i in sorted(roots)]


# ---------------------------------------------------------------- reading


def read_json_export(data: bytes) -> dict[str, pa.Table]:
    """The tables of a goalport JSON export document."""
    return read_json_exports([data])[0]


def read_json_exports(documents: Sequence[bytes]) -> list[dict[str, pa.Table]]:
    """The tables of several JSON export documents, as `read_json_export` gives them.

    Every document is checked on its own, but each column is built once for all of them
    and each table sorted once: per document, building ~90 small columns costs more than
    the values in them (the completeness check reads a worker's whole share of a batch)."""
    located = [_json_export_rows(data) for data in documents]
    results: list[dict[str, pa.Table]] = [{} for _ in documents]
    for name in TABLE_NAMES:
        schema = APP_ARROW_SCHEMAS[name]
        per_document = [rows[name] for rows, _ in located]
        counts = [len(rows) for rows in per_document]
        if not any(counts):
            for result in results:
                result[name] = empty_table(schema)
            continue
        rows = [row for document_rows in per_document for row in document_rows]
        starts = list(itertools.accumulate(counts, initial=0))

        def locate(i: int, name: str = name, starts: list[int] = starts) -> str:
            document = bisect.bisect_right(starts, i) - 1
            path, index = located[document][1][name][i - starts[document]]
            return f"export.json: {path}" if index < 0 else f"export.json: {path}[{index}]"

        columns = [_json_column(rows, f, locate) for f in schema]
        table = pa.Table.from_arrays(columns, schema=schema)
        if len(documents) == 1:
            results[0][name] = sort_by_id(table, name)
            continue
        for result, start, count in zip(results, starts, counts, strict=False):
            result[name] = sort_by_id(table.slice(start, count), name)
    return results


def _json_column(rows: list[dict], field: pa.Field, locate: Callable[[int], str]) -> pa.Array:
    name = field.name  # read once: `Field.name` makes a new string at every read
    return column_from_values([row[name] for row in rows], field, locate)


def _json_export_rows(data: bytes) -> tuple[dict[str, list[dict]], dict[str, list[tuple]]]:
    """One document's rows per table, and where each came from (a JSON path and index),
    with every row's fields checked against the table's columns."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"export.json: not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ValueError("export.json: expected a JSON object at the top level")
    if document.get("format") != FORMAT_NAME:
        raise ValueError(
            f"export.json: 'format' is {document.get('format')!r}, expected {FORMAT_NAME!r}"
        )
    if document.get("formatVersion") != FORMAT_VERSION:
        raise ValueError(
            f"export.json: formatVersion {document.get('formatVersion')!r} is not supported "
            f"(this goalport reads version {FORMAT_VERSION})"
        )

    rows: dict[str, list[dict]] = {name: [] for name in TABLE_NAMES}
    paths: dict[str, list[tuple[str, int]]] = {name: [] for name in TABLE_NAMES}

    def add(table_name: str, row: object, path: str, index: int) -> None:
        if not isinstance(row, dict):
            raise ValueError(f"export.json: {path}[{index}] is not an object")
        rows[table_name].append(row)
        paths[table_name].append((path, index))

    user = _member(document, "user", (dict, type(None)))
    if user is not None:
        add("User", upgrade_legacy_user_row(user) if isinstance(user, dict) else user, "user", -1)
    for i, row in enumerate(_member(document, "modules", list)):
        add("Module", row, "modules", i)
    for i, row in enumerate(_member(document, "unattachedProgress", list)):
        add("Progress", row, "unattachedProgress", i)
    for name in FLAT_TABLES:
        for i, row in enumerate(_member(document, name, list)):
            add(name, row, name, i)
    _flatten_goals(_member(document, "goals", list), add)

    for name in TABLE_NAMES:
        expected = set(APP_ARROW_SCHEMAS[name].names)
        for row, (path, index) in zip(rows[name], paths[name], strict=True):
            if row.keys() != expected:
                where = f"export.json: {path}" if index < 0 else f"export.json: {path}[{index}]"
                raise_key_mismatch(where, row.keys(), expected)
    return rows, paths


def _member(document: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in document:
        raise ValueError(f"export.json: the document has no {key!r}")
    value = document[key]
    if not isinstance(value, kind):
        expected = "an array" if kind is list else "an object or null"
        raise ValueError(f"export.json: {key!r} must be {expected}")
    return value


def _flatten_goals(goals: list, add: Callable) -> None:
    """Goal and Progress rows out of the nested tree (without recursion: depth is free)."""
    stack = [("goals", goals)]
    while stack:
        path, nodes = stack.pop()
        for i, node in enumerate(nodes):
            if not isinstance(node, dict):
                raise ValueError(f"export.json: {path}[{i}] is not an object")
            here = f"{path}[{i}]"
            progress = node.get("progress")
            sub_goals = node.get("subGoals")
            if not isinstance(progress, list) or not isinstance(sub_goals, list):
                raise ValueError(f"export.json: {here} needs arrays 'progress' and 'subGoals'")
            add(
                "Goal",
                {k: v for k, v in node.items() if k not in ("progress", "subGoals")},
                path,
                i,
            )
            for j, row in enumerate(progress):
                add("Progress", row, f"{here}.progress", j)
            stack.append((f"{here}.subGoals", sub_goals))


# ---------------------------------------------------------------- the published schema


def _field_schema(field: pa.Field) -> dict:
    t = field.type
    schema: dict
    if pa.types.is_timestamp(t):
        schema = {
            "type": "string",
            "format": "date-time",
            "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.(\d{3}|\d{6})Z$",
        }
    elif pa.types.is_date(t):
        schema = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
    elif pa.types.is_decimal(t):
        whole = t.precision - t.scale
        whole_part = "0" if whole == 0 else rf"(0|[1-9]\d{{0,{whole - 1}}})"
        fraction = rf"\.\d{{{t.scale}}}" if t.scale else ""
        schema = {
            "type": "string",
            "pattern": rf"^-?{whole_part}{fraction}$",
            "description": f"exact decimal({t.precision}, {t.scale}) as text",
        }
    elif pa.types.is_boolean(t):
        schema = {"type": "boolean"}
    elif pa.types.is_integer(t):
        bits = t.bit_width
        schema = {"type": "integer", "minimum": -(2 ** (bits - 1)), "maximum": 2 ** (bits - 1) - 1}
    else:
        schema = {"type": "string"}
    if field.nullable:
        schema["type"] = [schema["type"], "null"]
    return schema


def _row_schema(table_name: str, extra: dict | None = None) -> dict:
    fields = APP_ARROW_SCHEMAS[table_name]
    properties = {f.name: _field_schema(f) for f in fields}
    properties.update(extra or {})
    return {
        "type": "object",
        "title": f"A row of {table_name}",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def _array_of(ref: str, description: str) -> dict:
    return {"type": "array", "items": {"$ref": f"#/$defs/{ref}"}, "description": description}


def build_export_json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of a version 1 JSON export document."""
    defs = {name: _row_schema(name) for name in TABLE_NAMES}
    defs["GoalNode"] = _row_schema(
        "Goal",
        {
            "progress": _array_of("Progress", "The goal's progress entries, by id."),
            "subGoals": _array_of("GoalNode", "Goals whose parentGoalId is this goal, by id."),
        },
    )
    defs["GoalNode"]["title"] = "A goal with its progress and sub-goals"
    properties = {
        "format": {"const": FORMAT_NAME},
        "formatVersion": {"const": FORMAT_VERSION},
        "exportedAt": _field_schema(pa.field("exportedAt", pa.timestamp("us", "UTC"), False)),
        "userId": {"type": "string"},
        "filters": {
            "type": ["object", "null"],
            "description": "What the export was limited to (modules, date range); null: all.",
        },
        "user": {"anyOf": [{"$ref": "#/$defs/User"}, {"type": "null"}]},
        "modules": _array_of("Module", "Module rows, by id."),
        "goals": _array_of(
            "GoalNode",
            "Top-level goals, by id: those without a parent in this export (and, rarely, "
            f"goals nested deeper than {MAX_GOAL_DEPTH} levels or in a parent cycle).",
        ),
        "unattachedProgress": _array_of(
            "Progress", "Progress whose goal is not in this export (a selective export), by id."
        ),
    }
    for name in FLAT_TABLES:
        properties[name] = _array_of(name, f"{name} rows, by id.")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": EXPORT_JSON_SCHEMA_ID,
        "title": "goalport JSON export, version 1",
        "description": (
            "One user's data from the Goal Assistant app. Timestamps are UTC "
            "(ISO 8601, milliseconds, Z), dates YYYY-MM-DD, decimals exact text; "
            "every array is sorted by id."
        ),
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        "$defs": defs,
    }


def export_json_schema_text() -> str:
    """The published schema file's exact text."""
    return json.dumps(build_export_json_schema(), indent=2, ensure_ascii=False) + "\n"


def write_published_schema(path: Path = EXPORT_JSON_SCHEMA_PATH) -> None:
    """Regenerate the published schema file (run after changing resources/schema.py)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(export_json_schema_text(), encoding="utf-8")
