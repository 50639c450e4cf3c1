"""Running the data-quality rules (`assets.quality.rules`): with pyarrow for ordinary
batches, with great-expectations 1.x for large ones.

An export that carries broken data is worse than none, so every batch is validated once
before it is rendered, and the report (`assets.quality.report`) travels with the batch:
the `extracted_batch` asset runs the suites and carries the report to the blocking asset
checks and to the render step; callers without Dagster run them once per batch in
`assets.exports.batches.write_batch`.

Two engines, one meaning: `assets.quality.arrow_checks` evaluates the expectations with
GX's pandas semantics in pyarrow (no import cost: a single-user export's checks take
milliseconds instead of great-expectations' 3 s import), and GX itself validates batches of
GOALPORT_GX_MIN_ROWS rows or more (GOALPORT_QUALITY_ENGINE forces one);
tests/quality/test_engines.py holds them to the same rows.

One validation per table per batch (never per user), on the columns the rules need.
Rows are located by their position, and ids and users are looked up in the Arrow table,
so the frames handed to GX hold no id or user text.

Pure: no Dagster. great_expectations and pandas are imported only when GX runs.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assets.quality import arrow_checks
from assets.quality.report import EXAMPLE_IDS, QualityReport, RuleResult
from assets.quality.rules import Rule, Tables, quality_rules
from resources import settings
from resources.schema import APP_TABLE_NAMES, owner_column, table_or_empty

if TYPE_CHECKING:  # resources.database imports dagster; the suites only read a batch
    from resources.database import ExtractedBatch


class QualityEngineError(RuntimeError):
    """great-expectations could not evaluate a rule: a bug in the suite, not in the data."""


def run_quality_suites(
    tables: Tables,
    *,
    filters: Mapping | None = None,
    now: dt.datetime | None = None,
    rules: Sequence[Rule] | None = None,
    engine: str | None = None,
) -> QualityReport:
    """Validate one batch's tables (app table name -> Arrow table, any number of users).

    `filters` is the extraction filter as a dict (`modules`, `since`, `until`): rules that
    a filter makes undecidable are reported as not checked. One GX validation per table
    that has rows, with `engine` (ARROW or GREAT_EXPECTATIONS; by default the batch's size
    decides, `choose_engine`). Every call validates: a caller that needs the report twice
    keeps it."""
    started, started_cpu = time.perf_counter(), time.process_time()
    rules = tuple(rules) if rules is not None else quality_rules(now)
    tables = {name: table_or_empty(tables, name) for name in APP_TABLE_NAMES}
    active_filters = _active_filters(filters)
    by_table: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.skip_when not in active_filters:
            by_table.setdefault(rule.table, []).append(rule)
    columns = {
        name: (rule_columns(tables, name, table_rules), table_rules)
        for name, table_rules in by_table.items()
        if tables[name].num_rows
    }
    engine = engine or choose_engine(sum(t.num_rows for t in tables.values()))
    positions, engine_name = find_unexpected(columns, engine)

    results = []
    for rule in rules:
        table = tables[rule.table]
        if rule.skip_when in active_filters:
            reason = f"the export is filtered by {rule.skip_when}"
            results.append(
                RuleResult(rule.table, rule.name, rule.description, 0, 0, skipped=reason)
            )
            continue
        results.append(_rule_result(rule, table, positions.get((rule.table, rule.name), [])))
    users = frozenset(tables["User"]["id"].drop_null().to_pylist())
    return QualityReport(
        results,
        users,
        time.perf_counter() - started,
        engine_name,
        cpu_seconds=time.process_time() - started_cpu,
    )


def check_batch_quality(batch: ExtractedBatch) -> QualityReport:
    """The suites on an extracted batch, judged under the filter it was extracted with."""
    return run_quality_suites(batch.tables, filters=batch.filters.as_dict())


def _active_filters(filters: Mapping | None) -> set[str]:
    if not filters:
        return set()
    active = set()
    if filters.get("modules") is not None:
        active.add("modules")
    if filters.get("since") or filters.get("until"):
        active.add("dates")
    return active


ARROW, GREAT_EXPECTATIONS = "arrow", "great_expectations"
ENGINES = (ARROW, GREAT_EXPECTATIONS)


def choose_engine(rows: int) -> str:
    """GOALPORT_QUALITY_ENGINE when it names an engine; else great-expectations for a batch
    of GOALPORT_GX_MIN_ROWS rows or more (its import is then a small share), pyarrow below."""
    forced = settings.quality_engine()
    if forced in ENGINES:
        return forced
    return GREAT_EXPECTATIONS if rows >= settings.gx_min_rows() else ARROW


def find_unexpected(
    columns: Mapping[str, tuple[pa.Table, Sequence[Rule]]], engine: str
) -> tuple[dict[tuple[str, str], list[int]], str]:
    """Each table's rules on its rule columns: the row positions each rule found unexpected
    ({(table, rule name): positions}, failing rules only), and the engine's name."""
    if engine == GREAT_EXPECTATIONS:
        if not columns:
            return {}, "great_expectations"
        return _validate_with_gx({n: (t.to_pandas(), r) for n, (t, r) in columns.items()})
    if engine != ARROW:
        raise ValueError(f"unknown quality engine {engine!r}: one of {', '.join(ENGINES)}")
    found: dict[tuple[str, str], list[int]] = {}
    for table_name, (table, rules) in columns.items():
        for rule in rules:
            positions = arrow_checks.unexpected_positions(
                table[rule.column], rule.expectation, rule.kwargs
            )
            if positions:
                found[(table_name, rule.name)] = positions
    return found, arrow_checks.ENGINE_NAME


