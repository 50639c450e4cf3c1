"""A minimal property-based fuzz harness for the parsers of this area's JSON/CSV apps:
mutated real-shaped files either parse (and keep the contract) or are refused with one
line naming the file, never another exception. (A shared harness may replace this.)"""

from __future__ import annotations

import json
from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from parser_checks import NOW, assert_contract

from assets.imports.parsers.base import ImportFormatError, ParsedImport

FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ODD_VALUES = [None, 0, -1, 2**63, 1e300, -1.5, True, "", "x", "🙂" * 50, [], {}, [None], {"a": 1}]
ODD_VALUES += ["2024-13-45T25:61:00Z", "99999999T999999Z", "\x00", "0000-00-00"]
TOKENS = [b",", b'"', b"\n", b"\r\n", b"{", b"}", b"[", b"]", b"null", b"\x00", "é".encode()]


@st.composite
def damaged_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with bytes flipped, cut short, a slice repeated, or a token inserted."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        mode = draw(st.sampled_from(["flip", "cut", "repeat", "insert"]))
        if mode == "flip" and out:
            out[at] = draw(st.integers(0, 255))
        elif mode == "cut":
            out = out[: max(at, 1)]
        elif mode == "repeat":
            out[at:at] = out[at : at + draw(st.integers(1, 300))]
        else:
            out[at:at] = draw(st.sampled_from(TOKENS))
    return bytes(out)


def _paths(node, prefix=()):
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield (*prefix, key)
        if isinstance(value, dict | list):
            yield from _paths(value, (*prefix, key))


@st.composite
def odd_json(draw: st.DrawFn, doc) -> bytes:
    """The JSON document `doc` with one to three values replaced by values of odd types."""
    every = list(_paths(doc))
    copy = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(every))
        parent = copy
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = json.loads(json.dumps(draw(st.sampled_from(ODD_VALUES))))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier replacement removed this path
    return json.dumps(copy).encode()


def parses_or_refuses(parse: Callable[..., ParsedImport], data: bytes, app: str) -> None:
    try:
        parsed = parse(data, file_name="fuzzed", now=NOW, timezone="Europe/Berlin")
    except ImportFormatError as exc:
        message = str(exc)
        assert message.startswith("fuzzed") and "\n" not in message, message
        return
    assert_contract(parsed, app)
