"""Reading the text files of other apps' exports: encodings, BOMs, delimiters, preambles.

Real exports are re-saved in spreadsheets, come from several app versions and locales, and
put free text (multi-line notes) in quoted cells. The helpers here decode the bytes
whatever the encoding, find the header record by the column names a parser expects (even
after preamble lines or with `;`/tab delimiters), and keep each record's row number so an
error can name it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from assets.imports.parsers.base import (
    ImportFormatError,
    MappingEntry,
    decoding_notes,
    is_zip,
    safe_zip_members,
)

DELIMITERS = (",", ";", "\t", "|")
MAX_CELL_CHARS = 16 * 1024 * 1024
GUESS_SAMPLE_BYTES = 256 * 1024
# orjson's own limit; deeper documents are refused (the standard library's parser would
# recurse until Python's limit)
MAX_JSON_DEPTH = 1024

# Long notes exceed the csv module's default 128 KiB cell limit; raise it, never lower it.
csv.field_size_limit(max(csv.field_size_limit(), MAX_CELL_CHARS))


def decode_text(data: bytes, *, file_name: str) -> str:
    """The file's text: BOMs honoured, UTF-16 recognised, else UTF-8, else the legacy
    encoding charset-normalizer guesses (noted in the mapping report of the parse under way)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _text_only(_decode_strict(data, "utf-16", file_name), file_name)
    elif len(data) >= 4 and b"\x00" in data[:64]:
        sample = data[:4096]
        odd_nuls = sample[1::2].count(0)
        even_nuls = sample[0::2].count(0)
        if odd_nuls > len(sample) // 4:
            return _text_only(_decode_strict(data, "utf-16-le", file_name), file_name)
        if even_nuls > len(sample) // 4:
            return _text_only(_decode_strict(data, "utf-16-be", file_name), file_name)
    try:
        return _text_only(data.decode("utf-8"), file_name)
    except UnicodeDecodeError:
        pass
    encoding = guess_encoding(data)
    text = data.decode(encoding, errors="replace")
    notes = decoding_notes.get()
    if notes is not None:
        notes.append(
            MappingEntry(
                f"file {file_name}",
                None,
                None,
                "decoded",
                f"not UTF-8 text: read as {encoding} (the encoding guessed from its bytes)",
            )
        )
    return _text_only(text, file_name)


def guess_encoding(data: bytes) -> str:
    """The most likely legacy encoding of `data` (cp1251, Shift-JIS, GBK ...), judged by
    charset-normalizer on a bounded sample; Windows-1252 when it cannot tell."""
    from charset_normalizer import from_bytes

    sample = data[:GUESS_SAMPLE_BYTES]
    if len(data) > GUESS_SAMPLE_BYTES:
        # a multi-byte character cut at the end of the sample is not a decoding error
        sample = sample[: sample.rfind(b"\n") + 1] or sample
    matches = list(from_bytes(sample))
    if not matches:
        return "cp1252"
    best = matches[0]
    # Short texts fit several code pages equally well (cp1250 or cp1252, mac_cyrillic or
    # cp1251): among the near-best, the one Windows and spreadsheets write is the one.
    tied = [
        m for m in matches if m.chaos <= best.chaos + 0.01 and m.coherence >= best.coherence - 0.15
    ]
    chosen = min(tied, key=lambda m: _COMMON_ENCODINGS.get(m.encoding, len(_COMMON_ENCODINGS)))
    if chosen.encoding in _LATIN_CODE_PAGES and _reads_as_another_script(str(chosen)):
        # A few Cyrillic or Greek words decode to "valid" accented Latin too, but Latin
        # words are mostly plain letters: words made only of accented ones are misread.
        others = [m for m in matches if m.encoding in _OTHER_SCRIPT_CODE_PAGES]
        if others:
            chosen = min(others, key=lambda m: _COMMON_ENCODINGS.get(m.encoding, 99))
    for encoding in (chosen.encoding, best.encoding, "cp1252"):
        try:
            data.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
        return encoding
    return "latin_1"


