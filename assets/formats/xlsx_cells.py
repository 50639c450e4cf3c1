"""A streaming reader of the cell values in an XLSX workbook's sheets.

`XlsxCells(data).rows(sheet_name)` yields each row as a tuple of Python values, exactly
as openpyxl's `load_workbook(read_only=True)` + `iter_rows(values_only=True)` gives them:
the same numbers (int or float), text (shared, inline, formula results), booleans,
dates (by the cell's number format, 1900 or 1904 calendar), gaps filled with None, and
the same row widths from the sheet's `<dimension>`. It does only that, without building
openpyxl's workbook (styles, themes, every sheet's dimension read up front, a dict per
cell), which made reading goalport's exports cost more than writing them.

Sheets are parsed with `iterparse` on the zip member's stream and every row is cleared
once read, so memory does not grow with the file beyond the row being read.

It knows nothing of goalport's tables (`assets.formats.xlsx` reads the export through it),
and it is a module of its own because it is a general SpreadsheetML reader, held to
openpyxl's results cell by cell, and because it imports openpyxl (~80 ms), which only a
workbook being read should pay.
"""

from __future__ import annotations

import posixpath
import zipfile
from collections.abc import Iterator
from typing import IO, Any
from xml.etree import ElementTree

from openpyxl.formula.translate import Translator
from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format, is_timedelta_format
from openpyxl.utils.cell import coordinate_to_tuple, range_boundaries
from openpyxl.utils.datetime import CALENDAR_MAC_1904, WINDOWS_EPOCH, from_excel, from_ISO8601
from openpyxl.worksheet.formula import ArrayFormula, DataTableFormula

from assets.formats.zip_archive import open_zip, zip_member

MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
RELATIONSHIPS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
RELATIONSHIP_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
WORKBOOK_PATH = "xl/workbook.xml"
WORKBOOK_RELS_PATH = "xl/_rels/workbook.xml.rels"
STYLES_PATH = "xl/styles.xml"  # openpyxl reads the styles from this fixed path

ROW = MAIN + "row"
VALUE = MAIN + "v"
FORMULA = MAIN + "f"
INLINE_STRING = MAIN + "is"
DIMENSION = MAIN + "dimension"
SHEET_DATA = MAIN + "sheetData"
SHARED_STRING = MAIN + "si"
TEXT = MAIN + "t"

UNREADABLE = "not a readable workbook"
# Small feeds: every element parsed but not yet read is alive when the garbage collector
# runs, and a large feed's worth of them gets promoted to the oldest generation, whose
# full collections then cost more than the parsing (4 KiB: 2.5x faster than 64 KiB).
CHUNK_BYTES = 4096
_FALSE_TEXTS = ("", "false", "f", "0")  # openpyxl's Bool: any other text is true


