"""Property-based fuzzing (hypothesis) of every parser, on real-shaped files: the fixtures
and the messy exports of each app, mutated (tests/imports/parsers/fuzzing.py). Each file
ends imported, keeping the parser contract, or refused with one clear ImportFormatError
line; never another exception. The detecting entry point is fuzzed the same way."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fuzzing import fuzz_parser
from parser_checks import foreign_exports

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from messy_exports import all_messy_exports  # noqa: E402

from assets.imports.parsers.detect import PARSERS, parse_foreign_export  # noqa: E402

FIXTURE_NAMES = {
    "todoist": "Home [2203306141].csv",
    "notion": "notion.zip",
    "trello": "board.json",
    "asana": "Website_Relaunch.csv",
    "ticktick": "TickTick-backup-2024-03-10.csv",
    "google_tasks": "takeout.zip",
    "habitica": "habitica-user-data.json",
    "loop_habits": "Loop Habits CSV 2024-02-03.zip",
}


def samples_of(app: str) -> dict[str, bytes]:
    samples = {FIXTURE_NAMES[app]: foreign_exports()[app]}
    for export in all_messy_exports().values():
        if export.app == app:
            samples[export.file_name] = export.data
    return samples


@pytest.mark.parametrize("app", sorted(FIXTURE_NAMES))
def test_fuzz_parser(app):
    fuzz_parser(PARSERS[app], samples_of(app), app=app)


def test_fuzz_detection_and_dispatch():
    samples = {
        f"{app}-{name}": data for app in FIXTURE_NAMES for name, data in samples_of(app).items()
    }
    picked = dict(sorted(samples.items())[::3])  # a third of them: the parsers had theirs
    fuzz_parser(parse_foreign_export, picked)


def test_the_harness_catches_a_parser_that_crashes():
    sample = foreign_exports()["trello"]

    def fragile(data: bytes, **_options):
        if data != sample:
            raise KeyError("cards")  # what an unguarded parser raises on a changed file
        return PARSERS["trello"](data, **_options)

    with pytest.raises(KeyError):
        fuzz_parser(fragile, {"board.json": sample}, app="trello")


def test_the_harness_catches_a_message_of_several_lines():
    from assets.imports.parsers.base import ImportFormatError

    def chatty(data: bytes, *, file_name: str, **_options):
        raise ImportFormatError(file_name, None, None, "first line\nTraceback (most recent...")

    with pytest.raises(AssertionError):
        fuzz_parser(chatty, {"board.json": b"{}"})
