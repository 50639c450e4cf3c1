"""The app database: connections, and extraction of users' rows into Arrow tables.

Extraction reads every app table for a whole batch of users with one query per table
(never one per user), then sorts once and slices per user. On PostgreSQL the read path is
ADBC's driver, which streams the server's binary COPY format straight into Arrow; numeric
columns travel as scaled integers and are rebuilt as exact decimals (PERFORMANCE.md: decoding
numeric is most of the cost otherwise). On SQLite, the embedded default, rows come through
SQLAlchemy and are typed with the same Arrow schemas.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pydantic
import sqlalchemy as sa
from pydantic import PrivateAttr

from resources import schema
from resources.settings import database_url, normalise_database_url


class DatabaseUnavailableError(RuntimeError):
    """The database cannot be reached or is not migrated; the message says which."""


@dataclass(frozen=True)
class ExtractFilter:
    """What part of the users' data to extract.

    `modules` limits goals to those of the named module kinds (and brings the Bible and
    work tables only when "bible" / "work" is named). `since`/`until` (inclusive dates,
    UTC) limit the activity tables (progress, achievements, readings, notes, tasks); the
    structure they hang from (user, modules, goals, plans, projects) is kept whole so every
    reference in an export resolves.
    """

    modules: tuple[str, ...] | None = None
    since: dt.date | None = None
    until: dt.date | None = None

    def includes_table(self, table_name: str) -> bool:
        if self.modules is None:
            return True
        for kind, tables in schema.MODULE_TABLES.items():
            if table_name in tables:
                return kind in self.modules
        return True

    def as_dict(self) -> dict:
        return {
            "modules": list(self.modules) if self.modules is not None else None,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


@dataclass
class ExtractedBatch:
    """One Arrow table per app table, holding the rows of every user of a batch."""

    user_ids: tuple[str, ...]
    tables: dict[str, pa.Table]
    filters: ExtractFilter = field(default_factory=ExtractFilter)

    def row_counts(self) -> dict[str, int]:
        return {name: t.num_rows for name, t in self.tables.items()}

    @property
    def found_user_ids(self) -> set[str]:
        return set(self.tables["User"]["id"].to_pylist())

    def per_user(self) -> dict[str, dict[str, pa.Table]]:
        """Every user's own tables, sorted by id: sort once per table, then slice."""
        empty = schema.empty_app_tables()  # immutable: one set shared by every user
        result: dict[str, dict[str, pa.Table]] = {uid: dict(empty) for uid in self.found_user_ids}
        for name, table in self.tables.items():
            for uid, part in split_by_user(table, schema.owner_column(name)):
                if uid in result:
                    result[uid][name] = part
        return result


def split_by_user(table: pa.Table, owner_column: str = "userId") -> Iterable[tuple[str, pa.Table]]:
    """Yield (user id, that user's rows sorted by id) with one sort for the whole table."""
    if table.num_rows == 0:
        return
    encoded = pc.dictionary_encode(table[owner_column]).combine_chunks()
    owners = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.lexsort((_id_rank(table), codes))
    ordered = table.take(pa.array(order))
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(sorted_codes)]))
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        yield owners[sorted_codes[start]], ordered.slice(start, end - start)


def _id_rank(table: pa.Table) -> np.ndarray:
    """Each row's position in id order (byte order of the UTF-8 text, as in C collation)."""
    return pc.rank(table["id"], sort_keys="ascending", tiebreaker="first").to_numpy()


