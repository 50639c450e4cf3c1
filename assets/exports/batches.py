"""One batch export, without Dagster: extract once, render each user's files, store them.

The Dagster assets, the CLI and the request processor all call this, so every export takes
the same path. Rendering runs in worker processes (assets.exports.workers) when a batch has
more than one user and more than one core is free: XLSX rendering, not extraction, sets the
time of big exports.
Before rendering, the data-quality report of the batch (assets.quality: made once per batch,
by the `extracted_batch` asset or, without Dagster, here) keeps out the users whose data
breaks a rule; after, every file is proven complete (assets.exports.completeness).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from assets.exports.workers import WorkerPool, share_per_task, worker_count
from assets.formats.registry import REQUESTABLE_FORMATS, export_format
from assets.quality.report import QualityReport
from assets.quality.suites import check_batch_quality
from resources.database import AppDatabase, ExtractedBatch, ExtractFilter
from resources.erasure_fence import (
    delete_stored,
    erased_users,
    fence_users,
    is_main_storage,
    record_file_locations,
)
from resources.storage import ObjectStorage, StoredObject
from resources.storage_layout import export_key


class ExportRequestError(ValueError):
    """The request itself is wrong (unknown user, format, date); the message says how."""


@dataclass(frozen=True)
class ExportedFile:
    user_id: str
    format: str
    stored: StoredObject
    row_counts: dict[str, int]
    # The completeness check's result (assets.exports.completeness): the file, read back from
    # storage, holds every extracted row with the same content.
    completeness: dict = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(self.row_counts.values())


@dataclass
class BatchExportResult:
    files: list[ExportedFile] = field(default_factory=list)
    missing_user_ids: list[str] = field(default_factory=list)
    # user id -> why the user's export failed (data-quality rule or incomplete file), in
    # words a support person can act on. Their complete files, if any, are still in `files`.
    failed_users: dict[str, str] = field(default_factory=dict)
    # Files that failed the completeness check; they were deleted from storage.
    incomplete_files: list[ExportedFile] = field(default_factory=list)
    quality: QualityReport | None = None
    # seconds spent on the checks: "quality" (the suites, before rendering; "quality_cpu"
    # its CPU time) and "completeness" (reading files back, summed over the workers)
    timings: dict[str, float] = field(default_factory=dict)

    def by_user(self) -> dict[str, list[ExportedFile]]:
        result: dict[str, list[ExportedFile]] = {}
        for f in self.files:
            result.setdefault(f.user_id, []).append(f)
        return result


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower() for f in formats))
    unknown = [f for f in formats if f not in REQUESTABLE_FORMATS]
    if unknown or not formats:
        raise ExportRequestError(
            f"unknown export format {', '.join(unknown) or '(none given)'}: "
            f"choose from {', '.join(REQUESTABLE_FORMATS)}"
        )
    return formats


def parse_date(value: str | None, option: str) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ExportRequestError(f"{option}: {value!r} is not a date (use YYYY-MM-DD)") from exc


def make_filter(
    modules: Sequence[str] | None, since: str | None, until: str | None
) -> ExtractFilter:
    since_date, until_date = parse_date(since, "--since"), parse_date(until, "--until")
    if since_date and until_date and since_date > until_date:
        raise ExportRequestError(f"--since {since_date} is after --until {until_date}")
    chosen = tuple(m.strip().lower() for m in modules if m.strip()) if modules else None
    return ExtractFilter(modules=chosen or None, since=since_date, until=until_date)


def render_user_files(
    tables: dict[str, pa.Table],
    formats: Sequence[str],
    *,
    user_id: str,
    exported_at: dt.datetime,
    filters: dict | None,
) -> dict[str, bytes]:
    """Every requested format of one user's data, as bytes."""
    return {
        fmt: export_format(fmt).render(
            tables, user_id=user_id, exported_at=exported_at, filters=filters
        )
        for fmt in formats
    }


def _render_chunk(chunk: list[tuple], common: tuple) -> list[tuple[str, dict[str, bytes]]]:
    formats, exported_at, filters = common
    return [
        (
            user_id,
            render_user_files(
                _unpacked(tables),
                formats,
                user_id=user_id,
                exported_at=exported_at,
                filters=filters,
            ),
        )
        for user_id, tables, _ in chunk
    ]


