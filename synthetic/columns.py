"""Arrow columns built straight from numpy arrays, for `population`'s generators.

Generating millions of rows row by row would take minutes; here each column is one numpy
computation turned into an Arrow array without a Python object per value: ids and
references are fixed-width byte matrices laid into string buffers, texts are taken from a
small pool by index, timestamps and decimals are built from integer buffers. A NULL mask
can be given wherever a column is nullable.

`RowIds` makes the cuid-like ids (`c` + 24 base-36 characters) from the seed, the table,
the user's index and the row's position among that user's rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES


def pool(values) -> pa.Array:
    """A pool of texts for `texts` to pick from."""
    return pa.array(list(values), type=pa.string())


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection on 64-bit integers that scrambles every bit."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


_BASE36 = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
# Every two-digit combination as one uint16, so digits are looked up in pairs.
_BASE36_PAIRS = (
    np.stack([np.repeat(_BASE36, 36), np.tile(_BASE36, 36)], axis=1).view(np.uint16).ravel()
)


def _base36(values: np.ndarray, width: int) -> np.ndarray:
    """Fixed-width base-36 digits of `values`, as an (n, width) array of ASCII bytes."""
    v = values.astype(np.uint64, copy=True)
    n_pairs, odd = divmod(width, 2)
    pairs = np.empty((n_pairs, len(v)), dtype=np.intp)
    base = np.uint64(36 * 36)
    for k in range(n_pairs - 1, -1, -1):  # `//` by a constant is fast, `divmod` is not
        quotient = v // base
        pairs[k] = v - quotient * base
        v = quotient
    digits = np.ascontiguousarray(_BASE36_PAIRS[pairs.T]).view(np.uint8)
    if odd:
        lead = _BASE36[(v - (v // np.uint64(36)) * np.uint64(36)).astype(np.intp)]
        digits = np.concatenate([lead[:, None], digits], axis=1)
    return digits


def _fixed_width_strings(chars: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    validity, null_count = None, 0
    if null is not None and null.any():
        validity, null_count = pa.array(~null).buffers()[1], int(null.sum())
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))]
    return pa.Array.from_buffers(pa.string(), n, buffers, null_count=null_count)


_TABLE_CODES = {name: i + 1 for i, name in enumerate(APP_TABLE_NAMES)}
_ID_WIDTH = 25
_MAX_USERS = 36**5
_MAX_ROWS_PER_USER = 36**4


class RowIds:
    """cuid-like ids (`c` + 24 base-36 characters) for one table's rows.

    Layout: 4 characters for the seed, 5 for the user's index, 1 for the table, 4 for the
    row's position among the user's rows, then 10 that mix all of it. Unique by
    construction within a seed. The seed part differs for any two seeds below 36**4, and
    the mixed part for any two seeds but for a 1 in 36**10 chance.

    Ids sort like (user, position): rows generated user by user are already in id order and
    in `userId` order, so a bulk load only ever appends to both indexes of every table.
    """

    def __init__(self, seed: int, table: str, user: np.ndarray, ordinal: np.ndarray):
        n = len(user)
        if n and int(user.max()) >= _MAX_USERS:
            raise ValueError(f"at most {_MAX_USERS} users can be generated")
        if n and int(ordinal.max()) >= _MAX_ROWS_PER_USER:
            raise ValueError(f"at most {_MAX_ROWS_PER_USER} {table} rows per user")
        seed_part = (seed * 1_000_003 + 20_261) % 36**4  # coprime with 36: a bijection
        identity = (
            (np.uint64(_TABLE_CODES[table]) << np.uint64(56))
            | (user.astype(np.uint64) << np.uint64(24))
            | ordinal.astype(np.uint64)
        )
        seed_key = _mix64(np.array([seed % 2**64], dtype=np.uint64))[0]
        chars = np.empty((n, _ID_WIDTH), dtype=np.uint8)
        chars[:, 0] = ord("c")
        chars[:, 1:5] = _base36(np.array([seed_part]), 4)[0]
        chars[:, 5:10] = _base36(user, 5)
        chars[:, 10] = _BASE36[_TABLE_CODES[table]]
        chars[:, 11:15] = _base36(ordinal, 4)
        chars[:, 15:] = _base36(_mix64(identity ^ seed_key) % np.uint64(36**10), 10)
        self.codes = chars.view(f"S{_ID_WIDTH}").ravel()
        self.array = _fixed_width_strings(chars)


def segments(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For groups of `counts` rows laid out one after another: each row's group, its
    position within the group, and each group's first row."""
    counts = counts.astype(np.int64)
    starts = np.zeros(len(counts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    position = np.arange(len(owner), dtype=np.int64) - starts[owner]
    return owner, position, starts


def per_user_ordinal(user_of_row: np.ndarray, n_users: int) -> np.ndarray:
    """Position of each row among its user's rows (rows are sorted by user)."""
    counts = np.bincount(user_of_row, minlength=n_users)
    starts = np.zeros(n_users, dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    return np.arange(len(user_of_row), dtype=np.int64) - starts[user_of_row]


def pick(rng: np.random.Generator, n: int, pool_size: int) -> np.ndarray:
    return rng.integers(0, pool_size, size=n)


def refs(ids: RowIds, idx: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """References to rows of another table, by row index (NULL where `null`)."""
    # Ids are fixed-width: gathering them with numpy beats a variable-width string take.
    if len(ids.codes):
        picked = ids.codes[np.where(null, 0, idx) if null is not None else idx]
    else:  # nothing to refer to: every reference is NULL
        picked = np.zeros(len(idx), dtype=ids.codes.dtype)
    return _fixed_width_strings(picked.view(np.uint8).reshape(len(idx), _ID_WIDTH), null)


def texts(pool: pa.Array, idx: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """Texts picked from a pool by index (NULL where `null`)."""
    return pc.take(pool, pa.array(idx, type=pa.int64(), mask=null))


def timestamps(ms: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """UTC timestamps from epoch milliseconds (the app's precision)."""
    return pa.array(ms.astype(np.int64) * 1000, type=pa.timestamp("us", tz="UTC"), mask=null)


def dates(days: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=null)


def ints(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(values.astype(np.int32), type=pa.int32(), mask=null)


def bools(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.bool_())


def decimals(
    table: str, column: str, cents: np.ndarray, null: np.ndarray | None = None
) -> pa.Array:
    """Exact decimals from their unscaled integer values (cents, for scale 2)."""
    cents = cents.astype(np.int64)
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63  # sign extension to 128 bits
    validity, null_count = None, 0
    if null is not None and null.any():
        validity, null_count = pa.array(~null).buffers()[1], int(null.sum())
    kind = APP_ARROW_SCHEMAS[table].field(column).type
    return pa.Array.from_buffers(
        kind, len(cents), [validity, pa.py_buffer(words)], null_count=null_count
    )


def between(
    rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, power: float = 1.0
) -> np.ndarray:
    """Random millisecond instants in [lo, hi] (arrays), skewed towards lo when power > 1."""
    u = rng.random(len(lo)) ** power
    return lo + np.floor(u * np.maximum(hi - lo, 0)).astype(np.int64)


def app_table(name: str, ids: RowIds, columns: dict[str, pa.Array]) -> pa.Table:
    schema = APP_ARROW_SCHEMAS[name]
    columns = {"id": ids.array, **columns}
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def table_rng(seed: int, table: str) -> np.random.Generator:
    """One random stream per table, so that each table can be generated on its own."""
    return np.random.default_rng([_TABLE_CODES[table], seed])
