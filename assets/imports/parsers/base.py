"""The contract every foreign-export parser keeps, and the pieces they share.

A parser turns one file from another app (Todoist, Trello, ...) into `ParsedImport`: Arrow
tables shaped exactly like the app's (`APP_ARROW_SCHEMAS`), where every `id` is a stable
external key `"<app>:<kind>:<external id>"` and `userId` is empty. The import pipeline fills
in the user and swaps external keys for local ids through `ExternalRef`, so re-importing a
newer dump of the same account lands on the same rows. What has no column in the app goes
to `extras` (kept with the row's ExternalRef), and `report` says what became what.

`ImportBuilder` holds the rules common to all apps (three goal levels at most, priorities
1..5, millisecond UTC timestamps, orphans under the import's root goal, cycles cut, every
row fitted to the app's rules by `normalise`, nothing dropped or changed without a report
entry), and `safe_zip_members` is the one way parsers open archives.

Why one module, longer than 800 lines: it is the one contract every parser (of every app)
builds on, and splitting the builder from the report types and archive guards it uses
would only trade one module for three import cycles.
"""

from __future__ import annotations

import datetime as dt
import gc
import io
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, overload

import pyarrow as pa

from assets.imports.parsers.normalise import (
    MODULE_NAME_LIMIT,
    normalise_achievement,
    normalise_goal,
    normalise_progress,
    shortened,
)
from resources.schema import APP_ARROW_SCHEMAS

GOAL_LEVELS = 3
DEFAULT_PRIORITY = 2
CENTS = Decimal("0.01")
MAX_PROGRESS_VALUE = Decimal("9999999999.99")


class ImportFormatError(ValueError):
    """A file that cannot be read as the export it claims to be; says where and why."""

    def __init__(self, file: str | None, row: int | str | None, field: str | None, reason: str):
        self.file = file or "<upload>"
        self.row = row
        self.field = field
        self.reason = reason
        where = [self.file]
        if row is not None:
            where.append(f"row {row}" if isinstance(row, int) else str(row))
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {reason}")


@dataclass
class MappingEntry:
    """One line of the mapping report: a source item and what it became (or why not)."""

    source_item: str
    external_key: str | None
    target_table: str | None
    action: str = "imported"  # imported, adjusted, flattened, skipped
    reason: str = ""
    count: int = 1
    # what was changed to fit the app's rules, one sentence each (`normalise`)
    adjustments: list[str] = field(default_factory=list)
    # skipped because it could not be mapped at all (not left out on purpose): counts
    # toward the import's share of bad rows
    bad: bool = False