class XlsxCells:
    """One workbook's sheet names and, sheet by sheet, its rows of cell values."""

    def __init__(self, data: bytes, what: str = "XLSX export") -> None:
        self.what = what
        self.problem = f"{what}: {UNREADABLE}"
        self.archive = _open_workbook_zip(data, self.problem)
        try:
            sheet_paths, shared_strings_path, self.epoch = self._read_workbook()
            self.sheet_paths = sheet_paths
            self.shared_strings = self._read_shared_strings(shared_strings_path)
            self.date_styles, self.timedelta_styles = self._read_date_styles()
        except BaseException:
            self.archive.close()
            raise

    def close(self) -> None:
        self.archive.close()

    def __enter__(self) -> XlsxCells:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sheet_names(self) -> list[str | None]:
        return list(self.sheet_paths)

    def rows(self, sheet_name: str) -> Iterator[tuple | list]:
        """The sheet's rows from row 1, as openpyxl's read-only `iter_rows(values_only=True)`."""
        path = self.sheet_paths[sheet_name]
        where = f"{self.what}: sheet {sheet_name!r} ({path})"
        try:
            with self.archive.open(path) as stream:
                yield from _SheetReader(self, stream).rows()
        except ElementTree.ParseError as exc:
            raise ValueError(f"{where} is not well-formed XML: {exc}") from exc
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
        except (zipfile.BadZipFile, OSError) as exc:
            raise ValueError(f"{where} cannot be read: {exc}") from exc

    # ------------------------------------------------------------ workbook parts

    def _xml(self, path: str) -> ElementTree.Element:
        data = zip_member(self.archive, path, self.problem)
        try:
            return ElementTree.fromstring(data)
        except ElementTree.ParseError as exc:
            raise ValueError(f"{self.problem}: {path} is not well-formed XML: {exc}") from exc

    def _read_workbook(self) -> tuple[dict[str | None, str], str | None, object]:
        """Sheet name -> worksheet part (the sheets whose part exists, as openpyxl lists
        them), the shared strings part, and the date system's epoch. A part or a sheet
        without its (required) id or name is kept under None, as read."""
        targets: dict[str | None, str] = {}
        kinds: dict[str | None, str] = {}
        for relation in self._xml(WORKBOOK_RELS_PATH).iter(RELATIONSHIPS + "Relationship"):
            if relation.get("TargetMode") == "External":
                continue
            target = relation.get("Target", "")
            if target.startswith("/"):
                target = target[1:]
            else:
                target = posixpath.normpath(posixpath.join("xl", target))
            targets[relation.get("Id")] = target
            kinds[relation.get("Id")] = relation.get("Type", "")
        workbook = self._xml(WORKBOOK_PATH)
        properties = workbook.find(MAIN + "workbookPr")
        date1904 = properties is not None and properties.get("date1904", "") not in _FALSE_TEXTS
        present = set(self.archive.namelist())
        sheets: dict[str | None, str] = {}
        for sheet in workbook.iterfind(f"{MAIN}sheets/{MAIN}sheet"):
            relation_id = sheet.get(RELATIONSHIP_ID)
            if not relation_id:
                continue  # openpyxl drops a sheet without a relationship, with a warning
            if relation_id not in targets:
                raise ValueError(f"{self.problem}: sheet {sheet.get('name')!r} has no part")
            target = targets[relation_id]
            if target in present and "chartsheet" not in kinds[relation_id]:
                sheets[sheet.get("name")] = target
        shared = [t for i, t in targets.items() if kinds[i].endswith("/sharedStrings")]
        epoch = CALENDAR_MAC_1904 if date1904 else WINDOWS_EPOCH
        return sheets, (shared[0] if shared else None), epoch

    def _read_shared_strings(self, path: str | None) -> list[str]:
        if path is None or path not in self.archive.namelist():
            return []
        strings = []
        try:
            with self.archive.open(path) as stream:
                for _, element in ElementTree.iterparse(stream):
                    if element.tag == SHARED_STRING:
                        # openpyxl drops the escape of an underscore in shared strings only
                        strings.append(text_content(element).replace("x005F_", ""))
                        element.clear()
        except ElementTree.ParseError as exc:
            raise ValueError(f"{self.problem}: {path} is not well-formed XML: {exc}") from exc
        return strings

    def _read_date_styles(self) -> tuple[frozenset[int], frozenset[int]]:
        """The cell style indexes whose number format shows a date, and a duration."""
        if STYLES_PATH not in self.archive.namelist():
            return frozenset(), frozenset()
        styles = self._xml(STYLES_PATH)
        custom = {
            _int_attribute(fmt, "numFmtId"): fmt.get("formatCode")
            for fmt in styles.iterfind(f"{MAIN}numFmts/{MAIN}numFmt")
        }
        dates, durations = set(), set()
        for index, xf in enumerate(styles.iterfind(f"{MAIN}cellXfs/{MAIN}xf")):
            number_format_id = int(xf.get("numFmtId", 0))
            code = custom.get(number_format_id, BUILTIN_FORMATS.get(number_format_id))
            if is_date_format(code):
                dates.add(index)
            if is_timedelta_format(code):
                durations.add(index)
        return frozenset(dates), frozenset(durations)


def _open_workbook_zip(data: bytes, problem: str) -> zipfile.ZipFile:
    try:
        return open_zip(data, problem)
    except ValueError as exc:
        if isinstance(exc.__cause__, zipfile.BadZipFile):
            # the message goalport gave when openpyxl opened the zip
            raise ValueError(f"{problem}: {exc.__cause__}") from exc.__cause__
        raise


