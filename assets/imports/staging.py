"""Staging: a read file's tables turned into rows ready for one user, each valid or reported.

What staging decides, so that diffing and applying never have to:

- **Whose and which rows.** Every row gets the target user's `userId`. goalport's own
  exports keep their ids, so re-importing a file lands on the rows it came from. Files of
  other apps carry external keys ("todoist:task:123"): each is mapped to a local id through
  the user's `ExternalRef` rows, and an unseen key gets a new id, derived from the import
  job's id so that the same job always stages the same ids. References between rows are
  mapped the same way. In append mode every row gets a new id and references follow.
- **Valid or reported.** Required fields, value ranges and allowed values, unique ids, and
  references that resolve (to a row of the file or one the user already has). An invalid
  row is left out and reported with the file, table, row number, id, field and reason; rows
  that reference it are then reported too. Nothing is dropped silently. When more than
  `max_bad_share` of the rows are bad (default 5%), the import stops (`too_many_bad_rows`).
  Another app's rows arrive already fitted to these rules by their parser
  (`parsers.normalise`, each adjustment in the mapping report); the rows it could not map
  at all count as bad here too. The rules themselves are the same for every file.

Staged tables carry the app's columns plus three of staging's own: `__row` (the row's
number in its table of the file, from 1), `__externalId` (the source key, null for
goalport's own files) and `__baseTime` (when this row was last imported from this source:
the ExternalRef's `updatedAt`; the diff uses it to recognise conflicts).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from resources.schema import (
    APP_ARROW_SCHEMAS,
    APP_TABLE_NAMES,
    APP_TABLES,
    UTC_TIMESTAMP,
    owner_column,
)

# plain str (SQLAlchemy's names are a str subclass that JSON encoders refuse as keys)
TABLE_NAMES: tuple[str, ...] = tuple(str(n) for n in APP_TABLE_NAMES)

GOALPORT = "goalport"
MODES = ("merge", "replace", "append")
DEFAULT_MAX_BAD_SHARE = 0.05
ROW_COLUMN, EXTERNAL_COLUMN, BASE_TIME_COLUMN = "__row", "__externalId", "__baseTime"
STAGING_COLUMNS = (ROW_COLUMN, EXTERNAL_COLUMN, BASE_TIME_COLUMN)


@dataclass(frozen=True)
class Reference:
    """A foreign key between app tables (the owner `userId` is not one of these)."""

    table: str
    column: str
    target: str
    on_delete: str  # CASCADE or SET NULL


def _references() -> tuple[Reference, ...]:
    found = []
    for table in APP_TABLES:
        for column in table.columns:
            if column.name == "userId":
                continue
            for fk in column.foreign_keys:
                found.append(
                    Reference(
                        str(table.name),
                        str(column.name),
                        str(fk.column.table.name),
                        fk.ondelete or "",
                    )
                )
    return tuple(found)


REFERENCES: tuple[Reference, ...] = _references()
REFERENCES_FROM: dict[str, tuple[Reference, ...]] = {
    name: tuple(r for r in REFERENCES if r.table == name) for name in TABLE_NAMES
}
REFERENCES_TO: dict[str, tuple[Reference, ...]] = {
    name: tuple(r for r in REFERENCES if r.target == name) for name in TABLE_NAMES
}


@dataclass(frozen=True)
class RowIssue:
    """One invalid row: where it is and why it cannot be imported."""

    file: str
    table: str
    row: int
    row_id: str | None
    field: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}, table {self.table}, row {self.row}"
        if self.row_id:
            where += f" (id {self.row_id})"
        if self.field:
            where += f", field {self.field!r}"
        return f"{where}: {self.reason}"

    def as_dict(self) -> dict:
        return {
            "file": self.file,
            "table": self.table,
            "row": self.row,
            "id": self.row_id,
            "field": self.field,
            "reason": self.reason,
        }


@dataclass
class StagedImport:
    """The rows an import would write for one user, and the ones it cannot."""

    user_id: str
    source_app: str
    file_name: str
    mode: str
    tables: dict[str, pa.Table]  # app columns + STAGING_COLUMNS, valid rows only
    issues: list[RowIssue]
    total_rows: int
    exported_at: dt.datetime | None = None
    source_user_id: str | None = None
    extras: dict[str, dict] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE
    # rows of another app's file its parser could not map at all (in the mapping report,
    # counted with the invalid rows; `total_rows` includes them)
    unmappable_rows: int = 0

    @property
    def is_goalport(self) -> bool:
        return self.source_app == GOALPORT

    @property
    def bad_rows(self) -> int:
        return len({(i.table, i.row) for i in self.issues}) + self.unmappable_rows

    @property
    def bad_share(self) -> float:
        return self.bad_rows / self.total_rows if self.total_rows else 0.0

    @property
    def too_many_bad_rows(self) -> bool:
        return self.bad_share > self.max_bad_share

    def bad_rows_message(self) -> str:
        first = "; ".join(str(i) for i in self.issues[:3])
        if self.unmappable_rows:
            first = f"{self.unmappable_rows} rows could not be mapped (see the mapping report)" + (
                "; " + first if first else ""
            )
        return (
            f"{self.bad_rows} of {self.total_rows} rows ({self.bad_share:.1%}) are invalid, "
            f"more than the {self.max_bad_share:.1%} an import accepts; nothing was imported. "
            f"First problems: {first}"
        )

    def row_counts(self) -> dict[str, int]:
        return {name: t.num_rows for name, t in self.tables.items()}


def app_columns(table: pa.Table, name: str) -> pa.Table:
    """The staged table without staging's own columns: exactly APP_ARROW_SCHEMAS[name]."""
    return table.select(APP_ARROW_SCHEMAS[name].names).cast(APP_ARROW_SCHEMAS[name])


