"""Bulk loading of a synthetic population (one Arrow table per app table) into a database.

PostgreSQL, the path that must be fast, gets ADBC's bulk ingestion: `adbc_ingest` encodes
the Arrow tables as binary COPY in C++ and streams them, with no Python object per value.
`bench/seed_bench.py` measures it against the hand-written numpy encoder it replaced, on
the same tables in the same run. Binary COPY carries each value in its column's own wire
format, so Arrow's types must match the migrated columns: the loader insists on the app's
Arrow schemas (`resources.schema.APP_ARROW_SCHEMAS`: text ids, timestamptz as UTC
microseconds, date32, int32, booleans, decimal128 for numeric(p, s)).

SQLite, the embedded default, gets executemany of values already in SQLAlchemy's storage
format; other databases, executemany through SQLAlchemy. Every load is all or nothing.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES, APP_TABLES

# Above this many rows, foreign keys are dropped for the load and re-created after it.
BULK_ROWS = 200_000


def load_population(
    engine: sa.Engine, tables: dict[str, pa.Table], *, defer_foreign_keys: bool | None = None
) -> dict[str, int]:
    """Insert the tables (parents first) in one transaction; returns rows loaded per table.

    On PostgreSQL, with `defer_foreign_keys` (by default: above 200,000 rows) the loaded
    tables' foreign keys are dropped for the load and re-created, each validated by one
    join, before the commit: per-row checks would cost more than the load itself. That locks
    the app's tables for the load, so it is for seeding, not for a database in use.
    """
    unknown = set(tables) - set(APP_TABLE_NAMES)
    if unknown:
        raise ValueError(f"not app tables: {sorted(unknown)}")
    ordered = [t for t in APP_TABLES if t.name in tables]
    for t in ordered:
        got = [(f.name, f.type) for f in tables[t.name].schema]
        want = [(f.name, f.type) for f in APP_ARROW_SCHEMAS[t.name]]
        if got != want:
            raise ValueError(
                f"table {t.name} has columns {got}, expected the app's {want} (same order)"
            )
    if engine.dialect.name == "postgresql":
        if defer_foreign_keys is None:
            defer_foreign_keys = sum(tables[t.name].num_rows for t in ordered) > BULK_ROWS
        _load_postgres(engine.url, [(t.name, tables[t.name]) for t in ordered], defer_foreign_keys)
    elif engine.dialect.name == "sqlite":
        with engine.begin() as conn:
            for t in ordered:
                columns = ", ".join(f'"{c}"' for c in tables[t.name].column_names)
                marks = ", ".join("?" for _ in tables[t.name].column_names)
                statement = f'INSERT INTO "{t.name}" ({columns}) VALUES ({marks})'
                for batch in tables[t.name].to_batches(max_chunksize=50_000):
                    if batch.num_rows:
                        conn.exec_driver_sql(statement, _sqlite_rows(batch))
    else:
        with engine.begin() as conn:
            for t in ordered:
                for batch in tables[t.name].to_batches(max_chunksize=50_000):
                    if batch.num_rows:
                        conn.execute(t.insert(), batch.to_pylist())
    return {t.name: tables[t.name].num_rows for t in ordered}


def _sqlite_rows(batch: pa.RecordBatch) -> list[tuple]:
    """Rows as SQLAlchemy stores them in SQLite: timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff'
    (UTC), dates as 'YYYY-MM-DD', decimals as floats, booleans as 0/1."""
    columns = []
    for column in batch.columns:
        kind = column.type
        if pa.types.is_timestamp(kind):
            column = pc.strftime(column, format="%Y-%m-%d %H:%M:%S")  # %S carries the micros
        elif pa.types.is_date32(kind):
            column = pc.strftime(column, format="%Y-%m-%d")
        elif pa.types.is_decimal(kind):
            column = column.cast(pa.float64())
        elif pa.types.is_boolean(kind):
            column = column.cast(pa.int8())
        columns.append(column.to_pylist())
    return list(zip(*columns, strict=True))


def _load_postgres(
    url: sa.URL, tables: list[tuple[str, pa.Table]], defer_foreign_keys: bool
) -> None:
    """One ADBC connection, one transaction: drop the foreign keys (if deferred), ingest
    every table, re-create the foreign keys, commit; on any error, roll back."""
    # Imported here: the driver costs 0.7 s to import (it brings pandas), which SQLite
    # seeding and everything that only generates data need not pay.
    import adbc_driver_postgresql.dbapi as adbc

    libpq_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = adbc.connect(libpq_url)  # autocommit off: everything below is one transaction
    try:
        step = "dropping foreign keys"
        try:
            with connection.cursor() as cursor:
                foreign_keys = []
                if defer_foreign_keys:
                    foreign_keys = _drop_foreign_keys(cursor, [name for name, _ in tables])
                for name, table in tables:
                    if table.num_rows:
                        step = f"loading {name}"
                        cursor.adbc_ingest(name, table, mode="append")
                for table_name, constraint, definition in foreign_keys:
                    step = f"checking {table_name}'s foreign key {constraint}"
                    cursor.execute(
                        f'ALTER TABLE "{table_name}" ADD CONSTRAINT "{constraint}" {definition}'
                    )
        except adbc.Error as error:
            detail = " ".join(str(error).split())
            raise ValueError(f"{step} failed, nothing was loaded: {detail}") from error
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.close()


def _drop_foreign_keys(cursor, table_names: list[str]) -> list[tuple[str, str, str]]:
    """Drop the foreign keys of these tables (inside the load's transaction) and return
    what re-creates them."""
    # App table names only (checked by the caller): plain identifiers, safe as literals.
    names = ", ".join(f"'{name}'" for name in table_names)
    cursor.execute(
        "SELECT c.relname, con.conname, pg_get_constraintdef(con.oid) "
        "FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid "
        "JOIN pg_namespace ns ON ns.oid = c.relnamespace "
        "WHERE con.contype = 'f' AND ns.nspname = current_schema() "
        f"AND c.relname IN ({names}) "
        "ORDER BY c.relname, con.conname"
    )
    foreign_keys = [tuple(row) for row in cursor.fetchall()]
    for table_name, constraint, _ in foreign_keys:
        cursor.execute(f'ALTER TABLE "{table_name}" DROP CONSTRAINT "{constraint}"')
    return foreign_keys
