"""Property-based fuzzing of a foreign-export parser, reusable by every parser's tests.

`fuzz_parser(parse, samples, app=...)` feeds the parser mutated copies of real-shaped
sample files (bytes flipped, cut, repeated, hostile tokens spliced in; for JSON, values of
the wrong type anywhere; for CSV, odd cells anywhere; any of them zipped) and holds it to
one promise: the file is either imported, into tables that keep the app's contract, or
refused with an ImportFormatError of one line that names the file. Any other exception,
or a multi-line message, fails the test with the input hypothesis shrank it to.

    from fuzzing import fuzz_parser
    def test_fuzz_my_app():
        fuzz_parser(parse_my_app, {"export.json": sample_bytes}, app="my_app")

The example budget is the `goalport-fuzz` settings profile (small, no deadline: the
machine is shared); `FUZZ_EXAMPLES` raises it for a longer local run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parser_checks import NOW, assert_contract

from assets.imports.parsers.base import ImportFormatError, ParsedImport

settings.register_profile(
    "goalport-fuzz",
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    deadline=None,
    derandomize=True,  # the same examples every run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
FUZZ_SETTINGS = settings.get_profile("goalport-fuzz")

HOSTILE = [
    b"\x00",
    b'"',
    b"\r\n",
    b",",
    b";",
    b"{",
    b"[" * 3000,
    b"[[file {" * 200,
    "🙂é東京".encode(),
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"1e400",
    b"-1",
    b"null",
    b"NaN",
    b"9" * 40,
    b"x" * 70_000,
    b" (a.md), " * 500,
]
ODD_VALUES = [None, True, -1, 0, 7, 1e300, -1e300, 2**70, "", " ", "x" * 300, "2024-13-45",
              "yesterday", [], {}, [None], {"id": None}, "🙂"]  # fmt: skip
ODD_CELLS = ["", "x" * 300, "-1", "7", "1e400", "not a date", "2099-01-01", "🙂", '"', "\n",
             "@a @b", "p9", "0000-00-00"]  # fmt: skip


@st.composite
def byte_mutations(draw, data: bytes) -> bytes:
    """`data` damaged at the byte level: flips, a cut, a repeated slice, a hostile token."""
    mutated = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "repeat", "insert", "delete"]))
        if not mutated:
            mutated.extend(b"x")
        at = draw(st.integers(0, len(mutated) - 1))
        if kind == "flip":
            mutated[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del mutated[max(at, 1) :]
        elif kind == "repeat":
            size = draw(st.integers(1, 400))
            mutated[at:at] = bytes(mutated[at : at + size]) * draw(st.integers(1, 20))
        elif kind == "insert":
            mutated[at:at] = draw(st.sampled_from(HOSTILE))
        else:
            del mutated[at : at + draw(st.integers(1, 50))]
    return bytes(mutated)


def _json_paths(node, prefix=()):
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        yield (*prefix, key)
        yield from _json_paths(value, (*prefix, key))


@st.composite
def json_mutations(draw, data: bytes) -> bytes:
    """The JSON document with values of the wrong type or range at random places."""
    doc = json.loads(data)
    paths = list(_json_paths(doc))
    for _ in range(draw(st.integers(1, 5))):
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = draw(st.sampled_from(ODD_VALUES))
        except (KeyError, IndexError, TypeError):
            continue
    return json.dumps(doc).encode()


@st.composite
def csv_mutations(draw, data: bytes) -> bytes:
    """The CSV with odd cells (empty, huge, out of range, not a date ...) at random places,
    rows repeated (the same ids twice) or removed."""
    text = data.decode("utf-8-sig")
    records = list(csv.reader(io.StringIO(text, newline="")))
    if len(records) < 2:
        return data
    for _ in range(draw(st.integers(1, 6))):
        row = draw(st.integers(1, len(records) - 1))
        kind = draw(st.sampled_from(["cell", "cell", "repeat", "drop"]))
        if kind == "repeat":
            records.insert(row, list(records[row]))
        elif kind == "drop" and len(records) > 2:
            del records[row]
        elif records[row]:
            column = draw(st.integers(0, len(records[row]) - 1))
            records[row][column] = draw(st.sampled_from(ODD_CELLS))
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(records)
    return out.getvalue().encode()


def _zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def mutations(name: str, data: bytes) -> st.SearchStrategy[bytes]:
    """Every mutation that fits the sample: structural ones for JSON and CSV, byte-level
    ones for all, sometimes zipped under the sample's name."""
    kinds = [byte_mutations(data)]
    stripped = data.lstrip(b"\xef\xbb\xbf \r\n\t")
    if stripped[:1] in (b"{", b"["):
        try:
            json.loads(data)
            kinds.append(json_mutations(data))
        except ValueError:
            pass
    elif name.casefold().endswith(".csv"):
        kinds.append(csv_mutations(data))
    mutated = st.one_of(kinds)
    if data[:2] == b"PK":
        return mutated
    return st.one_of(mutated, mutated.map(lambda d: _zipped(name, d)))


def parses_or_refuses(
    parse: Callable[..., ParsedImport], data: bytes, file_name: str, app: str | None
) -> ParsedImport | None:
    """The one promise: imported (and the result keeps the contract) or refused with one
    line naming the file. Anything else raises out of here."""
    try:
        parsed = parse(data, file_name=file_name, now=NOW)
    except ImportFormatError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert message.startswith(file_name), message
        assert "Traceback" not in message
        return None
    if app is not None:
        assert_contract(parsed, app)
    return parsed


def fuzz_parser(
    parse: Callable[..., ParsedImport],
    samples: dict[str, bytes],
    *,
    app: str | None = None,
    budget: settings = FUZZ_SETTINGS,
) -> None:
    """Fuzz `parse` with mutations of each sample (file name -> bytes), within `budget`."""
    for name, data in samples.items():
        parses_or_refuses(parse, data, name, app)  # the sample itself imports
        _property(parse, name, data, app, budget)()


def _property(parse, name: str, data: bytes, app: str | None, budget: settings):
    @budget
    @given(mutated=mutations(name, data))
    def property_holds(mutated: bytes) -> None:
        parses_or_refuses(parse, mutated, name, app)

    return property_holds
