"""One batch export, without Dagster: extract once, render each user's files, store them.

The Dagster assets, the CLI and the request processor all call this, so every export takes
the same path. Rendering runs in a process pool when a batch has more than one user and
more than one core is free: XLSX rendering, not extraction, sets the time of big exports.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from resources.database import AppDatabase, ExtractedBatch, ExtractFilter
from resources.storage import ObjectStorage, StoredObject

# format name -> (file extension, media type)
EXPORT_FORMATS: dict[str, tuple[str, str]] = {
    "json": ("json", "application/json"),
    "csv": ("csv.zip", "application/zip"),
    "xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "parquet": ("parquet.zip", "application/zip"),
}


class ExportRequestError(ValueError):
    """The request itself is wrong (unknown user, format, date); the message says how."""


@dataclass(frozen=True)
class ExportedFile:
    user_id: str
    format: str
    stored: StoredObject
    row_counts: dict[str, int]

    @property
    def records(self) -> int:
        return sum(self.row_counts.values())


@dataclass
class BatchExportResult:
    files: list[ExportedFile] = field(default_factory=list)
    missing_user_ids: list[str] = field(default_factory=list)

    def by_user(self) -> dict[str, list[ExportedFile]]:
        result: dict[str, list[ExportedFile]] = {}
        for f in self.files:
            result.setdefault(f.user_id, []).append(f)
        return result


def check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    formats = tuple(dict.fromkeys(f.strip().lower() for f in formats))
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown or not formats:
        raise ExportRequestError(
            f"unknown export format {', '.join(unknown) or '(none given)'}: "
            f"choose from {', '.join(EXPORT_FORMATS)}"
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


def export_key(user_id: str, fmt: str, exported_at: dt.datetime, suffix: str = "") -> str:
    """exports/<user>/<UTC time>[-<suffix>].<ext>: one folder per user, erasable as a whole."""
    stamp = exported_at.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    tail = f"-{suffix}" if suffix else ""
    return f"exports/{user_id}/{stamp}{tail}.{EXPORT_FORMATS[fmt][0]}"


def render_user_files(
    tables: dict[str, pa.Table],
    formats: Sequence[str],
    *,
    user_id: str,
    exported_at: dt.datetime,
    filters: dict | None,
) -> dict[str, bytes]:
    """Every requested format of one user's data, as bytes."""
    from assets import renderers

    render = {
        "json": renderers.render_json,
        "csv": renderers.render_csv_zip,
        "xlsx": renderers.render_xlsx,
        "parquet": renderers.render_parquet_zip,
    }
    return {
        fmt: render[fmt](tables, user_id=user_id, exported_at=exported_at, filters=filters)
        for fmt in formats
    }


def _render_task(args: tuple) -> tuple[str, dict[str, bytes]]:
    user_id, tables, formats, exported_at, filters = args
    return user_id, render_user_files(
        tables, formats, user_id=user_id, exported_at=exported_at, filters=filters
    )


def render_batch(
    per_user: dict[str, dict[str, pa.Table]],
    formats: Sequence[str],
    *,
    exported_at: dt.datetime,
    filters: dict | None,
    workers: int | None = None,
) -> Iterable[tuple[str, dict[str, bytes]]]:
    """Yield (user id, files) for every user, rendering in parallel processes when it pays."""
    tasks = [(uid, per_user[uid], tuple(formats), exported_at, filters) for uid in sorted(per_user)]
    workers = workers if workers is not None else min(len(tasks), os.cpu_count() or 1)
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_render_task, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(_render_task, tasks, chunksize=max(1, len(tasks) // (workers * 8)))


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
) -> BatchExportResult:
    """Extract `user_ids` in one batch and write each user's files in every format."""
    formats = check_formats(formats)
    exported_at = exported_at or dt.datetime.now(dt.UTC)
    batch = database.extract(user_ids, filters)
    return write_batch(
        batch,
        storage,
        formats,
        exported_at=exported_at,
        on_user_done=on_user_done,
        workers=workers,
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
) -> BatchExportResult:
    """Render and store every found user of an extracted batch."""
    per_user = batch.per_user()
    result = BatchExportResult(missing_user_ids=[u for u in batch.user_ids if u not in per_user])
    filters = batch.filters.as_dict()
    for user_id, files in render_batch(
        per_user, formats, exported_at=exported_at, filters=filters, workers=workers
    ):
        counts = {name: t.num_rows for name, t in per_user[user_id].items()}
        written = []
        for fmt, data in files.items():
            suffix = key_suffix(user_id) if key_suffix else ""
            stored = storage.write_bytes(export_key(user_id, fmt, exported_at, suffix), data)
            written.append(ExportedFile(user_id, fmt, stored, counts))
        result.files.extend(written)
        if on_user_done is not None:
            on_user_done(user_id, written)
    return result
