"""Seeding benchmark: generating synthetic users, and loading them into PostgreSQL with ADBC's
`adbc_ingest` (what `synthetic.load` does) against the hand-written numpy binary COPY encoder
it replaced, on the same tables in the same run.

`run(pg_url)` takes the URL of a PostgreSQL server (any database on it) and works in scratch
databases of its own (`goalport_seed_bench_*`) that it drops afterwards; it prints a summary
and returns the measurements; nothing here asserts. For each population size
(GOALPORT_BENCH_SEED_USERS, default "2000,20000") the tables are generated once, then each
loader fills a fresh clone of a migrated template whose foreign keys are dropped, so both do
the same server work (the foreign-key re-check after a bulk load is the same SQL for both)
and the difference is the client: encoding and sending. The loaders take turns in
alternating order for GOALPORT_BENCH_SEED_ROUNDS rounds (default 2); the medians are
reported, with the client's CPU seconds (threads included).

The baseline, `hand_binary_copy`, is the encoder the seeder had before `synthetic.load`:
each column as numpy arrays of big-endian length headers and values, joined row by row with
Arrow's element-wise binary join, sent through psycopg's COPY from a writer thread.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

SCRATCH_PREFIX = "goalport_seed_bench_"


def run(pg_url: str) -> dict:
    """Generation and both loaders for each population size; returns the numbers."""
    import adbc_driver_postgresql.dbapi  # noqa: F401  (imported before the clock starts)
    import psycopg  # noqa: F401

    from migrations import upgrade
    from synthetic.load import load_population
    from synthetic.population import generate_population

    users = [int(u) for u in os.environ.get("GOALPORT_BENCH_SEED_USERS", "2000,20000").split(",")]
    rounds = int(os.environ.get("GOALPORT_BENCH_SEED_ROUNDS", "2"))
    loaders: dict[str, Callable[[str, dict[str, pa.Table]], None]] = {
        "adbc_ingest": lambda url, tables: load_population(
            sa.create_engine(url, poolclass=sa.NullPool), tables, defer_foreign_keys=False
        ),
        "hand_binary_copy": hand_binary_copy,
    }
    server = sa.make_url(pg_url)
    template = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:8]}_tpl"
    result: dict = {}
    with _scratch_databases(server) as create:
        template_url = create(template, None)
        upgrade(template_url)
        _drop_all_foreign_keys(template_url)
        for n_users in users:
            started = time.perf_counter()
            tables = generate_population(n_users, seed=1, heavy_every=2000)
            generate_seconds = time.perf_counter() - started
            rows = sum(t.num_rows for t in tables.values())
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in loaders}
            order = list(loaders)
            for i in range(rounds):
                for name in order if i % 2 == 0 else reversed(order):
                    url = create(f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:8]}", template)
                    cpu, wall = time.process_time(), time.perf_counter()
                    loaders[name](url, tables)
                    times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
                    _check_counts(url, tables)
            measured = {
                name: {
                    "seconds": round(statistics.median(s for s, _ in runs), 2),
                    "client_cpu_seconds": round(statistics.median(c for _, c in runs), 2),
                    "rows_per_second": round(rows / statistics.median(s for s, _ in runs)),
                    "all_seconds": [round(s, 2) for s, _ in runs],
                }
                for name, runs in times.items()
            }
            adbc, hand = measured["adbc_ingest"], measured["hand_binary_copy"]
            result[f"{n_users}_users"] = {
                "rows": rows,
                "generate_seconds": round(generate_seconds, 2),
                **measured,
                "adbc_time_over_hand": round(adbc["seconds"] / hand["seconds"], 2),
            }
            print(
                f"{n_users:,} users, {rows:,} rows: generated in {generate_seconds:.1f} s "
                f"({rows / generate_seconds / 1e6:.2f} M rows/s); loaded (median of {rounds}):\n"
                f"  adbc_ingest       {adbc['seconds']:6.2f} s  "
                f"{adbc['rows_per_second'] / 1e3:6.0f} k rows/s  "
                f"client CPU {adbc['client_cpu_seconds']:5.2f} s\n"
                f"  hand binary COPY  {hand['seconds']:6.2f} s  "
                f"{hand['rows_per_second'] / 1e3:6.0f} k rows/s  "
                f"client CPU {hand['client_cpu_seconds']:5.2f} s"
            )
    return result


@contextmanager
def _scratch_databases(server: sa.URL) -> Iterator[Callable[[str, str | None], str]]:
    """`create(name, template) -> url`; every database made through it is dropped after."""
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    made: list[str] = []

    def create(name: str, template: str | None) -> str:
        clause = f' TEMPLATE "{template}"' if template else ""
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{clause}'))
        made.append(name)
        return server.set(database=name).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        with admin.connect() as conn:
            for name in reversed(made):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _drop_all_foreign_keys(url: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        found = conn.execute(
            sa.text(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'f'"
            )
        ).all()
        for table, constraint in found:
            conn.execute(sa.text(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"'))
    engine.dispose()


def _check_counts(url: str, tables: dict[str, pa.Table]) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        for name, table in tables.items():
            count = conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            if count != table.num_rows:
                raise RuntimeError(f"{name}: {count} rows loaded, {table.num_rows} expected")
    engine.dispose()


# ------------------------------------------------------------- the hand-written baseline


def hand_binary_copy(url: str, tables: dict[str, pa.Table]) -> None:
    """Load the tables in one transaction through psycopg's binary COPY of numpy-encoded
    blocks (a writer thread sends while the next block is encoded)."""
    import psycopg
    from psycopg.copy import QueuedLibpqWriter

    libpq = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn, conn.cursor() as cursor:
        for name, table in tables.items():
            if not table.num_rows:
                continue
            columns = ", ".join(f'"{c}"' for c in table.column_names)
            statement = f'COPY "{name}" ({columns}) FROM STDIN (FORMAT binary)'
            with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
                for block in _pg_binary_copy_blocks(table):
                    copy.write(block)


# PostgreSQL's binary COPY format: a signature, flags and header-extension length; per row a
# 16-bit field count, then per field a 32-bit length (-1 for NULL) and the value in the
# type's binary send format (big-endian); a -1 field count ends the data.
_PG_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_PG_COPY_TRAILER = b"\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, PostgreSQL's epoch, in Unix microseconds
_PG_EPOCH_DAYS = 10_957
_COPY_BATCH_ROWS = 65_536


def _pg_binary_copy_blocks(table: pa.Table) -> Iterator:
    yield _PG_COPY_SIGNATURE
    for batch in table.to_batches(max_chunksize=_COPY_BATCH_ROWS):
        n = batch.num_rows
        field_count = np.full(n, batch.num_columns, dtype=">i2").view(np.uint8).reshape(n, 2)
        parts = [_fixed_width_binary(field_count, None)]
        for column in batch.columns:
            parts.extend(_pg_binary_fields(column))
        rows = pc.binary_join_element_wise(
            *parts, b"", null_handling="replace", null_replacement=b""
        )
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)
        yield rows.buffers()[2][offsets[rows.offset] : offsets[rows.offset + n]]
    yield _PG_COPY_TRAILER


def _fixed_width_binary(data: np.ndarray, null: np.ndarray | None) -> pa.Array:
    n, width = data.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    validity, null_count = None, 0
    if null is not None and null.any():
        validity, null_count = pa.array(~null).buffers()[1], int(null.sum())
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))]
    return pa.Array.from_buffers(pa.binary(), n, buffers, null_count=null_count)


def _pg_binary_fields(column: pa.Array) -> list[pa.Array]:
    """[length headers, values] of one column in PostgreSQL's binary format."""
    n = len(column)
    null = column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None
    kind = column.type
    if pa.types.is_string(kind):
        values = column.cast(pa.binary())
        lengths = pc.fill_null(pc.binary_length(values), 0).to_numpy()
        return [_pg_lengths(lengths, null), values]
    if pa.types.is_timestamp(kind):
        micros = pc.fill_null(column.cast(pa.int64()), 0).to_numpy() - _PG_EPOCH_US
        data = micros.astype(">i8").view(np.uint8).reshape(n, 8)
    elif pa.types.is_date32(kind):
        days = pc.fill_null(column.cast(pa.int32()), 0).to_numpy() - _PG_EPOCH_DAYS
        data = days.astype(">i4").view(np.uint8).reshape(n, 4)
    elif pa.types.is_int32(kind):
        data = pc.fill_null(column, 0).to_numpy().astype(">i4").view(np.uint8).reshape(n, 4)
    elif pa.types.is_boolean(kind):
        data = pc.fill_null(column, False).to_numpy(zero_copy_only=False)
        data = data.astype(np.uint8).reshape(n, 1)
    elif pa.types.is_decimal128(kind) and kind.precision <= 18:
        data = _pg_numeric(column, kind)
    else:
        raise ValueError(f"no binary COPY encoding for Arrow type {kind}")
    return [_pg_lengths(np.full(n, data.shape[1]), null), _fixed_width_binary(data, null)]