_LATIN_CODE_PAGES = {
    "cp1250", "cp1252", "cp1254", "cp1257", "cp1258", "latin_1", "iso8859_2", "iso8859_4",
    "iso8859_10", "iso8859_13", "iso8859_15", "mac_latin2", "mac_roman", "hp_roman8", "cp775",
}  # fmt: skip
_OTHER_SCRIPT_CODE_PAGES = {"cp1251", "koi8_r", "cp1253", "cp1255", "cp1256", "iso8859_5"}


def _reads_as_another_script(text: str) -> bool:
    """Whether the words with accented letters are made almost only of them."""
    words = [w for w in re.findall(r"[^\W\d_]+", text[:20000]) if not w.isascii()]
    letters = sum(len(w) for w in words)
    accented = sum(1 for w in words for c in w if ord(c) > 127)
    return letters > 0 and accented / letters > 0.7


# Legacy encodings in the order a tie is settled: the ones exports are really saved in.
_COMMON_ENCODINGS = {
    name: rank
    for rank, name in enumerate(
        (
            "cp1252",
            "cp1251",
            "cp932",
            "shift_jis",
            "gb18030",
            "gbk",
            "gb2312",
            "big5",
            "cp949",
            "euc_kr",
            "euc_jp",
            "cp1250",
            "cp1253",
            "cp1254",
            "cp1255",
            "cp1256",
            "cp1257",
            "koi8_r",
            "latin_1",
        )
    )
}


def _text_only(text: str, file_name: str) -> str:
    sample = text[:8192]
    controls = sum(1 for ch in sample if ch < " " and ch not in "\t\r\n\f")
    if "\x00" in sample or controls > len(sample) // 100:
        raise ImportFormatError(file_name, None, None, "binary data, not a text file")
    return text.lstrip("\ufeff")


