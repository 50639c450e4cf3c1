"""Damaged exports: whatever the damage, a parser either reads the file or raises
ImportFormatError naming it, never another exception (which would be a 500, not advice)."""

from __future__ import annotations

import json
import random

import pytest
from parser_checks import NOW, fixture_bytes, foreign_exports

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import PARSERS, SOURCE_APPS, parse_foreign_export

JSON_FIXTURES = {
    "trello": "board.json",
    "google_tasks": "Tasks.json",
    "habitica": "habitica-user-data.json",
}
ODD_VALUES = [None, 5, -1.5, "x", "", [], {}, [1], {"a": 1}, True, "2024-13-45", 1e300]


def damaged(data: bytes, rng: random.Random) -> bytes:
    damaged = bytearray(data)
    mode = rng.choice(["flip", "cut", "repeat", "insert"])
    if mode == "flip":
        for _ in range(rng.randint(1, 10)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
    elif mode == "cut":
        damaged = damaged[: rng.randrange(1, len(damaged))]
    elif mode == "repeat":
        at = rng.randrange(len(damaged))
        damaged[at:at] = damaged[at : at + rng.randint(1, 200)]
    else:
        at = rng.randrange(len(damaged))
        damaged[at:at] = rng.choice([b",", b'"', b"\n", b"{", b"null", b"\x00", "é".encode()])
    return bytes(damaged)


def paths(node, prefix=()):
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        yield (*prefix, key)
        yield from paths(value, (*prefix, key))


def parses_or_explains(parse, data: bytes) -> None:
    try:
        parse(data, file_name="damaged", now=NOW)
    except ImportFormatError as exc:
        assert str(exc).startswith("damaged")


@pytest.mark.parametrize("app", SOURCE_APPS)
def test_damaged_bytes(app):
    rng = random.Random(app)
    data = foreign_exports()[app]
    for _ in range(40):
        mutated = damaged(data, rng)
        parses_or_explains(PARSERS[app], mutated)
        parses_or_explains(parse_foreign_export, mutated)


@pytest.mark.parametrize("app", sorted(JSON_FIXTURES))
def test_values_of_unexpected_types(app):
    rng = random.Random(app)
    original = json.loads(fixture_bytes(app, JSON_FIXTURES[app]))
    every_path = list(paths(original))
    for _ in range(150):
        doc = json.loads(json.dumps(original))
        path = rng.choice(every_path)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = rng.choice(ODD_VALUES)
        parses_or_explains(PARSERS[app], json.dumps(doc).encode())
