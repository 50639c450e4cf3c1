"""Opening an uploaded SQLite database (Things 3's `main.sqlite`) without trusting it.

The bytes are checked before SQLite sees them (magic, page size, the header's page count
against the size caps and the bytes actually uploaded), then written to a private
temporary folder (files 0600) that is deleted afterwards, and opened read-only by URI with
`trusted_schema=OFF` (a view or trigger cannot call functions with side effects),
`cell_size_check=ON` (a corrupt page is an error, not a crash), no extensions, tight
length limits, and a deadline enforced by a progress handler, so a hostile view or a
recursive query ends in ImportFormatError instead of running for ever.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from assets.imports.parsers.base import ImportFormatError

SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class SqliteLimits:
    max_file_bytes: int = 512 * 1024 * 1024
    max_pages: int = 4 * 1024 * 1024
    max_seconds: float = 30.0
    max_value_bytes: int = 16 * 1024 * 1024


SQLITE_LIMITS = SqliteLimits()


def is_sqlite(data: bytes) -> bool:
    return data[:16] == SQLITE_MAGIC


def check_header(data: bytes, wal: bytes | None, file_name: str, limits: SqliteLimits) -> None:
    """Refuse what SQLite should never be asked to open: not SQLite, or sizes out of bounds."""
    if len(data) < 100 or not is_sqlite(data):
        raise ImportFormatError(file_name, None, None, "not an SQLite database")
    size = len(data) + len(wal or b"")
    if size > limits.max_file_bytes:
        raise ImportFormatError(file_name, None, None, f"the database is too large ({size} bytes)")
    page_size = struct.unpack(">H", data[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise ImportFormatError(file_name, "header", "page size", f"{page_size} is not valid")
    pages = struct.unpack(">I", data[28:32])[0]
    uploaded_pages = size // page_size + 1
    if pages > limits.max_pages or pages > uploaded_pages:
        raise ImportFormatError(
            file_name,
            "header",
            "page count",
            f"claims {pages} pages, but {uploaded_pages} were uploaded (limit {limits.max_pages})",
        )


def _write_private(path: str, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)


@contextmanager
def open_untrusted_sqlite(
    data: bytes,
    *,
    file_name: str,
    wal: bytes | None = None,
    limits: SqliteLimits = SQLITE_LIMITS,
) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a private copy of `data` (and its `-wal`), gone after."""
    check_header(data, wal, file_name, limits)
    folder = tempfile.mkdtemp(prefix="goalport-sqlite-")  # mode 0700
    connection: sqlite3.Connection | None = None
    try:
        path = os.path.join(folder, "main.sqlite")
        _write_private(path, data)
        if wal:
            _write_private(path + "-wal", wal)
        try:
            connection = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            _harden(connection, limits)
        except sqlite3.Error as exc:
            raise ImportFormatError(file_name, None, None, f"cannot be opened ({exc})") from None
        yield connection
    finally:
        if connection is not None:
            connection.close()
        shutil.rmtree(folder, ignore_errors=True)


def _harden(connection: sqlite3.Connection, limits: SqliteLimits) -> None:
    if hasattr(connection, "enable_load_extension"):  # absent when Python was built without
        connection.enable_load_extension(False)
    connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
    connection.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000)
    connection.setlimit(sqlite3.SQLITE_LIMIT_EXPR_DEPTH, 100)
    connection.setlimit(sqlite3.SQLITE_LIMIT_COMPOUND_SELECT, 20)
    connection.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    connection.setlimit(sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH, 1)
    for pragma in (
        "trusted_schema=OFF",
        "cell_size_check=ON",
        "query_only=ON",
        "mmap_size=0",
        "temp_store=MEMORY",
    ):
        connection.execute(f"PRAGMA {pragma}")
    deadline = time.monotonic() + limits.max_seconds
    connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)


def query(connection: sqlite3.Connection, sql: str, file_name: str, what: str) -> list[tuple]:
    """All rows of `sql`; any SQLite error (corruption, the deadline) names the file."""
    try:
        return connection.execute(sql).fetchall()
    except sqlite3.Error as exc:
        reason = "took too long" if "interrupt" in str(exc) else f"cannot be read ({exc})"
        raise ImportFormatError(file_name, what, None, reason) from None


def table_kinds(connection: sqlite3.Connection, file_name: str) -> dict[str, str]:
    """Name -> 'table' or 'view' for the schema's tables and views."""
    rows = query(
        connection,
        "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view')",
        file_name,
        "schema",
    )
    return {str(name): str(kind) for name, kind in rows}


def columns_of(connection: sqlite3.Connection, table: str, file_name: str) -> set[str]:
    rows = query(connection, f'PRAGMA table_info("{table}")', file_name, table)
    return {str(row[1]) for row in rows}
