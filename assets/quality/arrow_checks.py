"""The data-quality expectations evaluated with pyarrow, exactly as great-expectations does.

great-expectations costs about 3 s of CPU to import (20 s where bytecode is not cached) and a
fixed cost per expectation: for a batch of a few users that is nearly all of an export's
time. The rules (`assets.quality.rules`) use six GX 1.x expectations; this module gives
each the meaning GX's pandas engine gives it, row for row:

- a null (None, NaN, NaT: pandas' `isnull`) is never unexpected, except to
  `ExpectColumnValuesToNotBeNull`;
- `ExpectColumnValuesToBeUnique`: every row whose value occurs more than once;
- `ExpectColumnValuesToBeInSet`: `isin` (exact equality);
- `ExpectColumnValuesToBeBetween`: inclusive bounds (`strict_*` are never set);
- `ExpectColumnValuesToMatchRegex`: Python's `re.search` (not RE2: `$` also matches before
  a final newline, and `\\s` is any Unicode space);
- `ExpectColumnValuesToBeJsonParseable`: `json.loads` succeeds.

`tests/quality/test_engines.py` runs both engines on hostile data and asserts that they
find the same rows. Pure: no Dagster, no great-expectations, no pandas.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ENGINE_NAME = "pyarrow (great-expectations semantics)"


class UnknownExpectationError(ValueError):
    """A rule names an expectation this engine does not implement."""


def unexpected_positions(
    values: pa.Array | pa.ChunkedArray, expectation: str, kwargs: Mapping[str, Any]
) -> list[int]:
    """The positions of the rows `expectation` (with `kwargs`) finds unexpected in `values`."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    present = _present(values)
    if expectation == "ExpectColumnValuesToNotBeNull":
        return _positions(pc.invert(present))
    try:
        judge = _JUDGES[expectation]
    except KeyError:
        raise UnknownExpectationError(
            f"{expectation} has no pyarrow implementation; run the rule with great-expectations"
        ) from None
    ok = judge(values, present, kwargs)
    # a null is never unexpected; where the judge says null (a null compared), it is a row
    # that is present and not found fine
    bad = pc.and_(present, pc.invert(pc.fill_null(ok, False)))
    return _positions(bad)


def _present(values: pa.Array) -> pa.Array:
    """pandas' notnull: not null and, for floats, not NaN."""
    valid = pc.is_valid(values)
    if pa.types.is_floating(values.type):
        valid = pc.and_(valid, pc.invert(pc.fill_null(pc.is_nan(values), True)))
    return valid


def _positions(mask: pa.Array) -> list[int]:
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False)).tolist()


def _unique(values: pa.Array, present: pa.Array, kwargs: Mapping[str, Any]) -> pa.Array:
    kept = values.filter(present)
    counts = pc.value_counts(kept)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return pc.invert(pc.is_in(values, value_set=repeated, skip_nulls=True))


def _in_set(values: pa.Array, present: pa.Array, kwargs: Mapping[str, Any]) -> pa.Array:
    value_set = kwargs["value_set"]
    if value_set is None:  # GX: vacuously true
        return pc.is_valid(values)
    if not value_set:
        return pa.array(np.zeros(len(values), dtype=bool))
    return pc.is_in(values, value_set=pa.array(list(value_set), type=values.type))


def _between(values: pa.Array, present: pa.Array, kwargs: Mapping[str, Any]) -> pa.Array:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        raise ValueError("min_value and max_value cannot both be None")
    if kwargs.get("strict_min") or kwargs.get("strict_max"):
        raise UnknownExpectationError("strict bounds are not used by any rule")
    ok = pa.array(np.ones(len(values), dtype=bool))
    if low is not None:
        ok = pc.and_(ok, pc.greater_equal(values, _scalar(low, values.type)))
    if high is not None:
        ok = pc.and_(ok, pc.less_equal(values, _scalar(high, values.type)))
    return ok


def _scalar(bound: Any, kind: pa.DataType) -> pa.Scalar:
    if pa.types.is_integer(kind) and isinstance(bound, float):
        return pa.scalar(bound, pa.float64())  # compared as pandas would: 2.5 is not cast to 2
    return pa.scalar(bound, kind)


def _regex_judge(values: pa.Array, present: pa.Array, kwargs: Mapping[str, Any]) -> pa.Array:
    search = re.compile(kwargs["regex"]).search
    return pa.array(
        [None if v is None else search(str(v)) is not None for v in values.to_pylist()],
        type=pa.bool_(),
    )


def _json_judge(values: pa.Array, present: pa.Array, kwargs: Mapping[str, Any]) -> pa.Array:
    return pa.array(
        [None if v is None else _parses_as_json(v) for v in values.to_pylist()], type=pa.bool_()
    )


def _parses_as_json(value: Any) -> bool:
    try:
        json.loads(value)
    except Exception:  # noqa: BLE001 - GX counts any failure as "not JSON"
        return False
    return True


_JUDGES: dict[str, Callable[[pa.Array, pa.Array, Mapping[str, Any]], pa.Array]] = {
    "ExpectColumnValuesToBeUnique": _unique,
    "ExpectColumnValuesToBeInSet": _in_set,
    "ExpectColumnValuesToBeBetween": _between,
    "ExpectColumnValuesToMatchRegex": _regex_judge,
    "ExpectColumnValuesToBeJsonParseable": _json_judge,
}
SUPPORTED_EXPECTATIONS: Sequence[str] = ("ExpectColumnValuesToNotBeNull", *_JUDGES)
