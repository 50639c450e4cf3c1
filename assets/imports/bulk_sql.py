"""Bulk SQL inside one transaction: how an import's apply and undo write rows, and how
they select rows by long lists of ids.

On PostgreSQL, inserts go through COPY and updates through COPY into a temporary table
followed by one UPDATE ... FROM; the transaction runs at REPEATABLE READ, so a row someone
else changes meanwhile makes it fail rather than be overwritten. Elsewhere (SQLite),
executemany. Every write checks that it touched as many rows as it was given.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import orjson
import pyarrow as pa
import sqlalchemy as sa

from assets.imports.jobs import ImportJobError
from resources.schema import owner_column

StatementHook = Callable[[int, str], None]
# rows per CSV chunk sent to COPY: small enough that the server ingests one chunk while
# the next is written (one large chunk would leave the server idle while it is written)
COPY_BATCH_ROWS = 8_192


class BulkWriter:
    """Bulk writes inside one transaction, counting statements (and calling a hook after
    each, which tests use to fail or to stop in the middle)."""

    def __init__(self, conn: sa.Connection, on_statement: StatementHook | None):
        self.conn = conn
        self.on_statement = on_statement
        self.statements = 0
        self.is_postgres = conn.dialect.name == "postgresql"

    def _done(self, what: str) -> None:
        self.statements += 1
        if self.on_statement is not None:
            self.on_statement(self.statements, what)

    def execute(self, statement, params=None, what: str = "statement"):
        result = (
            self.conn.execute(statement, params)
            if params is not None
            else self.conn.execute(statement)
        )
        self._done(what)
        return result

    def insert(self, table: sa.Table, rows: pa.Table) -> None:
        if rows.num_rows == 0:
            return
        rows = rows.select([c.name for c in table.columns])
        if self.is_postgres:
            self._copy(table.name, rows)
        else:
            self.conn.execute(table.insert(), rows.to_pylist())
        self._done(f"insert {rows.num_rows} into {table.name}")

    def insert_records(self, table: sa.Table, records: Iterable[dict]) -> None:
        """A few large rows as dicts, sent one at a time (counted as one statement)."""
        count = 0
        for record in records:
            self.conn.execute(table.insert(), record)
            count += 1
        if count:
            self._done(f"insert {count} into {table.name}")

    def update(self, table: sa.Table, rows: pa.Table, user_id: str) -> None:
        """Set every column of the rows with these ids (only the user's rows)."""
        if rows.num_rows == 0:
            return
        rows = rows.select([c.name for c in table.columns])
        owner = owner_column(table.name)
        columns = [c.name for c in table.columns if c.name not in ("id", owner)]
        if self.is_postgres:
            temp = f"_gp_import_{table.name}"
            self.execute(
                sa.text(f'CREATE TEMP TABLE "{temp}" (LIKE "{table.name}") ON COMMIT DROP'),
                what=f"temp table for {table.name}",
            )
            self._copy(temp, rows)
            self._done(f"copy {rows.num_rows} updates of {table.name}")
            assignments = ", ".join(f'"{c}" = s."{c}"' for c in columns)
            result = self.execute(
                sa.text(
                    f'UPDATE "{table.name}" AS t SET {assignments} FROM "{temp}" AS s '
                    f'WHERE t.id = s.id AND t."{owner}" = :u'
                ),
                {"u": user_id},
                what=f"update {rows.num_rows} in {table.name}",
            )
            self.execute(sa.text(f'DROP TABLE "{temp}"'), what="drop temp table")
        else:
            statement = (
                table.update()
                .where(table.c.id == sa.bindparam("_id"), table.c[owner] == user_id)
                .values({c: sa.bindparam(c) for c in columns})
            )
            params = [
                {**{c: row[c] for c in columns}, "_id": row["id"]} for row in rows.to_pylist()
            ]
            result = self.execute(statement, params, what=f"update {rows.num_rows} in {table.name}")
        if result.rowcount not in (-1, rows.num_rows):
            raise ImportJobError(
                f"{table.name}: {rows.num_rows - result.rowcount} rows vanished while the import "
                "was applied; nothing was changed, preview again"
            )

    def delete(self, table: sa.Table, ids: list[str], user_id: str) -> None:
        if not ids:
            return
        owner = table.c[owner_column(table.name)]
        deleted = 0
        for clause in in_ids(self.conn, table.c.id, ids):
            statement = sa.delete(table).where(clause, owner == user_id)
            if self.is_postgres:
                deleted += self.execute(statement, what=f"delete from {table.name}").rowcount
            else:
                # SQLite cascades inside the statement: a row its parent's cascade deleted
                # first is not counted, so count what is there beforehand
                there = (
                    sa.select(sa.func.count()).select_from(table).where(clause, owner == user_id)
                )
                deleted += self.conn.execute(there).scalar_one()
                self.execute(statement, what=f"delete from {table.name}")
        if deleted != len(ids):
            raise ImportJobError(
                f"{table.name}: {len(ids) - deleted} rows to delete were already gone; nothing "
                "was changed, preview again"
            )

    def _copy(self, table_name: str, rows: pa.Table) -> None:
        import pyarrow.csv as pacsv  # PostgreSQL only; ~5 ms to import

        driver = self.conn.connection.driver_connection
        assert driver is not None, "a connection in use holds its driver's connection"
        cursor = driver.cursor()
        columns = ", ".join(f'"{c}"' for c in rows.column_names)
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        with cursor.copy(f'COPY "{table_name}" ({columns}) FROM STDIN (FORMAT csv)') as copy:
            for batch in rows.to_batches(max_chunksize=COPY_BATCH_ROWS):
                buffer = io.BytesIO()
                pacsv.write_csv(batch, buffer, options)
                copy.write(buffer.getbuffer())


def begin_repeatable_read(engine: sa.Engine) -> sa.Connection:
    """A connection whose transactions run at REPEATABLE READ on PostgreSQL."""
    conn = engine.connect()
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    return conn


def _chunks(values: list, size: int = 10_000):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def in_ids(conn: sa.Connection, column: sa.Column, ids: list[str]):
    """WHERE clauses selecting `column` IN `ids`: on PostgreSQL one parameter, the ids as a
    JSON array made an array by the server (a bind per id costs seconds to compile for
    50,000 ids; the driver writes a list parameter 40 times slower than orjson), batches of
    binds elsewhere."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import JSONB  # ~30 ms; SQLite never needs it

        as_json = sa.cast(sa.literal(orjson.dumps(list(ids)).decode(), sa.Text), JSONB)
        elements = sa.select(sa.func.jsonb_array_elements_text(as_json)).scalar_subquery()
        yield column == sa.any_(sa.func.array(elements))
        return
    for chunk in _chunks(list(ids), 500):
        yield column.in_(chunk)