def _render_and_verify_chunk(
    chunk: list[tuple], common: tuple
) -> list[tuple[str, dict[str, bytes], dict[str, dict]]]:
    """Render some users' files and read each back (in the worker: reading is slow, and
    reading a chunk's files of one format together is faster than one by one)."""
    from assets.exports.completeness import check_exports_completeness

    formats, exported_at, filters = common
    users = [user_id for user_id, _, _ in chunk]
    tables = [_unpacked(packed) for _, packed, _ in chunk]
    files = [
        render_user_files(t, formats, user_id=u, exported_at=exported_at, filters=filters)
        for u, t in zip(users, tables, strict=True)
    ]
    checksums = [sums for _, _, sums in chunk]
    completeness = {
        fmt: check_exports_completeness([f[fmt] for f in files], fmt, tables, checksums)
        for fmt in formats
    }
    return [
        (user_id, user_files, {fmt: completeness[fmt][i] for fmt in formats})
        for i, (user_id, user_files) in enumerate(zip(users, files, strict=True))
    ]


def render_batch(
    per_user: dict[str, dict[str, pa.Table]],
    formats: Sequence[str],
    *,
    exported_at: dt.datetime,
    filters: dict | None,
    workers: int | None = None,
) -> Iterable[tuple[str, dict[str, bytes]]]:
    """Yield (user id, files) for every user, rendering in parallel processes when it pays."""
    return _map_users(_render_chunk, per_user, formats, exported_at, filters, workers)


# Users per task sent to a rendering worker: enough to share the per-table costs of
# reading files back, few enough to keep every worker busy to the end of a batch.
USERS_PER_TASK = 16


def _map_users(
    task, per_user, formats, exported_at, filters, workers, extra: Mapping | None = None
) -> Iterable[tuple]:
    """Every user's result of `task(chunk, (formats, exported_at, filters))`, where a chunk
    is a list of (user id, tables, extra[user id]), in user id order; in worker processes
    (assets.exports.workers) when there is more than one user and more than one core."""
    users = sorted(per_user)
    extra = extra or {}
    common = (tuple(formats), exported_at, filters)
    if workers is None:
        workers = max(1, min(len(users), worker_count()))
    size = max(1, min(USERS_PER_TASK, share_per_task(len(users), workers)))
    chunks = (
        [(u, per_user[u], extra.get(u)) for u in users[i : i + size]]
        for i in range(0, len(users), size)
    )
    with WorkerPool(workers) as pool:
        for _chunk, results in pool.map(
            functools.partial(task, common=common), chunks, send=_packed_chunk
        ):
            yield from results


def _packed_chunk(chunk: list[tuple]) -> list[tuple]:
    return [(user_id, _packed(tables), extra) for user_id, tables, extra in chunk]


def _packed(tables: dict[str, pa.Table]) -> dict[str, bytes]:
    """A user's tables as Arrow IPC streams, to send to a worker process. A user's tables
    are slices of the batch's; pickled, a slice carries the whole batch's buffers along
    (68 MB per user of a 2,000-user batch), IPC writes only the slice."""
    packed = {}
    for name, table in tables.items():
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        packed[name] = sink.getvalue().to_pybytes()
    return packed


def _unpacked(tables: dict) -> dict[str, pa.Table]:
    return {
        name: pa.ipc.open_stream(t).read_all() if isinstance(t, bytes) else t
        for name, t in tables.items()
    }


def export_users(
    database: AppDatabase,
    storage: ObjectStorage,
    user_ids: Sequence[str],
    formats: Sequence[str],
    filters: ExtractFilter | None = None,
    *,
    exported_at: dt.datetime | None = None,
    on_user_done: Callable[[str, list[ExportedFile]], None] | None = None,
    workers: int | None = None,
    quality_gate: bool = True,
) -> BatchExportResult:
    """Extract `user_ids` in one batch and write each user's files in every format; with
    `quality_gate`, the suites run once on the batch and keep out the users that fail.
    Files written outside the main storage (`goalport export --out`) are recorded in
    `FileLocation` for erasure; a user erased meanwhile keeps no file (the fence)."""
    formats = check_formats(formats)
    exported_at = exported_at or dt.datetime.now(dt.UTC)
    batch = database.extract(user_ids, filters)
    record = not is_main_storage(storage)

    def user_done(user_id: str, files: list[ExportedFile]) -> None:
        with database.engine.begin() as conn:
            if fence_users(conn, [user_id]):
                delete_stored(f.stored for f in files)
                files = []
            elif record:
                keys = [(user_id, f.stored.key) for f in files]
                record_file_locations(conn, storage, keys, "export")
        if on_user_done is not None:
            on_user_done(user_id, files)

    return write_batch(
        batch,
        storage,
        formats,
        exported_at=exported_at,
        on_user_done=user_done,
        workers=workers,
        quality_gate=quality_gate,
        skip_user=lambda user_id: bool(erased_users(database.engine, [user_id])),
    )


