"""GDPR bundles for many users at once, without Dagster: the bulk job, the CLI and the
benchmark all call `GdprBundleExporter`.

The population is split into a bounded number of buckets by a stable hash of the user id
(`user_bucket`: the first 32 bits of MD5, mod the bucket count), computable in PostgreSQL
and Python alike, so a bucket is one cheap query on `User`. Within a list of users:

1. one GROUP BY query per table counts every user's live rows (the completeness check's
   reference, and what chunks are sized by);
2. users are packed into chunks of at most `max_rows_per_chunk` rows (a bigger user gets a
   chunk of their own), so memory is bounded by the chunk size or the largest user, never
   by the bucket or the population;
3. each chunk goes to a worker process, which extracts it (one query per table per chunk),
   turns the whole chunk's rows into export text (JSON, CSV) and checks its foreign keys
   at once, where Arrow's fixed cost per call is spread over many users (`split_chunk`),
   then renders every user's bundle from their slices and writes it to storage, returning
   only the file's metadata: rendering runs on every core, and no bundle's bytes cross
   processes;
4. the main process records one audit entry per bundle as each chunk finishes.

A user whose bundle does not match the live counts (rows written while it was made) is
extracted and rendered once more on their own; still different, the bundle is written
marked incomplete and the user is reported.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BIT

from assets.exports.workers import WorkerPool, share_per_task
from assets.formats.common import TABLE_NAMES
from assets.formats.csv import declared_references
from resources import schema
from resources.audit import new_id, subject_ref, utc_now
from resources.database import AppDatabase, ExtractedBatch, pg_text_array, split_by_user
from resources.erasure_fence import (
    delete_stored,
    erased_users,
    fence_users,
    is_main_storage,
    record_file_locations,
)
from resources.schema import owner_column
from resources.settings import export_expiry
from resources.storage import ObjectStorage, StoredObject
from resources.storage_layout import gdpr_bundle_key

if TYPE_CHECKING:
    from assets.gdpr.bundle import RowTexts

BUCKET_COUNT = 64
DEFAULT_MAX_ROWS_PER_CHUNK = 20_000
MIN_ROWS_PER_CHUNK = 2_000
_IN_LIST_SLICE = 5_000  # ids per IN (...) list: one query per table per slice

# goalport's own tables whose rows about a user go into the bundle's processing/records.json,
# with the column naming the user; binary columns (the wrapped key) never leave the database.
RECORD_SOURCES: dict[str, str] = {
    "DataExportJob": "userId",
    "DataImportJob": "userId",
    "ImportChange": "userId",
    "ExternalRef": "userId",
    "BackupConfig": "userId",
    "UserKey": "userId",
    "NotificationOutbox": "userId",
    "GoalTemplate": "authorId",
    "ErasureRequest": "userId",
    "ExportEncryption": "userId",
}


def user_bucket(user_id: str, buckets: int = BUCKET_COUNT) -> int:
    """The bucket of a user id: first 8 hex digits of MD5(UTF-8 id) as an integer, mod n."""
    return int(hashlib.md5(user_id.encode("utf-8")).hexdigest()[:8], 16) % buckets


def bucket_sql(column: sa.ColumnElement, buckets: int = BUCKET_COUNT) -> sa.ColumnElement:
    """`user_bucket` in PostgreSQL: ('x' || substr(md5(id), 1, 8))::bit(32)::bigint % n."""
    hex_bits = sa.literal("x", sa.Text) + sa.func.substr(sa.func.md5(column), 1, 8)
    as_bits = sa.cast(hex_bits, BIT(32))
    return sa.cast(as_bits, sa.BigInteger) % buckets


def bucket_user_ids(engine: sa.Engine, bucket: int, buckets: int = BUCKET_COUNT) -> list[str]:
    """Every user id in `bucket`, sorted."""
    if not 0 <= bucket < buckets:
        raise ValueError(f"bucket {bucket} is not between 0 and {buckets - 1}")
    user = schema.user
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            query = sa.select(user.c.id).where(bucket_sql(user.c.id, buckets) == bucket)
            return sorted(conn.execute(query).scalars())
        ids = conn.execute(sa.select(user.c.id)).scalars()
        return sorted(u for u in ids if user_bucket(u, buckets) == bucket)


def _slices(values: Sequence[str], size: int = _IN_LIST_SLICE) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


def _one_of(column: sa.ColumnElement, conn: sa.Connection, ids: list[str]) -> sa.ColumnElement:
    """`column IN ids`; on PostgreSQL as one array literal (`= ANY('{...}'::text[])`):
    compiling thousands of bound parameters costs more than the query itself."""
    if conn.dialect.name == "postgresql":
        return column == sa.any_(sa.literal_column(pg_text_array(ids)))
    return column.in_(ids)


def live_row_counts(conn: sa.Connection, user_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """{user: {table: rows}} for every app table and DataAuditLog: one query per table."""
    counts: dict[str, dict[str, int]] = {u: {} for u in user_ids}
    owned = [(t, t.c[owner_column(t.name)]) for t in schema.APP_TABLES]
    owned.append((schema.data_audit_log, schema.data_audit_log.c.userId))
    for part in _slices(list(user_ids)):
        for table, owner in owned:
            query = (
                sa.select(owner, sa.func.count()).where(_one_of(owner, conn, part)).group_by(owner)
            )
            for user_id, n in conn.execute(query):
                counts[user_id][table.name] = n
    for per_table in counts.values():
        for table, _owner in owned:
            per_table.setdefault(table.name, 0)
    return counts


def fetch_processing_rows(
    conn: sa.Connection, user_ids: Sequence[str]
) -> tuple[dict[str, list[dict]], dict[str, dict[str, list[dict]]]]:
    """(audit rows by user, {user: {table: rows}} of goalport's records): one query per table."""
    audit: dict[str, list[dict]] = {u: [] for u in user_ids}
    records: dict[str, dict[str, list[dict]]] = {
        u: {t: [] for t in RECORD_SOURCES} for u in user_ids
    }
    log = schema.data_audit_log
    for part in _slices(list(user_ids)):
        query = sa.select(log).where(_one_of(log.c.userId, conn, part))
        for row in conn.execute(query).mappings():
            audit[row["userId"]].append(dict(row))
        for name, owner_name in RECORD_SOURCES.items():
            table = schema.metadata.tables[name]
            owner = table.c[owner_name]
            columns = [c for c in table.columns if not isinstance(c.type, sa.LargeBinary)]
            query = (
                sa.select(*columns)
                .where(_one_of(owner, conn, part))
                .order_by(table.primary_key.columns.values()[0])
            )
            for row in conn.execute(query).mappings():
                records[row[owner_name]][name].append(dict(row))
    return audit, records


def plan_chunks(
    user_ids: Sequence[str], counts: Mapping[str, Mapping[str, int]], max_rows: int
) -> list[list[str]]:
    """Consecutive users packed into chunks of at most `max_rows` rows (a user bigger than
    that gets a chunk of their own)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    rows = 0
    for user_id in user_ids:
        size = sum(counts.get(user_id, {}).values()) or 1
        if current and rows + size > max_rows:
            chunks.append(current)
            current, rows = [], 0
        current.append(user_id)
        rows += size
    if current:
        chunks.append(current)
    return chunks


@dataclass(frozen=True)
class GdprBundleFile:
    user_id: str
    stored: StoredObject
    row_counts: dict[str, int]
    complete: bool

    @property
    def records(self) -> int:
        return sum(self.row_counts.values())


@dataclass
class GdprExportResult:
    bundles: list[GdprBundleFile] = field(default_factory=list)
    missing_user_ids: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    seconds: float = 0.0

    @property
    def incomplete_user_ids(self) -> list[str]:
        return [b.user_id for b in self.bundles if not b.complete]

    def extend(self, other: GdprExportResult) -> None:
        self.bundles.extend(other.bundles)
        self.missing_user_ids.extend(other.missing_user_ids)
        self.failed.update(other.failed)
        self.chunks += other.chunks
        self.seconds += other.seconds


@dataclass(frozen=True)
class _Settings:
    """What a worker process needs to rebuild its resources (they are not sent across)."""

    database_url: str
    storage_url: str
    storage_endpoint: str | None
    exported_at: dt.datetime
    texts: dict | None


_WORKER_RESOURCES: dict = {}


def _resources(settings: _Settings) -> tuple[AppDatabase, ObjectStorage]:
    key = (settings.database_url, settings.storage_url, settings.storage_endpoint)
    if key not in _WORKER_RESOURCES:
        _WORKER_RESOURCES[key] = (
            AppDatabase(url=settings.database_url),
            ObjectStorage(url=settings.storage_url, endpoint_url=settings.storage_endpoint),
        )
    return _WORKER_RESOURCES[key]


def export_chunk(
    settings: _Settings, user_ids: list[str], live_counts: dict[str, dict[str, int]]
) -> tuple[list[GdprBundleFile], list[str], dict[str, str]]:
    """A worker process's task: one chunk, with the worker's own connections."""
    database, storage = _resources(settings)
    return export_chunk_with(database, storage, settings, user_ids, live_counts)


def _export_planned_chunk(settings: _Settings, planned: tuple[int, list[str], dict]) -> tuple:
    """`export_chunk` of a (list index, chunk, live counts) task, as the worker pool sends it."""
    _index, user_ids, live_counts = planned
    return export_chunk(settings, user_ids, live_counts)


def export_chunk_with(
    database: AppDatabase,
    storage: ObjectStorage,
    settings: _Settings,
    user_ids: list[str],
    live_counts: dict[str, dict[str, int]],
) -> tuple[list[GdprBundleFile], list[str], dict[str, str]]:
    """Extract one chunk, render and store every user's bundle: (bundles, missing, failed)."""
    bundles, missing, failed = _render_and_store(database, storage, settings, user_ids, live_counts)
    retry = [b.user_id for b in bundles if not b.complete]
    if retry:  # rows changed while the chunk was read: once more, each user on their own
        bundles = [b for b in bundles if b.complete]
        for user_id in retry:
            with database.engine.connect() as conn:
                again = live_row_counts(conn, [user_id])
            done, gone, bad = _render_and_store(database, storage, settings, [user_id], again)
            bundles.extend(done)
            missing.extend(gone)
            failed.update(bad)
    return bundles, missing, failed


@dataclass
class UserRows:
    """One user's tables out of a chunk's, with what was worked out for the whole chunk at
    once: their rows as export text, and the foreign keys their rows leave dangling."""

    tables: dict[str, pa.Table]
    texts: dict[str, RowTexts] = field(default_factory=dict)
    dangling_references: set[tuple[str, str]] = field(default_factory=set)


def split_chunk(batch: ExtractedBatch) -> dict[str, UserRows]:
    """Every found user's rows: the tables as `ExtractedBatch.per_user` gives them, their
    `RowTexts`, made once per table for the whole chunk and split along with the rows, and
    their dangling foreign keys, also found once for the chunk."""
    from assets.gdpr.bundle import RowTexts, rows_as_text

    empty = schema.empty_app_tables()
    result = {uid: UserRows(dict(empty)) for uid in batch.found_user_ids}
    for name, table in batch.tables.items():
        texts = rows_as_text(table, excel=True)
        excel = texts.excel
        assert excel is not None, "asked for with excel=True"
        names, width = table.column_names, table.num_columns
        fields = [
            *table.schema,
            *(f.with_name(f"csv:{f.name}") for f in texts.csv.schema),
            *(f.with_name(f"excel:{f.name}") for f in excel.schema),
            pa.field("json:", pa.binary()),
        ]
        together = pa.Table.from_arrays(
            [*table.columns, *texts.csv.columns, *excel.columns, texts.json],
            schema=pa.schema(fields),
        )
        for uid, part in split_by_user(together, owner_column(name)):
            if uid in result:
                result[uid].tables[name] = part.select(range(width))
                result[uid].texts[name] = RowTexts(
                    json=part.column(3 * width).combine_chunks(),
                    csv=part.select(range(width, 2 * width)).rename_columns(names),
                    excel=part.select(range(2 * width, 3 * width)).rename_columns(names),
                )
    for uid, reference in dangling_references(batch.tables):
        if uid in result:
            result[uid].dangling_references.add(reference)
    return result


def dangling_references(tables: Mapping[str, pa.Table]) -> Iterator[tuple[str, tuple[str, str]]]:
    """(user, (table, column)) for each foreign key whose values in a user's rows are not
    all among that user's referenced rows: each key checked once for every user in the
    tables, as (owner, value) pairs against (owner, referenced value) pairs."""
    for name in TABLE_NAMES:
        for column, target, target_field, _resource in declared_references(name):
            values = tables[name][column]
            if values.null_count == len(values):
                continue
            owners = tables[name][owner_column(name)]
            if column == owner_column(name) and target_field == owner_column(target):
                pairs, referenced = owners, tables[target][target_field]  # (u, u): u says it
            else:
                pairs = pc.binary_join_element_wise(owners, values, "\x00")  # null: none
                referenced = pc.binary_join_element_wise(
                    tables[target][owner_column(target)], tables[target][target_field], "\x00"
                )
            missing = pc.and_(pc.is_valid(pairs), pc.invert(pc.is_in(pairs, referenced)))
            for uid in pc.unique(owners.filter(missing)).to_pylist():
                yield uid, (name, column)


def _render_and_store(
    database: AppDatabase,
    storage: ObjectStorage,
    settings: _Settings,
    user_ids: list[str],
    live_counts: Mapping[str, Mapping[str, int]],
) -> tuple[list[GdprBundleFile], list[str], dict[str, str]]:
    from assets.gdpr.bundle import render_gdpr_bundle

    per_user = split_chunk(database.extract(user_ids))
    with database.engine.connect() as conn:
        audit, records = fetch_processing_rows(conn, list(per_user))
    bundles, failed = [], {}
    for user_id in user_ids:
        rows = per_user.pop(user_id, None)
        if rows is None:
            continue
        counts = {name: t.num_rows for name, t in rows.tables.items()}
        live = dict(live_counts.get(user_id, {}))
        try:
            data = render_gdpr_bundle(
                rows.tables,
                user_id=user_id,
                exported_at=settings.exported_at,
                audit_rows=audit[user_id],
                texts=settings.texts,
                live_counts=live,
                records=records[user_id],
                subject_ref=subject_ref(user_id),
                row_texts=rows.texts,
                dangling_references=rows.dangling_references,
            )
        except ValueError as exc:
            failed[user_id] = str(exc)
            continue
        if erased_users(database.engine, [user_id]):  # the fence: erased since extraction
            continue
        stored = storage.write_bytes(gdpr_bundle_key(user_id, settings.exported_at), data)
        complete = all(live.get(n) == c for n, c in counts.items()) and live.get(
            "DataAuditLog"
        ) == len(audit[user_id])
        bundles.append(GdprBundleFile(user_id, stored, counts, complete))
    written = {b.user_id for b in bundles}
    missing = [u for u in user_ids if u not in written and u not in failed]
    return bundles, missing, failed


class GdprBundleExporter:
    """Writes GDPR bundles for lists of users (a bucket, the CLI's list), reusing one pool
    of worker processes (assets.exports.workers) across calls. Use as a context manager."""

    def __init__(
        self,
        database: AppDatabase,
        storage: ObjectStorage,
        *,
        exported_at: dt.datetime | None = None,
        texts: Mapping | None = None,
        workers: int | None = None,
        max_rows_per_chunk: int = DEFAULT_MAX_ROWS_PER_CHUNK,
        actor: str = "gdpr-bulk",
        record_audit: bool = True,
    ):
        from assets.gdpr.texts import check_gdpr_texts

        self.database = database
        self.storage = storage
        self.exported_at = exported_at or utc_now()
        self._pool = WorkerPool(workers)
        self.workers = self._pool.workers
        self.max_rows_per_chunk = max_rows_per_chunk
        self.actor = actor
        self.record_audit = record_audit
        self.settings = _Settings(
            database_url=database.resolved_url,
            storage_url=storage.resolved_url,
            storage_endpoint=storage.endpoint_url,
            exported_at=self.exported_at,
            texts=check_gdpr_texts(texts or {}),
        )
        # Workers are forked: what they import before the fork they never import again.
        import assets.gdpr.bundle  # noqa: F401

        if database.is_postgres:
            import adbc_driver_postgresql.dbapi  # noqa: F401

    def __enter__(self) -> GdprBundleExporter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._pool.close()

    def chunk_rows(self, total_rows: int) -> int:
        """Rows per chunk: at most `max_rows_per_chunk`, and small enough that one list
        makes several chunks per worker (else a bucket would run on one core), but not so
        small that queries outnumber users."""
        spread = share_per_task(total_rows, self.workers)
        return max(
            min(self.max_rows_per_chunk, spread), min(MIN_ROWS_PER_CHUNK, self.max_rows_per_chunk)
        )

    def export(
        self,
        user_ids: Iterable[str],
        *,
        on_user_done: Callable[[GdprBundleFile], None] | None = None,
    ) -> GdprExportResult:
        """Bundles for `user_ids` (unknown ids are reported as missing)."""
        return self.export_groups([user_ids], on_user_done=on_user_done)

    def export_groups(
        self,
        groups: Iterable[Iterable[str]],
        *,
        on_user_done: Callable[[GdprBundleFile], None] | None = None,
        on_group_done: Callable[[int, GdprExportResult], None] | None = None,
        keep_bundles: bool = True,
    ) -> GdprExportResult:
        """Bundles for several lists of users (buckets), read lazily, keeping every worker
        busy across the lists' boundaries; returns the total, and reports each list's
        result to `on_group_done(index, result)` when its last chunk is written.
        Without `keep_bundles` the total lists no bundle (one record a user would grow with
        the population): count them in `on_user_done`."""
        started = time.perf_counter()
        total = GdprExportResult()
        results: dict[int, GdprExportResult] = {}
        outstanding: dict[int, int] = {}
        group_started: dict[int, float] = {}

        def finished(index: int, outcome) -> None:
            bundles, missing, failed = outcome
            bundles = self._record_written(bundles)
            results[index].bundles.extend(bundles)
            if keep_bundles:
                total.bundles.extend(bundles)
            for result in (results[index], total):
                result.missing_user_ids.extend(missing)
                result.failed.update(failed)
            if on_user_done is not None:
                for bundle in bundles:
                    on_user_done(bundle)
            outstanding[index] -= 1
            if outstanding[index] == 0:
                results[index].seconds = time.perf_counter() - group_started[index]
                if on_group_done is not None:
                    on_group_done(index, results.pop(index))

        def planned() -> Iterator[tuple[int, list[str], dict]]:
            for index, group in enumerate(groups):
                user_ids = list(dict.fromkeys(group))
                group_started[index] = time.perf_counter()
                results[index] = GdprExportResult()
                with self.database.engine.connect() as conn:
                    counts = live_row_counts(conn, user_ids)
                rows = sum(sum(c.values()) for c in counts.values())
                chunks = plan_chunks(user_ids, counts, self.chunk_rows(rows))
                results[index].chunks = len(chunks)
                total.chunks += len(chunks)
                # counted before the first chunk is handed out, so a list is only reported
                # done after its last chunk
                outstanding[index] = len(chunks) + 1
                for chunk in chunks:
                    yield index, chunk, {u: counts[u] for u in chunk}
                outstanding[index] -= 1
                if outstanding[index] == 0:
                    results[index].seconds = time.perf_counter() - group_started[index]
                    if on_group_done is not None:
                        on_group_done(index, results.pop(index))

        outcomes = self._pool.map(
            functools.partial(_export_planned_chunk, self.settings),
            planned(),
            in_process=self._export_here,
            ordered=False,  # a bucket's big user holds back no other chunk
        )
        for (index, _chunk, _counts), outcome in outcomes:
            finished(index, outcome)
        total.seconds = time.perf_counter() - started
        return total

    def _export_here(self, planned: tuple[int, list[str], dict]) -> tuple:
        """`export_chunk` in this process, with the exporter's own database and storage."""
        _index, user_ids, live_counts = planned
        return export_chunk_with(self.database, self.storage, self.settings, user_ids, live_counts)

    def _record_written(self, bundles: list[GdprBundleFile]) -> list[GdprBundleFile]:
        """The final transaction of a chunk (the erasure fence): the bundles of users erased
        meanwhile are deleted and left out; the others get their audit entry (one INSERT
        per chunk) and their `FileLocation`, which expires like an export in the main
        storage (a copy elsewhere is the operator's, kept until the user is erased)."""
        if not bundles:
            return bundles
        now = utc_now()
        expires_at = now + export_expiry() if is_main_storage(self.storage) else None
        rows = [
            {
                "id": new_id("aud_"),
                "userId": b.user_id,
                "subjectRef": subject_ref(b.user_id),
                "operation": "export",
                "operationType": "gdpr",
                "dataTypes": json.dumps(sorted(t for t, n in b.row_counts.items() if n)),
                "recordCount": b.records,
                "actor": self.actor,
                "details": json.dumps(
                    {
                        "format": "gdpr-bundle",
                        "fileUrl": b.stored.url,
                        "fileSizeBytes": b.stored.size,
                        "checksum": "sha256:" + b.stored.sha256,
                        "complete": b.complete,
                    },
                    sort_keys=True,
                ),
                "createdAt": now,
            }
            for b in bundles
        ]
        with self.database.engine.begin() as conn:
            erased = fence_users(conn, [b.user_id for b in bundles])
            delete_stored(b.stored for b in bundles if b.user_id in erased)
            bundles = [b for b in bundles if b.user_id not in erased]
            written = [(b.user_id, b.stored.key) for b in bundles]
            record_file_locations(conn, self.storage, written, "gdpr-bundle", expires_at=expires_at)
            rows = [r for r in rows if r["userId"] not in erased]
            if rows and self.record_audit:
                conn.execute(schema.data_audit_log.insert(), rows)
        return bundles


def export_gdpr_bundles(
    database: AppDatabase,
    storage: ObjectStorage,
    user_ids: Sequence[str],
    **options,
) -> GdprExportResult:
    """Bundles for the given users (see GdprBundleExporter for the options)."""
    on_user_done = options.pop("on_user_done", None)
    with GdprBundleExporter(database, storage, **options) as exporter:
        return exporter.export(user_ids, on_user_done=on_user_done)