class AppDatabase(dg.ConfigurableResource):
    """The app's database (PostgreSQL in production, SQLite embedded), read in batches."""

    url: str = pydantic.Field(
        default="",
        description="SQLAlchemy URL; empty means GOALPORT_DATABASE_URL, else ./var/goalport.db",
    )

    _engine: sa.Engine | None = PrivateAttr(default=None)

    @property
    def resolved_url(self) -> str:
        return normalise_database_url(self.url) if self.url else database_url()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = make_engine(self.resolved_url)
        return self._engine

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def check_reachable(self) -> None:
        check_database(self.engine)

    def extract(
        self, user_ids: Sequence[str], filters: ExtractFilter | None = None
    ) -> ExtractedBatch:
        filters = filters or ExtractFilter()
        user_ids = tuple(dict.fromkeys(user_ids))
        names = [t.name for t in schema.APP_TABLES]
        tables = self.extract_tables(names, user_ids, filters)
        return ExtractedBatch(user_ids=user_ids, tables=tables, filters=filters)

    def extract_tables(
        self, table_names: Sequence[str], user_ids: Sequence[str], filters: ExtractFilter
    ) -> dict[str, pa.Table]:
        """The named app tables' rows of `user_ids`: one query per table."""
        tables = {}
        reader = _AdbcReader(self.engine.url) if self.is_postgres else None
        try:
            for name in table_names:
                table = schema.metadata.tables[name]
                if not filters.includes_table(name):
                    tables[name] = schema.empty_app_table(name)
                    continue
                query = extract_query(table, user_ids, filters, inline_ids=reader is not None)
                if reader is not None:
                    tables[name] = reader.read(table, query)
                else:
                    tables[name] = _read_with_sqlalchemy(self.engine, table, query)
        finally:
            if reader is not None:
                reader.close()
        return tables

    def existing_user_ids(self, user_ids: Sequence[str]) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(schema.user.c.id).where(schema.user.c.id.in_(list(user_ids)))
            )
            return {r[0] for r in rows}

    def all_user_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(schema.user.c.id).order_by("id"))]

    def teardown_after_execution(self, context) -> None:  # noqa: ARG002
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@contextmanager
def transaction(bind: sa.Engine | sa.Connection) -> Iterator[sa.Connection]:
    """A connection in a transaction: a new one of the engine's, committed when the block
    ends; or the caller's connection as it is, so that the work joins the caller's
    transaction (which the caller commits or rolls back, e.g. with the API's audit row)."""
    if isinstance(bind, sa.Connection):
        yield bind
        return
    with bind.begin() as conn:
        yield conn


def make_engine(url: str) -> sa.Engine:
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)