def text_content(element: ElementTree.Element) -> str:
    """A string item's text, as openpyxl's `Text.content`: the plain `<t>` and then the
    `<t>` of each rich-text run `<r>`; phonetic runs `<rPh>` are not part of it."""
    if len(element) == 1 and element[0].tag == TEXT:  # plain text, the common case
        return element[0].text or ""
    plain = None
    runs = []
    for child in element:
        name = _local_name(child.tag)
        if name == "t":
            plain = child.text  # the last one counts, as in openpyxl
        elif name == "r":
            run_text = None
            for part in child:
                if _local_name(part.tag) == "t":
                    run_text = part.text
            if run_text is not None:
                runs.append(run_text)
    if plain is not None:
        runs.insert(0, plain)
    return "".join(runs)


def _local_name(tag: str) -> str:
    return tag.rpartition("}")[2]


def _int_attribute(element: ElementTree.Element, name: str) -> int:
    """An integer attribute the schema requires; a TypeError without it, as in openpyxl."""
    value = element.get(name)
    if value is None:
        raise TypeError(f"<{_local_name(element.tag)}> has no {name}")
    return int(value)


class _SheetReader:
    """One pass over a worksheet part: openpyxl's read-only row logic, without a cell object."""

    def __init__(self, workbook: XlsxCells, stream: IO[bytes]) -> None:
        self.stream = stream
        self.shared_strings = workbook.shared_strings
        self.date_styles = workbook.date_styles
        self.timedelta_styles = workbook.timedelta_styles
        self.epoch = workbook.epoch
        self.shared_formulae: dict[str | None, Translator] = {}
        self.columns: dict[str, int] = {}  # column letters -> number
        # a cell's `s` text -> whether it is a date style and, if so, a duration style
        self.plain_styles: set[str | None] = set()
        self.date_styles_by_text: dict[str | None, bool] = {}
        if 0 in self.date_styles:
            self.date_styles_by_text[None] = 0 in self.timedelta_styles
        else:
            self.plain_styles.add(None)
        # the sheet's size from <dimension>, which openpyxl honours only before the cells
        self.dimension_open = True
        self.max_column: int | None = None
        self.max_row: int | None = None
        self.empty_row: tuple | list = []
        self.expected = 1  # the next row number to give
        self.number = 1  # the last row's number as openpyxl counts it (1 before any row)
        self.number_seen = 0  # the last row's number, for a row without `r`
        self.past_last_row = False

    def rows(self) -> Iterator[tuple | list]:
        # XMLPullParser fed by hand rather than iterparse: one generator less per element
        parser: ElementTree.XMLPullParser[ElementTree.Element] = ElementTree.XMLPullParser(("end",))
        while not self.past_last_row:
            chunk = self.stream.read(CHUNK_BYTES)
            if not chunk:
                parser.close()
                yield from self._rows_of(parser.read_events())
                break
            parser.feed(chunk)
            yield from self._rows_of(parser.read_events())
        if self.max_row is not None and self.max_row < self.number:
            for _ in range(self.expected, self.max_row + 1):
                yield self.empty_row

    def _rows_of(self, events: Iterator[Any]) -> Iterator[tuple | list]:
        """The rows among these parser events, with the rows the file leaves out.

        The events are `("end", element)` pairs: the parser asks for no other kind, which
        its typeshed signature cannot know (hence `Any`)."""
        for _, element in events:
            tag = element.tag
            if tag == ROW:
                self.dimension_open = False
                self.number = number = self._row_number(element, self.number_seen)
                self.number_seen = number
                columns, values = self._cells(element)
                element.clear()
                if self.max_row is not None and number > self.max_row:
                    self.past_last_row = True
                    return
                while self.expected < number:
                    self.expected += 1
                    yield self.empty_row
                if self.expected <= number:
                    self.expected += 1
                    yield _padded(columns, values, self.max_column)
            elif tag == DIMENSION and self.dimension_open:
                self.dimension_open = False
                _, _, self.max_column, self.max_row = range_boundaries(element.get("ref"))
                if self.max_column is not None:
                    self.empty_row = (None,) * self.max_column
            elif tag == SHEET_DATA:
                self.dimension_open = False
                element.clear()

    @staticmethod
    def _row_number(row: ElementTree.Element, previous: int) -> int:
        text = row.get("r")
        if text is None:
            return previous + 1
        try:
            return int(text)
        except ValueError:
            value = float(text)
            if not value.is_integer():
                raise ValueError(f"{text} is not a valid row number") from None
            return int(value)

    def _cells(self, row: ElementTree.Element) -> tuple[list[int], list]:
        """The column and the value of each cell, in the file's order."""
        columns: list[int] = []
        values: list = []
        column = 0
        column_numbers = self.columns
        for cell in row:
            get = cell.get
            reference = get("r")
            if reference:
                letters = reference.rstrip("0123456789")
                digits = reference[len(letters) :]
                known = column_numbers.get(letters) if digits and digits[0] != "0" else None
                column = self._column_of(reference, letters) if known is None else known
            else:
                column += 1
            kind = get("t", "n")
            raw = None if kind == "inlineStr" else (cell.findtext(VALUE) or None)
            value: object = raw
            formula = cell.find(FORMULA)
            if formula is not None:
                value = self._formula(formula, reference)
            elif raw is not None:
                if kind == "n":
                    number: int | float
                    if "." in raw or "E" in raw or "e" in raw:
                        number = float(raw)
                    else:
                        number = int(raw)
                    style = get("s")
                    if style in self.plain_styles:
                        value = number
                    elif style in self.date_styles_by_text:
                        value = self._date(number, self.date_styles_by_text[style])
                    else:
                        value = self._number_in_style(number, style)
                elif kind == "s":
                    value = self.shared_strings[int(raw)]
                elif kind == "b":
                    value = bool(int(raw))
                elif kind == "d":
                    value = from_ISO8601(raw)
            elif kind == "inlineStr":
                inline = cell.find(INLINE_STRING)
                if inline is not None:
                    value = text_content(inline)
            columns.append(column)
            values.append(value)
        return columns, values

    def _column_of(self, reference: str, letters: str) -> int:
        """The column of an `r` like "AB12", checked as openpyxl checks it."""
        column = coordinate_to_tuple(reference)[1]
        if letters.isalpha() and letters.isupper():
            self.columns[letters] = column
        return column

    def _number_in_style(self, value: int | float, style: str | None) -> object:
        """A number whose style text was not seen yet: learn whether the style is a date."""
        if style == "":
            self.plain_styles.add(style)  # openpyxl keeps s="" as text: no date style
            return value
        assert style is not None, "a cell without a style is settled in __init__"
        style_id = int(style)
        if style_id not in self.date_styles:
            self.plain_styles.add(style)
            return value
        duration = style_id in self.timedelta_styles
        self.date_styles_by_text[style] = duration
        return self._date(value, duration)

    def _date(self, value: int | float, duration: bool) -> object:
        try:
            return from_excel(value, self.epoch, timedelta=duration)
        except (OverflowError, ValueError):
            return "#VALUE!"  # what openpyxl gives a date cell outside the calendar

    def _formula(self, formula: ElementTree.Element, reference: str | None) -> object:
        kind = formula.get("t")
        value = "=" + (formula.text or "")
        if kind == "array":
            return ArrayFormula(ref=formula.get("ref"), text=value)
        if kind == "shared":
            index = formula.get("si")
            if index in self.shared_formulae:
                return self.shared_formulae[index].translate_formula(reference)
            if value != "=":
                self.shared_formulae[index] = Translator(value, reference)
        elif kind == "dataTable":
            return DataTableFormula(**formula.attrib)
        return value


def _padded(columns: list[int], values: list, max_column: int | None) -> tuple:
    """A row's values from column 1, None where the file has no cell, as wide as the
    sheet's dimension says (or up to the last cell when there is none)."""
    if not columns and not max_column:
        return ()
    width = max_column or columns[-1]
    row = [None] * width
    for column, value in zip(columns, values, strict=True):
        if 1 <= column <= width:
            row[column - 1] = value
    return tuple(row)