@dataclass
class ParsedImport:
    source_app: str
    tables: dict[str, pa.Table]
    extras: dict[str, dict] = field(default_factory=dict)
    report: list[MappingEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def row_counts(self) -> dict[str, int]:
        return {name: table.num_rows for name, table in self.tables.items()}

    def skipped(self) -> list[MappingEntry]:
        return [entry for entry in self.report if entry.action == "skipped"]

    def adjusted(self) -> list[MappingEntry]:
        return [entry for entry in self.report if entry.adjustments]

    def unmappable_rows(self) -> int:
        """Source rows skipped because they could not be mapped at all."""
        return sum(entry.count for entry in self.report if entry.bad)


def require_content(data: bytes, file_name: str) -> None:
    if not data or not data.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        raise ImportFormatError(file_name, None, None, "the file is empty")


def import_parser(
    usual_name: str,
) -> Callable[[Callable[..., ParsedImport]], Callable[..., ParsedImport]]:
    """Make an app's parser from the function that reads its file.

    Every parser is called the same way, `parse_<app>(data, *, file_name=None, now=None,
    timezone=None, **options)`, and begins the same way: the file is called `file_name`, or
    `usual_name` (what the app names its export) when none is given, and an empty file is
    refused. That is done here once; the decorated `read(data, name, now, timezone,
    **options)` reads what is its app's own. `now` stands in for times the file leaves out;
    `timezone` is the user's IANA zone, for local times written without one.
    """

    def decorate(read: Callable[..., ParsedImport]) -> Callable[..., ParsedImport]:
        def parse(
            data: bytes,
            *,
            file_name: str | None = None,
            now: dt.datetime | None = None,
            timezone: str | None = None,
            **options: Any,
        ) -> ParsedImport:
            name = file_name or usual_name
            require_content(data, name)
            notes: list[MappingEntry] = []
            token = decoding_notes.set(notes)
            try:
                with unexpected_content_refused(name):
                    parsed = read(data, name, now, timezone, **options)
            finally:
                decoding_notes.reset(token)
            parsed.report[:0] = notes
            return parsed

        # read's name and docstring, not its signature (no __wrapped__: callers see parse's)
        parse.__module__, parse.__doc__ = read.__module__, read.__doc__
        parse.__name__, parse.__qualname__ = read.__name__, read.__qualname__
        return parse

    return decorate


def as_dict(value: Any) -> dict:
    """`value` if it is a JSON object, else an empty one: exports drift, types included."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a block that builds many small objects
    which all stay alive (a parse, a diff): it would walk them again and again, a third of
    the block's time, to find no garbage. Turned back on after, if it was on before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            _survivors_to_oldest_generation()
            gc.enable()


def _survivors_to_oldest_generation() -> None:
    """What the block built and keeps (a parse's mapping report, staged rows) moved
    straight to the collector's oldest generation: left in the youngest, the next two
    collections would walk every one of them (0.2 to 0.4 s each after a 50,000-row parse)
    to find nothing. Full collections still look at them. Not done when something else
    froze objects on purpose (`gc.freeze`), since unfreezing would undo that."""
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


# The text files of the parse under way whose encoding was guessed (`textio.decode_text`
# adds one entry each): the parser wrapper puts them at the top of the mapping report.
decoding_notes: ContextVar[list[MappingEntry] | None] = ContextVar("decoding_notes", default=None)


@contextmanager
def unexpected_content_refused(file_name: str) -> Iterator[None]:
    """Whatever a hostile or broken file makes a parser trip over ends as one
    ImportFormatError naming the file, never as a traceback."""
    try:
        yield
    except ImportFormatError:
        raise
    except RecursionError:
        raise ImportFormatError(file_name, None, None, "nested too deeply to read") from None
    except MemoryError:
        raise ImportFormatError(file_name, None, None, "too large to read in memory") from None
    except UnicodeError as exc:
        raise ImportFormatError(file_name, None, None, f"text cannot be decoded ({exc})") from None
    except (
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        ValueError,
        ArithmeticError,
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
    ) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ImportFormatError(
            file_name, None, None, f"unexpected content ({type(exc).__name__}: {reason})"
        ) from None


@contextmanager
def reading_item(file_name: str, where: str) -> Iterator[None]:
    """Turns a surprise deep inside one JSON item into an error naming the file and item."""
    try:
        yield
    except ImportFormatError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError, OverflowError) as exc:
        raise ImportFormatError(file_name, where, None, f"unexpected content ({exc})") from None


def base_name(path: str) -> str:
    """The last part of a path, whichever separator it uses."""
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------- zip archives


@dataclass(frozen=True)
class ZipLimits:
    """What an uploaded archive may hold before it is refused as unreasonable or hostile."""

    max_members: int = 20_000
    max_member_bytes: int = 256 * 1024 * 1024
    max_total_bytes: int = 1024 * 1024 * 1024
    max_ratio: int = 200  # uncompressed / compressed, for members over ratio_floor_bytes
    ratio_floor_bytes: int = 1024 * 1024
    # the same ratio over the whole archive, once it inflates past this many bytes: a
    # thousand small members of zeros are as much a bomb as one big one
    total_ratio_floor_bytes: int = 16 * 1024 * 1024


ZIP_LIMITS = ZipLimits()
_JUNK_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


def is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def is_junk_member(name: str) -> bool:
    """macOS and Windows litter (`__MACOSX/`, `._x`, `.DS_Store`) that no app exported."""
    parts = name.split("/")
    base = parts[-1]
    return "__MACOSX" in parts or base.startswith("._") or base.casefold() in _JUNK_NAMES


def _member_name(info: zipfile.ZipInfo) -> str:
    name = info.filename
    if not info.flag_bits & 0x800:
        # Archivers that do not set the UTF-8 flag still often write UTF-8 names.
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name.replace("\\", "/")


def _unsafe_path(name: str) -> bool:
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\x00" in name:
        return True
    return ".." in name.split("/")


def safe_zip_members(
    data: bytes,
    *,
    file_name: str,
    select: Callable[[str], bool] | None = None,
    limits: ZipLimits = ZIP_LIMITS,
) -> dict[str, bytes]:
    """The archive's files (all, or those `select` accepts) by path, read within `limits`.

    Every member's path is checked, selected or not: an absolute or `..` path, too many
    members, an encrypted member, or a member larger (or more compressed) than the limits
    raises ImportFormatError. Sizes are enforced while reading, not only as declared.
    Directories and OS litter are left out.
    """
    infos = _checked_infos(data, file_name, limits)
    chosen = [
        (name, info)
        for name, info in infos
        if not info.is_dir() and not is_junk_member(name) and (select is None or select(name))
    ]
    members: dict[str, bytes] = {}
    budget = limits.max_total_bytes
    inflated = compressed = 0
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name, info in chosen:
            if info.flag_bits & 0x1:
                raise ImportFormatError(
                    file_name, f"member '{name}'", None, "is password-protected"
                )
            if info.file_size > limits.max_member_bytes or info.file_size > budget:
                raise ImportFormatError(
                    file_name,
                    f"member '{name}'",
                    None,
                    f"is too large ({info.file_size} bytes uncompressed)",
                )
            if (
                info.file_size > limits.ratio_floor_bytes
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)
            ):
                raise ImportFormatError(
                    file_name,
                    f"member '{name}'",
                    None,
                    "is compressed suspiciously well (a zip bomb?)",
                )
            cap = min(limits.max_member_bytes, budget)
            try:
                with archive.open(info) as stream:
                    content = stream.read(cap + 1)
            except (
                zipfile.BadZipFile,
                zlib.error,
                EOFError,
                OSError,
                ValueError,
                NotImplementedError,
            ) as exc:
                raise ImportFormatError(
                    file_name, f"member '{name}'", None, f"cannot be read: {exc}"
                ) from None
            if len(content) > cap:
                raise ImportFormatError(
                    file_name,
                    f"member '{name}'",
                    None,
                    "is larger than declared or than the import limit",
                )
            budget -= len(content)
            inflated += len(content)
            compressed += info.compress_size
            if inflated > limits.total_ratio_floor_bytes and inflated > limits.max_ratio * max(
                compressed, 1
            ):
                raise ImportFormatError(
                    file_name,
                    None,
                    None,
                    "the archive is compressed suspiciously well (a zip bomb?)",
                )
            members[name] = content
    return members


def zip_member_names(data: bytes, *, file_name: str, limits: ZipLimits = ZIP_LIMITS) -> list[str]:
    """The archive's file paths (checked like `safe_zip_members`), without reading them."""
    return [
        name
        for name, info in _checked_infos(data, file_name, limits)
        if not info.is_dir() and not is_junk_member(name)
    ]


def _checked_infos(
    data: bytes, file_name: str, limits: ZipLimits
) -> list[tuple[str, zipfile.ZipInfo]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        ValueError,
        EOFError,
        NotImplementedError,
    ) as exc:
        raise ImportFormatError(
            file_name, None, None, f"not a readable zip archive ({exc})"
        ) from None
    if len(infos) > limits.max_members:
        raise ImportFormatError(
            file_name,
            None,
            None,
            f"holds {len(infos)} members, more than the {limits.max_members} an import accepts",
        )
    declared = sum(info.file_size for info in infos)
    packed = sum(info.compress_size for info in infos)
    if declared > limits.max_members * limits.max_member_bytes or (
        declared > limits.total_ratio_floor_bytes and declared > limits.max_ratio * max(packed, 1)
    ):
        raise ImportFormatError(
            file_name,
            None,
            None,
            f"the archive inflates to {declared:,} bytes from {packed:,}: compressed "
            "suspiciously well (a zip bomb?)",
        )
    named = []
    for info in infos:
        name = _member_name(info)
        if _unsafe_path(name):
            raise ImportFormatError(
                file_name, f"member '{name}'", None, "has an unsafe path (absolute or with '..')"
            )
        named.append((name, info))
    return named


# ---------------------------------------------------------------- mapping rules

_PRIORITY_WORDS = {
    "urgent": 5,
    "critical": 5,
    "highest": 5,
    "very high": 5,
    "asap": 5,
    "top": 5,
    "high": 4,
    "important": 4,
    "medium": 3,
    "moderate": 3,
    "mid": 3,
    "normal": 2,
    "none": 2,
    "no priority": 2,
    "default": 2,
    "low": 1,
    "lowest": 1,
    "very low": 1,
    "minor": 1,
    "someday": 1,
}
_TODOIST_STYLE = {"p1": 5, "p2": 4, "p3": 3, "p4": 2}


def priority_from_label(text: str | None) -> int | None:
    """The app priority (1 low .. 5 urgent) a free-text priority names, or None if unknown.

    `P1`..`P4` follow Todoist's convention (P1 = most urgent), the only common one.
    """
    if not text:
        return None
    word = " ".join("".join(ch if ch.isalnum() else " " for ch in text.casefold()).split())
    if word in _TODOIST_STYLE:
        return _TODOIST_STYLE[word]
    if word in _PRIORITY_WORDS:
        return _PRIORITY_WORDS[word]
    for candidate in word.split():
        if candidate in _PRIORITY_WORDS:
            return _PRIORITY_WORDS[candidate]
    return None


def compose_description(
    body: str | None,
    *,
    labels: Iterable[str] = (),
    recurrence: str | None = None,
    comments: Iterable[str] = (),
) -> str | None:
    """The goal's description: the source text, then lines for what the app has no field for.

    Tags and recurrence have no column in the app; they are kept in extras *and* shown at
    the end of the description (`Tags: a, b`, `Repeats: every monday`, `Comments:`), so the
    user still sees them in the app.
    """
    if not labels and not recurrence and not comments:
        return _unix_newlines(body).strip() or None if body else None
    parts = []
    if body and body.strip():
        parts.append(_unix_newlines(body).strip())
    footer = []
    labels = [label for label in labels if label]
    if labels:
        footer.append("Tags: " + ", ".join(labels))
    if recurrence:
        footer.append("Repeats: " + recurrence)
    comments = [_unix_newlines(c).strip() for c in comments if c and c.strip()]
    if comments:
        footer.append("Comments:\n" + "\n".join("- " + c.replace("\n", "\n  ") for c in comments))
    if footer:
        parts.append("\n".join(footer))
    return "\n\n".join(parts) or None


def _unix_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def clean_extras(values: dict[str, Any]) -> dict[str, Any]:
    """Extras without empty values: only what the source actually said."""
    return {k: v for k, v in values.items() if v or v == 0}


@overload
def _ms(value: dt.datetime) -> dt.datetime: ...
@overload
def _ms(value: dt.datetime | None) -> dt.datetime | None: ...
def _ms(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime reached the builder")
    value = value.astimezone(dt.UTC)
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


class ImportBuilder:
    """Collects one import's rows under external keys and turns them into app tables.

    `finish` fits every row to the app's rules (`normalise`): what had to change is on the
    row's mapping-report entry (`adjustments`), with what it replaced in the extras.
    """

    def __init__(
        self,
        app: str,
        *,
        now: dt.datetime | None = None,
        tables: tuple[str, ...] = ("Module", "Goal", "Progress"),
        module_kind: str = "personal",
        module_name: str | None = None,
    ):
        self.app = app
        self.now = _ms(now or dt.datetime.now(dt.UTC))
        self.table_names = tables
        self.module_key = f"{app}:module:{module_kind}"
        self.module_kind = module_kind
        self.module_name = module_name or app
        self.goals: dict[str, dict] = {}
        self.progress: dict[str, dict] = {}
        self.achievements: dict[str, dict] = {}
        self.extras: dict[str, dict] = {}
        self.report: list[MappingEntry] = []
        self.warnings: list[str] = []
        self._warned: set[str] = set()
        self._goal_entries: dict[str, MappingEntry] = {}
        self._progress_sources: dict[tuple[str, str], list] = {}
        self._used_keys: set[str] = set()
        self._next_number: dict[str, int] = {}
        self._adjustments: dict[str, list[str]] = {}

    def key(self, kind: str, external_id: object) -> str:
        return f"{self.app}:{kind}:{external_id}"

    def unique_key(self, key: str) -> str:
        """`key`, or `key#2`, `key#3`... if an earlier row of this import already has it.

        The next free number of each repeated key is remembered: 20,000 rows with one id
        cost 20,000 look-ups, not 200 million."""
        if key not in self._used_keys:
            self._used_keys.add(key)
            return key
        number = self._next_number.get(key, 2)
        while f"{key}#{number}" in self._used_keys:
            number += 1
        self._next_number[key] = number + 1
        unique = f"{key}#{number}"
        self._used_keys.add(unique)
        self.adjust(
            unique,
            f"repeats the external id of an earlier item ({key}): imported as a separate item",
        )
        return unique

    def adjust(self, key: str, reason: str) -> None:
        """Record that the row `key` was changed to fit the app, and why."""
        self._adjustments.setdefault(key, []).append(reason)

    def warn(self, message: str) -> None:
        """Add a warning, once (a set remembers them: a file of 50,000 rows that each
        warn must not make every warning a walk through all the earlier ones)."""
        if message not in self._warned:
            self._warned.add(message)
            self.warnings.append(message)

    def skip(
        self,
        source_item: str,
        reason: str,
        *,
        external_key: str | None = None,
        count: int = 1,
        bad: bool = False,
    ) -> None:
        """Report items left out: on purpose (archived, not the app's kind of thing), or,
        with `bad`, because they could not be mapped at all (those count as bad rows)."""
        self.report.append(
            MappingEntry(source_item, external_key, None, "skipped", reason, count, bad=bad)
        )

    @contextmanager
    def row_or_skip(self, source_item: str) -> Iterator[None]:
        """Read one source row in the block; when it cannot be mapped at all (an
        ImportFormatError, or a surprise `reading_item` turns into one), it is skipped
        alone, reported with the reason as a bad row, and the rest of the file goes on."""
        try:
            with reading_item(source_item, source_item):
                yield
        except ImportFormatError as exc:
            field = f"field '{exc.field}': " if exc.field else ""
            self.skip(source_item, field + exc.reason, bad=True)

    def add_goal(
        self,
        key: str,
        *,
        title: str,
        source_item: str,
        parent: str | None = None,
        description: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        difficulty: int | None = None,
        target_date: dt.date | None = None,
        is_completed: bool = False,
        completed_at: dt.datetime | None = None,
        created_at: dt.datetime | None = None,
        updated_at: dt.datetime | None = None,
        extras: dict[str, Any] | None = None,
    ) -> str:
        """Stage a goal; returns its key (made unique if the source repeated an id)."""
        key = self.unique_key(key)
        inferred = []
        if created_at is not None:
            created_at = _ms(created_at)
        if updated_at is not None:
            updated_at = _ms(updated_at)
        if completed_at is not None:
            completed_at = _ms(completed_at)
        if created_at is None:
            if updated_at is None and completed_at is None:
                created_at = self.now
            else:
                created_at = min(t for t in (updated_at, completed_at) if t is not None)
            inferred.append("createdAt")
        if updated_at is None:
            updated_at = created_at
            inferred.append("updatedAt")
        title = " ".join(title.split()) if title else ""
        self.goals[key] = {
            "id": key,
            "userId": "",
            "moduleId": self.module_key,
            "parentGoalId": parent,
            "title": title or "Untitled",
            "description": description or None,
            "priority": int(priority),
            "difficulty": None if difficulty is None else int(difficulty),
            "targetDate": target_date,
            "isCompleted": bool(is_completed),
            "completedAt": completed_at,
            "createdAt": created_at,
            "updatedAt": updated_at,
        }
        self._set_extras(key, extras, inferred)
        entry = MappingEntry(source_item, key, "Goal")
        self._goal_entries[key] = entry
        self.report.append(entry)
        return key

    def add_progress(
        self,
        key: str,
        *,
        goal: str,
        value: Decimal | int | float | str,
        source_kind: str,
        recorded_at: dt.datetime | None,
        max_value: Decimal | int | float | str | None = None,
        notes: str | None = None,
        extras: dict[str, Any] | None = None,
    ) -> str | None:
        """Stage a progress entry of `goal`; reported per goal and `source_kind`."""
        key = self.unique_key(key)
        amount, maximum = _decimal(value), _decimal(max_value)
        if (
            amount is None
            or abs(amount) > MAX_PROGRESS_VALUE
            or (maximum is not None and abs(maximum) > MAX_PROGRESS_VALUE)
        ):
            self._adjustments.pop(key, None)
            self.skip(
                f"{source_kind} {key}",
                f"value {value!r} does not fit the app's numbers",
                external_key=key,
                bad=True,
            )
            return None
        inferred = []
        if recorded_at is None:
            recorded_at = self.now
            inferred.append("recordedAt")
        self.progress[key] = {
            "id": key,
            "userId": "",
            "goalId": goal,
            "value": amount,
            "maxValue": maximum,
            "notes": notes or None,
            "recordedAt": _ms(recorded_at),
        }
        self._set_extras(key, extras, inferred)
        self._progress_sources.setdefault((goal, source_kind), []).append(key)
        return key

    def add_achievement(
        self,
        key: str,
        *,
        kind: str,
        title: str,
        source_item: str,
        points: int,
        earned_at: dt.datetime | None,
        description: str | None = None,
        goal: str | None = None,
        extras: dict[str, Any] | None = None,
    ) -> str:
        key = self.unique_key(key)
        inferred = []
        if earned_at is None:
            earned_at = self.now
            inferred.append("earnedAt")
        self.achievements[key] = {
            "id": key,
            "userId": "",
            "goalId": goal,
            "kind": kind,
            "title": title,
            "description": description or None,
            "points": int(points),
            "earnedAt": _ms(earned_at),
        }
        self._set_extras(key, extras, inferred)
        self.report.append(MappingEntry(source_item, key, "Achievement"))
        return key

    def _set_extras(self, key: str, extras: dict | None, inferred: list[str]) -> None:
        kept = clean_extras(extras or {})
        if inferred:
            # These values are the import time, not the source's: re-imports should keep
            # whatever the row already has.
            kept["inferred"] = inferred
        if kept:
            self.extras[key] = kept

    # ------------------------------------------------------------ finishing

    def orphan_root(self) -> str:
        """The import's root goal, made on first use: items whose parent is not in the
        file hang under it, so they stay together and can be moved in the app."""
        key = self.key("goal", "import-root")
        if key not in self.goals:
            self.goals[key] = {
                "id": key,
                "userId": "",
                "moduleId": self.module_key,
                "parentGoalId": None,
                "title": f"Imported from {self.module_name}: items whose parent is not in the file",
                "description": None,
                "priority": DEFAULT_PRIORITY,
                "difficulty": None,
                "targetDate": None,
                "isCompleted": False,
                "completedAt": None,
                "createdAt": self.now,
                "updatedAt": self.now,
            }
            self.extras[key] = {"inferred": ["createdAt", "updatedAt"]}
            entry = MappingEntry(
                "the import's root goal", key, "Goal", "adjusted", "made for the orphans"
            )
            entry.adjustments.append(
                "made by the import to hold items whose parent is not in the file"
            )
            self._goal_entries[key] = entry
            self.report.append(entry)
        return key

    def _resolve_hierarchy(self) -> None:
        goals = self.goals
        orphans = [
            (key, row["parentGoalId"])
            for key, row in goals.items()
            if row["parentGoalId"] is not None and row["parentGoalId"] not in goals
        ]
        if orphans:
            root = self.orphan_root()
            for key, parent in orphans:
                goals[key]["parentGoalId"] = root
                self.extras.setdefault(key, {})["sourceParent"] = parent
                self.adjust(
                    key,
                    f"its parent {parent} is not in the file: attached to the import's root goal",
                )
                self.warn(f"{key}: its parent {parent} is not in the export; imported under {root}")
        depth: dict[str, int] = {}
        for key, row in goals.items():
            parent = row["parentGoalId"]
            if key in depth:
                continue
            if parent is None or parent in depth:  # the usual case: parents come first
                depth[key] = depth[parent] + 1 if parent is not None else 1
                continue
            chain: list[str] = []
            on_chain: dict[str, int] = {}
            current: str | None = key
            while current is not None and current not in depth:
                if current in on_chain:
                    # A cycle (possible in relation-based sources): cut one edge, at the
                    # node where the walk came round, and carry on from there.
                    cut_parent = goals[current]["parentGoalId"]
                    goals[current]["parentGoalId"] = None
                    self.extras.setdefault(current, {})["sourceParent"] = cut_parent
                    self.adjust(
                        current,
                        f"its parents form a cycle: the link to its parent {cut_parent} was "
                        "cut, so it sits at the top",
                    )
                    self.warn(f"{current}: its parents form a cycle; imported at the top")
                    del chain[on_chain[current] + 1 :]
                    break
                on_chain[current] = len(chain)
                chain.append(current)
                current = goals[current]["parentGoalId"]
            for node in reversed(chain):
                parent = goals[node]["parentGoalId"]
                depth[node] = depth[parent] + 1 if parent is not None else 1
        too_deep = [key for key in goals if depth[key] > GOAL_LEVELS]
        level_two: dict[str, str] = {}
        for key in too_deep:  # parents of a key may come after it: walk up explicitly
            node = key
            while depth[node] > 2:
                node = goals[node]["parentGoalId"]
            level_two[key] = node
        for key in too_deep:
            row = goals[key]
            original = row["parentGoalId"]
            row["parentGoalId"] = level_two[key]
            entry = self._goal_entries[key]
            entry.action = "flattened"
            entry.reason = (
                f"level {depth[key]} of the source hierarchy; the app keeps {GOAL_LEVELS} "
                f"levels, so it now sits under {level_two[key]} beside its parent {original}"
            )
            self.extras.setdefault(key, {})["sourceParent"] = original

    def _normalise(self) -> None:
        """Every row fitted to the app's rules; each change on the row's report entry."""
        adjustments = self._adjustments
        for rows, fit in (
            (self.goals, normalise_goal),
            (self.progress, normalise_progress),
            (self.achievements, normalise_achievement),
        ):
            for key, row in rows.items():
                extras = self.extras.get(key)
                before = extras.get("inferred", []) if extras else []
                inferred = list(before)
                scratch = extras if extras is not None else {}
                notes = fit(row, scratch, self.now, inferred)
                if not notes and inferred == before:
                    continue  # the usual row: fitted already, its extras as they were
                if inferred:
                    scratch["inferred"] = inferred
                else:
                    scratch.pop("inferred", None)
                if scratch:
                    self.extras[key] = scratch
                else:
                    self.extras.pop(key, None)
                if notes:
                    adjustments.setdefault(key, []).extend(notes)
        entries = dict(self._goal_entries)
        entries.update(
            (e.external_key, e)
            for e in self.report
            if e.target_table == "Achievement" and e.external_key is not None
        )
        for key, notes in adjustments.items():
            entry = entries.get(key)
            if entry is None and key in self.progress:
                row = self.progress[key]
                entry = MappingEntry(
                    f"progress {key} of {row['goalId']}", key, "Progress", "adjusted"
                )
                self.report.append(entry)
            if entry is None:
                continue
            if entry.action == "imported":
                entry.action = "adjusted"
            entry.adjustments.extend(notes)
            if not entry.reason:
                entry.reason = "; ".join(notes)

    def finish(self) -> ParsedImport:
        self._resolve_hierarchy()
        for (goal, kind), keys in self._progress_sources.items():
            if goal not in self.goals:
                for key in keys:
                    self.progress.pop(key, None)
                    self.extras.pop(key, None)
                    self._adjustments.pop(key, None)
                self.skip(
                    f"{len(keys)} {kind} entries",
                    f"their goal {goal} is not in the export",
                    count=len(keys),
                    bad=True,
                )
                continue
            title = self.goals[goal]["title"]
            self.report.append(
                MappingEntry(f"{kind} of '{title}'", goal, "Progress", count=len(keys))
            )
        self._normalise()
        module_name = shortened(" ".join(self.module_name.split()) or self.app, MODULE_NAME_LIMIT)
        rows: dict[str, list[dict]] = {
            "Module": [],
            "Goal": list(self.goals.values()),
            "Progress": list(self.progress.values()),
            "Achievement": list(self.achievements.values()),
        }
        if self.goals:
            first = min(self.goals.values(), key=lambda g: g["createdAt"])
            rows["Module"].append(
                {
                    "id": self.module_key,
                    "userId": "",
                    "kind": self.module_kind,
                    "name": module_name,
                    "isActive": True,
                    "createdAt": first["createdAt"],
                }
            )
            if "createdAt" in self.extras.get(first["id"], {}).get("inferred", ()):
                # the earliest goal's time was the import's: so is the module's
                self.extras.setdefault(self.module_key, {})["inferred"] = ["createdAt"]
        tables = {name: rows_to_table(name, rows.get(name, [])) for name in self.table_names}
        return ParsedImport(self.app, tables, self.extras, self.report, self.warnings)


def _decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        if not number.is_finite():
            return None
        return number.quantize(CENTS, rounding=ROUND_HALF_EVEN)
    except (InvalidOperation, ValueError):
        return None


def rows_to_table(name: str, rows: list[dict]) -> pa.Table:
    """An app table of `rows` (dicts keyed by column), typed exactly like the app's."""
    schema = APP_ARROW_SCHEMAS[name]
    # the column name read once: `Field.name` makes a new string at every read
    arrays = [_column(rows, f.name, f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _column(rows: list[dict], name: str, type_: pa.DataType) -> pa.Array:
    values = [row[name] for row in rows]
    first = values[0] if values else None
    if isinstance(first, dt.datetime) and all(value is first for value in values):
        # every row stamped with the same time (the import's, for a source without times):
        # one conversion instead of one per row, the slow part of a timestamp column
        return pa.repeat(pa.scalar(first, type_), len(values))
    return pa.array(values, type=type_)
