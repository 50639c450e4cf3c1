"""A minimal fuzz harness for the archive parsers (until the shared
tests/imports/parsers/fuzzing.py lands): an input either parses into a ParsedImport that
keeps the contract, or is refused with ImportFormatError in one line; nothing else."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from parser_checks import NOW, assert_contract

from assets.imports.parsers.base import ImportFormatError, ParsedImport

FUZZ_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no long shrinking in make test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", "\x00", "💥" * 50, "<div>" * 300, "</table>", "@", "→", "null", "{", "-1", "1e308"]
    ),
)


def mutate_text(text: str, position: int, insert: str, cut: int) -> str:
    """`text` with `insert` at a relative position and up to `cut` characters removed."""
    at = position % (len(text) + 1)
    return text[:at] + insert + text[at + cut :]


def imports_or_refuses(
    parse: Callable[..., ParsedImport], data: bytes, name: str, app: str
) -> None:
    try:
        parsed = parse(data, file_name=name, now=NOW)
    except ImportFormatError as exc:
        assert str(exc).startswith(name) and "Traceback" not in str(exc), str(exc)
        return
    assert_contract(parsed, app)