def check_database(engine: sa.Engine) -> None:
    """Raise DatabaseUnavailableError saying what is wrong if the database is unusable."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            has_schema = sa.inspect(conn).has_table("User")
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailableError(f"cannot reach the database at {where}: {reason}") from exc
    if not has_schema:
        raise DatabaseUnavailableError(
            f"the database at {where} has no goalport schema: run `goalport db upgrade`"
        )


def extract_query(
    table: sa.Table,
    user_ids: Sequence[str],
    filters: ExtractFilter,
    *,
    inline_ids: bool = False,
) -> sa.Select:
    """One SELECT of the batch's rows of `table`, with the filters pushed down.

    `inline_ids` writes the ids as one PostgreSQL array literal instead of a bound
    parameter each: compiling thousands of literal binds costs seconds, this costs nothing.
    """
    owner = table.c[schema.owner_column(table.name)]
    if inline_ids:
        query = sa.select(table).where(owner == sa.any_(sa.literal_column(pg_text_array(user_ids))))
    else:
        query = sa.select(table).where(owner.in_(list(user_ids)))
    if filters.modules is not None:
        query = _filter_by_modules(query, table, filters.modules)
    date_column = schema.DATE_COLUMNS.get(table.name)
    if date_column is not None:
        column = table.c[date_column]
        is_timestamp = isinstance(column.type, sa.DateTime)
        if filters.since is not None:
            since = _utc_midnight(filters.since) if is_timestamp else filters.since
            query = query.where(column >= since)
        if filters.until is not None:
            if is_timestamp:
                query = query.where(column < _utc_midnight(filters.until + dt.timedelta(days=1)))
            else:
                query = query.where(column <= filters.until)
    return query


def pg_text_array(values: Sequence[str]) -> str:
    """`'{"a","b"}'::text[]`, quoted so that any text (quotes, backslashes) stays itself."""
    elements = ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "'{" + elements.replace("'", "''") + "}'::text[]"


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _filter_by_modules(query: sa.Select, table: sa.Table, kinds: Sequence[str]) -> sa.Select:
    module, goal = schema.module, schema.goal
    chosen_modules = sa.select(module.c.id).where(module.c.kind.in_(list(kinds)))
    chosen_goals = sa.select(goal.c.id).where(goal.c.moduleId.in_(chosen_modules))
    if table is module:
        return query.where(module.c.kind.in_(list(kinds)))
    if table is goal:
        return query.where(goal.c.moduleId.in_(chosen_modules))
    if table.name in ("Progress", "Achievement"):
        return query.where(table.c.goalId.in_(chosen_goals))
    if table.name == "WorkProject":
        return query.where(sa.or_(table.c.goalId.is_(None), table.c.goalId.in_(chosen_goals)))
    return query


class _AdbcReader:
    """Reads SELECTs from PostgreSQL straight into Arrow through ADBC's driver."""

    def __init__(self, url: sa.URL):
        import adbc_driver_postgresql.dbapi as adbc

        libpq_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection = adbc.connect(libpq_url)
        self._dialect = sa.dialects.postgresql.dialect()

    def read(self, table: sa.Table, query: sa.Select) -> pa.Table:
        scaled = _scale_numeric_columns(table, query)
        sql = str(scaled.compile(dialect=self._dialect, compile_kwargs={"literal_binds": True}))
        with self._connection.cursor() as cursor:
            cursor.execute(sql)
            raw = cursor.fetch_arrow_table()
        return _to_schema(table, raw, numerics_scaled=True)

    def close(self) -> None:
        self._connection.close()


def _numeric_scales(table: sa.Table) -> dict[str, int]:
    """The scale s of each numeric(p, s) column, by name; the schema gives every one its s."""
    scales = {}
    for c in table.columns:
        if isinstance(c.type, sa.Numeric) and not isinstance(c.type, sa.Float):
            if c.type.scale is None:
                raise TypeError(f"{table.name}.{c.name} is numeric without a scale")
            scales[c.name] = c.type.scale
    return scales


def _scale_numeric_columns(table: sa.Table, query: sa.Select) -> sa.Select:
    """Select numeric(p, s) columns as the integer value * 10^s: exact and cheap to decode."""
    scales = _numeric_scales(table)
    if not scales:
        return query
    columns = [
        sa.cast(c * (10 ** scales[c.name]), sa.BigInteger).label(c.name) if c.name in scales else c
        for c in table.columns
    ]
    return query.with_only_columns(*columns)


def _to_schema(table: sa.Table, raw: pa.Table, *, numerics_scaled: bool) -> pa.Table:
    target = schema.APP_ARROW_SCHEMAS[table.name]
    arrays = []
    for target_field in target:
        column = raw[target_field.name]
        if numerics_scaled and pa.types.is_decimal(target_field.type):
            column = _decimal_from_scaled(column, target_field.type)
        elif column.type != target_field.type:
            column = column.cast(target_field.type)
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=target)


def _decimal_from_scaled(
    column: pa.ChunkedArray, decimal_type: pa.Decimal128Type
) -> pa.ChunkedArray:
    """int64 holding value * 10^scale -> decimal128(p, scale), exactly (a zero-copy view)."""
    as_integer_decimal = column.cast(pa.decimal128(38, 0))
    return pa.chunked_array(
        [chunk.view(decimal_type) for chunk in as_integer_decimal.chunks], type=decimal_type
    )


def _read_with_sqlalchemy(engine: sa.Engine, table: sa.Table, query: sa.Select) -> pa.Table:
    with engine.connect() as conn:
        return schema.rows_to_arrow(table, conn.execute(query).fetchall())