def rule_columns(tables: Tables, table_name: str, rules: Iterable[Rule]) -> pa.Table:
    """The columns a table's rules judge, derived ones computed.

    Integers are int64 (float64 in pandas where nulls are): for other integer widths GX's
    range check falls back to comparing value by value in Python."""
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    for rule in rules:
        if rule.column in columns:
            continue
        if rule.derive is not None:
            values = rule.derive(tables)
            values = pa.array(values) if isinstance(values, np.ndarray) else values
        else:
            values = tables[table_name][rule.column]
        if pa.types.is_integer(values.type):
            values = pc.cast(values, pa.int64())
        columns[rule.column] = values
    return pa.table(columns)


def _validate_with_gx(frames: Mapping) -> tuple[dict[tuple[str, str], list[int]], str]:
    """Run each table's suite with GX; the row positions each rule found unexpected.

    Two passes per table: every rule with GX's cheapest result format (pass or fail), then
    the failing ones again asking for every unexpected row. GX's cost is mostly per
    expectation and per requested metric, and most batches pass."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # One asset for every table: the frame is a batch parameter, and each asset added
    # would re-save the context's whole configuration.
    whole_frame = (
        context.data_sources.add_pandas("goalport")
        .add_dataframe_asset("extracted_batch")
        .add_batch_definition_whole_dataframe("table")
    )

    def validate(batch, table_name: str, rules: Sequence[Rule], result_format: str) -> list:
        suite = gx.ExpectationSuite(
            name=f"goalport.{table_name}",
            expectations=[
                getattr(gxe, r.expectation)(column=r.column, meta={"rule": r.name}, **r.kwargs)
                for r in rules
            ],
        )
        outcome = batch.validate(suite, result_format={"result_format": result_format})
        for result in outcome.results:
            if result.exception_info.get("raised_exception"):
                raise QualityEngineError(
                    f"great-expectations could not evaluate {table_name}."
                    f"{result.expectation_config.meta['rule']}: "
                    f"{result.exception_info.get('exception_message')}"
                )
        return outcome.results

    found: dict[tuple[str, str], list[int]] = {}
    for table_name, (frame, rules) in frames.items():
        batch = whole_frame.get_batch(batch_parameters={"dataframe": frame})
        verdicts = validate(batch, table_name, rules, "BOOLEAN_ONLY")
        failing = {r.expectation_config.meta["rule"] for r in verdicts if not r.success}
        if not failing:
            continue
        detailed = validate(batch, table_name, [r for r in rules if r.name in failing], "COMPLETE")
        for result in detailed:
            found[(table_name, result.expectation_config.meta["rule"])] = [
                int(i) for i in result.result.get("unexpected_index_list") or []
            ]
    return found, f"great_expectations {gx.__version__}"


def _rule_result(rule: Rule, table: pa.Table, positions: list[int]) -> RuleResult:
    if not positions:
        return RuleResult(rule.table, rule.name, rule.description, table.num_rows, 0)
    taken = table.select(["id", owner_column(rule.table)]).take(pa.array(sorted(positions)))
    ids = [i if i is not None else "(no id)" for i in taken.column(0).to_pylist()]
    owners = [u if u is not None else "(no user)" for u in taken.column(1).to_pylist()]
    by_user: dict[str, list[str]] = {}
    for row_id, owner in zip(ids, owners, strict=True):
        by_user.setdefault(owner, []).append(row_id)
    return RuleResult(
        rule.table,
        rule.name,
        rule.description,
        table.num_rows,
        len(ids),
        tuple(ids[:EXAMPLE_IDS]),
        frozenset(by_user),
        {u: (len(rows), tuple(rows[:EXAMPLE_IDS])) for u, rows in by_user.items()},
    )