def _decode_strict(data: bytes, encoding: str, file_name: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ImportFormatError(
            file_name, None, None, f"not valid {encoding.upper()} text at byte {exc.start}"
        ) from None


def normalize_header(name: str) -> str:
    return " ".join(name.replace("\ufeff", "").split()).casefold()


@dataclass
class CsvTable:
    """The records after the header, each with its row number as a spreadsheet shows it."""

    file_name: str
    header: list[str]
    index: dict[str, int]
    rows: list[tuple[int, list[str]]]
    delimiter: str
    preamble: list[list[str]]

    def has(self, *names: str) -> bool:
        return all(normalize_header(n) in self.index for n in names)

    def column(self, *names: str) -> int | None:
        """Index of the first of these columns the file has."""
        for name in names:
            position = self.index.get(normalize_header(name))
            if position is not None:
                return position
        return None

    def getter(self, *names: str) -> Callable[[list[str]], str]:
        """A fast accessor for one column (by any of its names); '' when absent or short."""
        position = self.column(*names)
        if position is None:
            return lambda cells: ""
        return lambda cells: cells[position].strip() if position < len(cells) else ""

    def raw_getter(self, *names: str) -> Callable[[list[str]], str]:
        """Like `getter`, without stripping (multi-line text keeps its layout)."""
        position = self.column(*names)
        if position is None:
            return lambda cells: ""
        return lambda cells: cells[position] if position < len(cells) else ""


def _records(text: str, delimiter: str, file_name: str) -> Iterable[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    number = 0
    try:
        for number, cells in enumerate(reader, start=1):
            yield number, cells
    except csv.Error as exc:
        raise ImportFormatError(file_name, number + 1, None, f"unreadable CSV: {exc}") from None


def read_csv_table(
    text: str,
    *,
    file_name: str,
    is_header: Callable[[set[str]], bool],
    max_preamble: int = 20,
) -> CsvTable | None:
    """The table whose header record `is_header` accepts (given normalised names), or None.

    The header may follow up to `max_preamble` other records; each delimiter in DELIMITERS
    is tried in turn. Blank records are dropped from the rows.
    """
    for delimiter in DELIMITERS:
        if delimiter != "," and delimiter not in text[:65536]:
            continue
        records = iter(_records(text, delimiter, file_name))
        preamble: list[list[str]] = []
        header_cells = None
        try:
            for _number, cells in records:
                if is_header({normalize_header(c) for c in cells}):
                    header_cells = cells
                    break
                preamble.append(cells)
                if len(preamble) > max_preamble:
                    break
        except ImportFormatError:
            continue
        if header_cells is None:
            continue
        header = [c.replace("\ufeff", "").strip() for c in header_cells]
        index: dict[str, int] = {}
        for position, name in enumerate(header):
            index.setdefault(normalize_header(name), position)
        rows = [(n, c) for n, c in records if "".join(c).strip()]
        return CsvTable(file_name, header, index, rows, delimiter, preamble)
    return None


def read_app_csv(
    data: bytes,
    *,
    file_name: str,
    is_header: Callable[[set[str]], bool],
    missing: str,
    row: int | None = None,
) -> CsvTable:
    """`data` decoded and read as the CSV table whose header `is_header` accepts; when no
    record is one, ImportFormatError with the reason `missing` (at `row`, if given)."""
    table = read_csv_table(
        decode_text(data, file_name=file_name), file_name=file_name, is_header=is_header
    )
    if table is None:
        raise ImportFormatError(file_name, row, None, missing)
    return table


def peek_csv_records(text: str, *, limit: int = 12) -> list[list[str]]:
    """The first records of a CSV, under whichever delimiter splits its first line most."""
    first_line = text[:4096].split("\n", 1)[0]
    delimiter = max(DELIMITERS, key=first_line.count)
    reader = csv.reader(io.StringIO(text[:262144], newline=""), delimiter=delimiter)
    records = []
    try:
        for cells in reader:
            records.append(cells)
            if len(records) >= limit:
                break
    except csv.Error:
        pass
    return records


def load_json(data: bytes, *, file_name: str) -> Any:
    """The JSON document in `data` (any encoding, BOM or not); errors name line and column."""
    import orjson

    text = None
    for source in ("bytes", "text"):
        try:
            return orjson.loads(data if text is None else text)
        except orjson.JSONDecodeError as exc:
            if "depth" in str(exc) or "recursion" in str(exc).casefold():
                raise ImportFormatError(
                    file_name, None, None, f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
                ) from None
        if source == "bytes":
            text = decode_text(data, file_name=file_name)
    try:  # only for its error message, which names line and column
        return json.loads(text or "")
    except RecursionError:
        raise ImportFormatError(file_name, None, None, "JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            file_name, f"line {exc.lineno}, column {exc.colno}", None, f"invalid JSON: {exc.msg}"
        ) from None


def app_json_documents(
    data: bytes, name: str, accepts: Callable[[Any], bool], *, not_in_zip: str, not_this_app: str
) -> list[tuple[str, Any]]:
    """An app's JSON documents with where each came from: the file itself, or every JSON
    member of a zip that `accepts` (others are left alone). Refused with `not_in_zip` when a
    zip holds none, with `not_this_app` when the file is not the app's."""
    if not is_zip(data):
        doc = load_json(data, file_name=name)
        if not accepts(doc):
            raise ImportFormatError(name, None, None, not_this_app)
        return [(name, doc)]
    members = safe_zip_members(
        data, file_name=name, select=lambda n: n.casefold().endswith(".json")
    )
    documents = []
    for member in sorted(members):
        doc = load_json(members[member], file_name=f"{name}/{member}")
        if accepts(doc):
            documents.append((f"{name}/{member}", doc))
    if not documents:
        raise ImportFormatError(name, None, None, not_in_zip)
    return documents