def _pg_lengths(lengths: np.ndarray, null: np.ndarray | None) -> pa.Array:
    headers = lengths.astype(">i4")
    if null is not None:
        headers[null] = -1
    return _fixed_width_binary(headers.view(np.uint8).reshape(-1, 4), None)


def _pg_numeric(column: pa.Array, kind: pa.Decimal128Type) -> np.ndarray:
    """numeric's send format at a fixed number of base-10000 digits per type."""
    n = len(column)
    words = np.frombuffer(column.buffers()[1], dtype=np.int64).reshape(-1, 2)
    unscaled = words[column.offset : column.offset + n, 0]
    fraction_digits = -(-kind.scale // 4)
    integer_digits = -(-(kind.precision - kind.scale) // 4)
    digits = fraction_digits + integer_digits
    rest = np.abs(unscaled) * 10 ** (4 * fraction_digits - kind.scale)
    record = np.empty((n, 4 + digits), dtype=">i2")
    record[:, 0] = digits
    record[:, 1] = integer_digits - 1
    record[:, 2] = np.where(unscaled < 0, 0x4000, 0)
    record[:, 3] = kind.scale
    for i in range(digits - 1, -1, -1):
        quotient = rest // 10_000
        record[:, 4 + i] = rest - quotient * 10_000
        rest = quotient
    return record.view(np.uint8).reshape(n, 2 * (4 + digits))


if __name__ == "__main__":
    import json

    from bench.run import server_url

    print(json.dumps(run(server_url()), indent=2))