def derived_id(seed: str, table: str, key: str) -> str:
    """A new cuid-like local id (`c` + 24 base-36 characters), the same for the same
    (seed, table, key): staging the same job twice gives the same ids."""
    return derived_ids(seed, table, [key])[0].as_py()


_BASE36 = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
_HALF = 36**12  # 12 base-36 digits fit in 63 bits
_ID_WIDTH = 25


def derived_ids(seed: str, table: str, keys: Iterable[str]) -> pa.StringArray:
    """`derived_id` of every key, as one Arrow array: a hash each, then the base-36 digits
    of all ids at once (least significant first, as `derived_id` writes them)."""
    prefix = f"{seed}\x1f{table}\x1f"
    low, high = [], []
    for key in keys:
        number = int.from_bytes(hashlib.sha256(f"{prefix}{key}".encode()).digest()[:16], "big")
        rest, digits = divmod(number, _HALF)
        low.append(digits)
        high.append(rest % _HALF)
    n = len(low)
    chars = np.empty((n, _ID_WIDTH), dtype=np.uint8)
    chars[:, 0] = ord("c")
    for half, first in ((low, 1), (high, 13)):
        numbers = np.array(half, dtype=np.uint64)
        for place in range(first, first + 12):
            numbers, digit = np.divmod(numbers, np.uint64(36))
            chars[:, place] = _BASE36[digit]
    offsets = np.arange(0, _ID_WIDTH * n + 1, _ID_WIDTH, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


def stage_import(
    detected,
    *,
    user_id: str,
    current: dict[str, pa.Table],
    known_refs: pa.Table | None = None,
    user_exists: bool = True,
    id_seed: str,
    mode: str = "merge",
    max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
) -> StagedImport:
    """Stage a `DetectedImport` for `user_id`.

    `current` is the user's data now (`AppDatabase.extract([user]).tables`); `known_refs`
    the user's ExternalRef rows for the file's source app (columns tableName, externalId,
    localId, updatedAt); `id_seed` (the import job's id) makes new ids reproducible.
    """
    if mode not in MODES:
        raise ValueError(f"unknown import mode {mode!r}: choose from {', '.join(MODES)}")
    warnings = list(detected.warnings)
    tables = {name: _with_staging_columns(detected.tables.get(name), name) for name in TABLE_NAMES}
    total = sum(t.num_rows for t in tables.values())
    current = {n: current.get(n, APP_ARROW_SCHEMAS[n].empty_table()) for n in TABLE_NAMES}

    user_row_note = _place_user_row(tables, detected, user_id, user_exists, mode)
    if user_row_note:
        warnings.append(user_row_note)
    if detected.source_app == GOALPORT:
        if mode == "append":
            tables = _remap_ids(tables, lambda name, keys: derived_ids(id_seed, name, keys))
    else:
        tables = _map_external_keys(tables, known_refs, id_seed, mode)
        tables = _keep_inferred_values(tables, current, detected.extras)
    tables = {name: _set_owner(t, name, user_id) for name, t in tables.items()}
    if mode != "append":
        tables["UserSetting"] = _match_settings_by_key(
            tables["UserSetting"], current["UserSetting"]
        )

    issues: list[RowIssue] = []
    for name in TABLE_NAMES:
        tables[name], found = _check_rows(tables[name], name, detected.file_name)
        issues.extend(found)
    tables, found = _check_quality_rules(tables, current, detected.file_name)
    issues.extend(found)
    tables, found = _drop_unresolved_references(tables, current, detected.file_name)
    issues.extend(found)
    issues.sort(key=lambda i: (TABLE_NAMES.index(i.table), i.row))
    unmappable = sum(e.count for e in detected.report if getattr(e, "bad", False))
    return StagedImport(
        user_id=user_id,
        source_app=detected.source_app,
        file_name=detected.file_name,
        mode=mode,
        tables=tables,
        issues=issues,
        total_rows=total + unmappable,
        exported_at=detected.exported_at,
        source_user_id=detected.source_user_id,
        extras=dict(detected.extras),
        warnings=warnings,
        max_bad_share=max_bad_share,
        unmappable_rows=unmappable,
    )


# ---------------------------------------------------------------- shaping


def _with_staging_columns(table: pa.Table | None, name: str) -> pa.Table:
    schema = APP_ARROW_SCHEMAS[name]
    table = schema.empty_table() if table is None else table.select(schema.names).cast(schema)
    n = table.num_rows
    table = table.append_column(ROW_COLUMN, pa.array(np.arange(1, n + 1, dtype=np.int32)))
    table = table.append_column(EXTERNAL_COLUMN, pa.nulls(n, pa.string()))
    return table.append_column(BASE_TIME_COLUMN, pa.nulls(n, UTC_TIMESTAMP))


def with_blank_staging_columns(table: pa.Table) -> pa.Table:
    """Rows of the user's current data with staging's columns added, all null: the shape
    of incoming rows, for the rows a plan updates that no file row stands for."""
    n = table.num_rows
    table = table.append_column(ROW_COLUMN, pa.nulls(n, pa.int32()))
    table = table.append_column(EXTERNAL_COLUMN, pa.nulls(n, pa.string()))
    return table.append_column(BASE_TIME_COLUMN, pa.nulls(n, UTC_TIMESTAMP))


def _replace(table: pa.Table, column: str, values) -> pa.Table:
    index = table.schema.get_field_index(column)
    return table.set_column(index, table.schema.field(index), values)


def _set_owner(table: pa.Table, name: str, user_id: str) -> pa.Table:
    return _replace(table, owner_column(name), pa.array([user_id] * table.num_rows, pa.string()))


def _place_user_row(tables, detected, user_id: str, user_exists: bool, mode: str) -> str | None:
    """The file's account row becomes the target user's, or is left out (with a note)."""
    users = tables["User"]
    if users.num_rows == 0:
        return None
    same_person = detected.source_app == GOALPORT and detected.source_user_id in (None, user_id)
    if user_exists and (not same_person or mode == "append"):
        tables["User"] = users.slice(0, 0)
        return (
            "the file's account details (User row) were not imported: they belong to "
            f"{detected.source_user_id or 'another account'}, and an import never changes "
            "another account's name or e-mail"
            if not same_person
            else "append mode keeps the account details (User row) as they are"
        )
    tables["User"] = users.slice(0, 1)
    return None


def _remap_ids(tables: dict[str, pa.Table], new_ids) -> dict[str, pa.Table]:
    """Every row (but the account row) gets its id from `new_ids(table, old ids)`;
    references follow."""
    maps: dict[str, tuple[pa.Array, pa.Array]] = {}
    for name, table in tables.items():
        if name == "User":
            continue
        old = table["id"].combine_chunks()
        new = new_ids(name, old.to_pylist())
        maps[name] = (old, new)
        tables[name] = _replace(table, "id", new)
    return _map_references(tables, maps)


def _map_references(tables: dict[str, pa.Table], maps) -> dict[str, pa.Table]:
    """Every reference column mapped through its target table's (old ids, new ids)."""
    for name in tables:
        for ref in REFERENCES_FROM.get(name, ()):
            old, new = maps[ref.target]
            mapped = _map_values(tables[name][ref.column], old, new)
            tables[name] = _replace(tables[name], ref.column, mapped)
    return tables


def _map_values(values, old: pa.Array, new: pa.Array) -> pa.Array:
    """`values` with each value found in `old` replaced by the `new` at its position."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    position = pc.index_in(values, value_set=old)
    mapped = new.take(position)
    return pc.if_else(pc.is_null(position), values, mapped)


def _map_external_keys(tables, known_refs: pa.Table | None, id_seed: str, mode: str):
    """Swap external keys for local ids: known ones through ExternalRef, new ones derived."""
    maps: dict[str, tuple[pa.Array, pa.Array]] = {}
    for name, table in tables.items():
        if name == "User":
            continue
        keys = table["id"].combine_chunks()
        known_keys, known_ids, known_times = _known(known_refs, name, mode)
        position = pc.index_in(keys, value_set=known_keys)
        unseen = pc.is_null(position)
        fresh = derived_ids(id_seed, name, keys.filter(unseen).to_pylist())
        local = pc.replace_with_mask(known_ids.take(position), unseen, fresh)
        base = known_times.take(position)
        table = _replace(table, EXTERNAL_COLUMN, keys)
        table = _replace(table, BASE_TIME_COLUMN, base)
        tables[name] = _replace(table, "id", local)
        # references may point at rows of earlier imports that this file no longer holds
        maps[name] = (
            pa.concat_arrays([keys, known_keys]),
            pa.concat_arrays([local, known_ids]),
        )
    return _map_references(tables, maps)


def _known(known_refs: pa.Table | None, name: str, mode: str):
    empty = (pa.array([], pa.string()), pa.array([], pa.string()), pa.array([], UTC_TIMESTAMP))
    if known_refs is None or known_refs.num_rows == 0 or mode == "append":
        return empty
    rows = known_refs.filter(pc.equal(known_refs["tableName"], name))
    return (
        rows["externalId"].combine_chunks().cast(pa.string()),
        rows["localId"].combine_chunks().cast(pa.string()),
        rows["updatedAt"].combine_chunks().cast(UTC_TIMESTAMP),
    )


def _keep_inferred_values(tables, current, extras: dict[str, dict]):
    """Values a parser had to invent (`extras[key]["inferred"]`, e.g. a creation time the
    source does not have) keep what the user's existing row holds: a re-import must not
    report them as changes."""
    inferred_by_key = {k: v["inferred"] for k, v in extras.items() if v.get("inferred")}
    if not inferred_by_key:
        return tables
    for name, table in tables.items():
        if name == "User" or table.num_rows == 0:
            continue
        inferred = [inferred_by_key.get(k, ()) for k in table[EXTERNAL_COLUMN].to_pylist()]
        distinct = {tuple(names) for names in inferred}
        fields = {f for names in distinct for f in names} & set(table.column_names)
        if not fields:
            continue
        existing = pc.index_in(table["id"], value_set=current[name]["id"])
        for column in sorted(fields):
            mask = pa.array([column in fields_of_row for fields_of_row in inferred], pa.bool_())
            mask = pc.and_(mask, pc.is_valid(existing))
            if not pc.any(mask).as_py():
                continue
            old = current[name][column].take(existing)
            table = _replace(table, column, pc.if_else(mask, old, table[column]))
        tables[name] = table
    return tables


def _match_settings_by_key(settings: pa.Table, current: pa.Table) -> pa.Table:
    """A setting is one per (user, key): an incoming setting whose key the user already has
    lands on that row, whatever its id in the file."""
    if settings.num_rows == 0 or current.num_rows == 0:
        return settings
    position = pc.index_in(settings["key"], value_set=current["key"])
    existing_ids = current["id"].combine_chunks().take(position)
    return _replace(settings, "id", pc.if_else(pc.is_null(position), settings["id"], existing_ids))


# ---------------------------------------------------------------- checks


def _issues_for(table: pa.Table, mask, name: str, file: str, field: str | None, reason) -> list:
    """A RowIssue for every row `mask` selects; a callable `reason` gets the row's `field`."""
    if not pc.any(mask).as_py():
        return []
    rows = table.filter(mask)
    values = rows[field].to_pylist() if field and callable(reason) else None
    keys = rows[EXTERNAL_COLUMN].to_pylist()
    found = []
    for i, (number, row_id) in enumerate(
        zip(rows[ROW_COLUMN].to_pylist(), rows["id"].to_pylist(), strict=True)
    ):
        text = reason(values[i]) if values is not None else reason
        found.append(RowIssue(file, name, number, keys[i] or row_id, field, text))
    return found


def _check_rows(table: pa.Table, name: str, file: str) -> tuple[pa.Table, list[RowIssue]]:
    """Required fields and unique ids (and setting keys): bad rows out, reported."""
    if table.num_rows == 0:
        return table, []
    issues: list[RowIssue] = []
    bad = pa.array(np.zeros(table.num_rows, dtype=bool))
    for f in APP_ARROW_SCHEMAS[name]:
        if not f.nullable and table[f.name].null_count:
            mask = pc.is_null(table[f.name])
            issues += _issues_for(table, mask, name, file, f.name, "required, but empty")
            bad = pc.or_(bad, mask)
    repeated = _repeated_ids(table["id"])
    if repeated is not None:
        issues += _issues_for(
            table, repeated, name, file, "id", "another row of the file has the same id"
        )
        bad = pc.or_(bad, repeated)
    if name == "UserSetting":
        repeated_key = _repeated_ids(table["key"])
        if repeated_key is not None:
            issues += _issues_for(
                table, repeated_key, name, file, "key", "another setting of the file has this key"
            )
            bad = pc.or_(bad, repeated_key)
    return table.filter(pc.invert(bad)), issues


def _repeated_ids(ids) -> pa.Array | None:
    """True for each row whose value an earlier row already had (nulls never repeat)."""
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    if len(ids) < 2 or pc.count_distinct(ids).as_py() + ids.null_count >= len(ids):
        return None
    first = pc.index_in(ids, value_set=ids)  # position of each value's first occurrence
    positions = pa.array(np.arange(len(ids), dtype=np.int32))
    return pc.fill_null(pc.not_equal(first, positions), False)


# Expectation types of assets.quality.rules that are judged here row by row (the suites' own
# run through great-expectations is the import's blocking check; this says which rows).
def _failing_rows(rule, values) -> pa.Array | None:
    """True for each value the quality rule rejects (nulls pass, as in great-expectations)."""
    import re

    kind, kwargs = rule.expectation, rule.kwargs
    if isinstance(values, np.ndarray):
        values = pa.array(values)
    if kind == "ExpectColumnValuesToNotBeNull":
        return pc.is_null(values)
    if kind == "ExpectColumnValuesToBeUnique":
        return pc.fill_null(_duplicated(values), False)
    if kind == "ExpectColumnValuesToBeBetween":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        bad = pa.array(np.zeros(len(values), dtype=bool))
        if low is not None:
            bad = pc.or_(
                bad, pc.fill_null(pc.less(values, pa.scalar(low, _bound_type(values))), False)
            )
        if high is not None:
            bad = pc.or_(
                bad, pc.fill_null(pc.greater(values, pa.scalar(high, _bound_type(values))), False)
            )
        return bad
    if kind == "ExpectColumnValuesToBeInSet":
        allowed = pa.array(list(kwargs["value_set"]))
        if not allowed.type.equals(values.type):
            allowed = allowed.cast(values.type)
        return pc.and_(
            pc.is_valid(values), pc.invert(pc.fill_null(pc.is_in(values, value_set=allowed), False))
        )
    if kind == "ExpectColumnValuesToMatchRegex":
        pattern = re.compile(kwargs["regex"])
        return pa.array([v is not None and not pattern.search(v) for v in values.to_pylist()])
    if kind == "ExpectColumnValuesToBeJsonParseable":
        return pa.array([v is not None and not _is_json(v) for v in values.to_pylist()])
    return None


# The row-by-row judgement of one rule, for other areas that judge rows as an import does
# (assets.sync.validate).
failing_rows = _failing_rows


def _bound_type(values) -> pa.DataType:
    t = values.type
    return pa.float64() if pa.types.is_integer(t) else t


def _is_json(text: str) -> bool:
    import json

    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _duplicated(values) -> pa.Array:
    """True for every row whose value another row also has (all of them, like GX)."""
    counts = pc.value_counts(values)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return pc.is_in(values, value_set=repeated)


def _check_quality_rules(
    tables: dict[str, pa.Table], current: dict[str, pa.Table], file: str
) -> tuple[dict[str, pa.Table], list[RowIssue]]:
    """The data-quality suites (`assets.quality.suites`) on the incoming rows, judged together
    with the user's existing rows (a goal's parent or a plan may already be there): rows
    that break a rule are out, each reported with the rule's description. References are
    left to `_drop_unresolved_references`, which also follows them through dropped rows."""
    from assets.quality.rules import quality_rules

    rules = [
        r
        for r in quality_rules()
        if not r.name.endswith("_resolves") and r.name not in ("id_present", "id_unique")
    ]
    combined = {}
    for name in TABLE_NAMES:
        incoming = app_columns(tables[name], name)
        existing = current[name]
        if existing.num_rows and incoming.num_rows:
            existing = existing.filter(
                pc.invert(pc.is_in(existing["id"], value_set=incoming["id"]))
            )
        combined[name] = pa.concat_tables([incoming, existing.cast(incoming.schema)])
    issues: list[RowIssue] = []
    bad = {name: pa.array(np.zeros(tables[name].num_rows, dtype=bool)) for name in TABLE_NAMES}
    for rule in rules:
        n = tables[rule.table].num_rows
        if n == 0:
            continue
        values = (
            rule.derive(combined) if rule.derive is not None else combined[rule.table][rule.column]
        )
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        failing = _failing_rows(rule, values)
        if failing is None:
            continue
        failing = failing.slice(0, n) if isinstance(failing, pa.Array) else failing[:n]
        failing = pc.and_(failing, pc.invert(bad[rule.table]))
        base = rule.column.split(" (")[0]
        field = base if base in APP_ARROW_SCHEMAS[rule.table].names else None
        issues += _issues_for(
            tables[rule.table], failing, rule.table, file, field, rule.description
        )
        bad[rule.table] = pc.or_(bad[rule.table], failing)
    for name in TABLE_NAMES:
        if pc.any(bad[name]).as_py():
            tables[name] = tables[name].filter(pc.invert(bad[name]))
    return tables, issues


def _drop_unresolved_references(
    tables: dict[str, pa.Table], current: dict[str, pa.Table], file: str
) -> tuple[dict[str, pa.Table], list[RowIssue]]:
    """Rows whose references resolve neither in the file nor in the user's data are out;
    repeated until no row points at a row that was left out."""
    issues: list[RowIssue] = []
    while True:
        dropped = False
        for name in TABLE_NAMES:
            table = tables[name]
            if table.num_rows == 0:
                continue
            bad = None
            for ref in REFERENCES_FROM[name]:
                known = pa.concat_arrays(
                    [
                        tables[ref.target]["id"].combine_chunks(),
                        current[ref.target]["id"].combine_chunks(),
                    ]
                )
                values = table[ref.column]
                mask = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=known)))
                if not pc.any(mask).as_py():
                    continue
                issues += _issues_for(
                    table,
                    mask,
                    name,
                    file,
                    ref.column,
                    lambda v, t=ref.target: (
                        f"refers to {t} {v}, which is neither in the file (as a valid row) "
                        "nor in the user's data"
                    ),
                )
                bad = mask if bad is None else pc.or_(bad, mask)
            if bad is not None:
                tables[name] = table.filter(pc.invert(bad))
                dropped = True
        if not dropped:
            return tables, issues


def ids_of(tables: dict[str, pa.Table], names: Iterable[str]) -> dict[str, set[str]]:
    return {n: set(tables[n]["id"].to_pylist()) for n in names}