def write_batch(
    batch: ExtractedBatch,
    storage: ObjectStorage,
    formats: Sequence[str],
    *,
    exported_at: dt.datetime,
    on_user_done: Callable[[str, list[ExportedFile]], None] | None = None,
    workers: int | None = None,
    key_suffix: Callable[[str], str] | None = None,
    quality_gate: bool = True,
    quality: QualityReport | None = None,
    skip_user: Callable[[str], bool] | None = None,
    seal: Callable[[str], Callable[[bytes], bytes] | None] | None = None,
) -> BatchExportResult:
    """Render and store every found user of an extracted batch.

    With `quality_gate`, a user with any row failing a data-quality rule is not rendered:
    `failed_users` says which table, rule, rows and ids. `quality` is the report of the
    suites already run on this batch (or on a batch it was cut from: the `extracted_batch`
    asset's); without one the suites run here, once.
    Every file is proven complete (assets.exports.completeness): read with goalport's reader for
    its format and compared, table by table, with what was extracted (in the rendering
    worker), then read back from storage and matched byte for byte (SHA-256) with the
    file that was checked. An incomplete file is deleted and its user failed.
    `on_user_done` is called once per user with the files that passed (none for a user
    the gate stopped). A user for whom `skip_user` says True just before their files would
    be stored (the erasure fence: erased since extraction) gets no file and no call.
    `seal(user_id)`, when it gives a function, encrypts that user's files after they were
    checked (an encrypted request, `assets.exports.encryption`): the file is stored as
    `<name>.age`, and the stored copy is matched with the encrypted bytes.
    """
    import time

    from assets.exports.completeness import (
        batch_checksums,
        confirm_stored_copy,
        describe_completeness_failure,
    )

    per_user = batch.per_user()
    result = BatchExportResult(missing_user_ids=[u for u in batch.user_ids if u not in per_user])
    filters = batch.filters.as_dict()
    if quality_gate:
        report = quality if quality is not None else check_batch_quality(batch)
        result.quality = report
        result.timings["quality"] = report.seconds
        result.timings["quality_cpu"] = report.cpu_seconds
        for user_id in sorted(report.affected_user_ids & per_user.keys()):
            result.failed_users[user_id] = report.user_message(user_id)
            del per_user[user_id]
            if on_user_done is not None:
                on_user_done(user_id, [])
    started = time.perf_counter()
    checksums = batch_checksums(batch.tables, per_user)
    verifying = time.perf_counter() - started
    for user_id, files, completeness_by_format in _map_users(
        _render_and_verify_chunk, per_user, formats, exported_at, filters, workers, checksums
    ):
        if skip_user is not None and skip_user(user_id):
            continue
        counts = {name: t.num_rows for name, t in per_user[user_id].items()}
        written, problems = [], []
        sealer = seal(user_id) if seal is not None else None
        for fmt, data in files.items():
            suffix = key_suffix(user_id) if key_suffix else ""
            extension = export_format(fmt).extension
            checked = completeness_by_format[fmt]
            if sealer is not None:
                data = sealer(data)
                extension += ".age"
                checked = {
                    **checked,
                    "plaintext_sha256": checked["sha256"],
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "bytes": len(data),
                    "encrypted": "age",
                }
            key = export_key(user_id, extension, exported_at, suffix)
            stored = storage.write_bytes(key, data)
            started = time.perf_counter()
            completeness = confirm_stored_copy(checked, storage.read_bytes(key))
            verifying += time.perf_counter() - started + completeness.get("seconds", 0.0)
            exported = ExportedFile(user_id, fmt, stored, counts, completeness)
            if completeness["passed"]:
                written.append(exported)
            else:
                # A file that does not hold all of the user's data must not be handed out.
                storage.delete(key)
                result.incomplete_files.append(exported)
                problems.append(describe_completeness_failure(completeness))
        if problems:
            result.failed_users[user_id] = (
                "not exported: " + "; ".join(problems) + " (the file was deleted; export again)"
            )
        result.files.extend(written)
        if on_user_done is not None:
            on_user_done(user_id, written)
    result.timings["completeness"] = verifying
    return result
