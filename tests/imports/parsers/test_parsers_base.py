"""The shared parser pieces: safe zip reading, text decoding, dates, the goal-tree rules."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from decimal import Decimal

import pytest
from parser_checks import NOW, assert_contract, by_id, zip_bytes

from assets.imports.parsers.base import (
    ImportBuilder,
    ImportFormatError,
    ZipLimits,
    compose_description,
    priority_from_label,
    safe_zip_members,
)
from assets.imports.parsers.dates import iso_utc, parse_date, parse_timestamp, parse_when, zone
from assets.imports.parsers.textio import decode_text, read_csv_table

UTC = dt.UTC


# ---------------------------------------------------------------- zip safety


@pytest.mark.parametrize(
    "member",
    ["/etc/passwd", "../evil.csv", "a/../../b.csv", "C:/Windows/x.csv", "dir\\..\\..\\x.csv"],
)
def test_absolute_and_parent_paths_are_refused(member):
    with pytest.raises(ImportFormatError) as caught:
        safe_zip_members(zip_bytes({"ok.csv": "a", member: "b"}), file_name="up.zip")
    assert "unsafe path" in str(caught.value) and str(caught.value).startswith("up.zip, member ")


def test_too_many_members_and_too_large_members_are_refused():
    many = zip_bytes({f"f{i}.csv": "x" for i in range(11)})
    with pytest.raises(ImportFormatError, match="up.zip: holds 11 members, more than the 10"):
        safe_zip_members(many, file_name="up.zip", limits=ZipLimits(max_members=10))
    big = zip_bytes({"big.csv": "y" * 5000})
    with pytest.raises(ImportFormatError, match="member 'big.csv': is too large"):
        safe_zip_members(big, file_name="up.zip", limits=ZipLimits(max_member_bytes=4096))
    with pytest.raises(ImportFormatError, match="is too large"):
        safe_zip_members(
            zip_bytes({"a.csv": "y" * 3000, "b.csv": "y" * 3000}),
            file_name="up.zip",
            limits=ZipLimits(max_total_bytes=5000),
        )


def test_a_zip_bomb_is_refused_before_it_is_inflated():
    bomb = zip_bytes({"zeros.csv": b"\0" * (4 * 1024 * 1024)})
    assert len(bomb) < 50_000
    with pytest.raises(ImportFormatError, match="compressed suspiciously well"):
        safe_zip_members(bomb, file_name="bomb.zip")


def test_a_member_larger_than_declared_is_caught_while_reading():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.csv", b"z" * 2000)
    data = bytearray(buffer.getvalue())
    # Lower the declared size in the central directory: the reader must not trust it.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (100).to_bytes(4, "little")
    with pytest.raises(ImportFormatError, match="member 'a.csv'"):
        safe_zip_members(bytes(data), file_name="liar.zip", limits=ZipLimits(max_member_bytes=1000))


def test_junk_is_left_out_and_select_filters():
    data = zip_bytes(
        {"a.csv": "1", "b.md": "2", "__MACOSX/._a.csv": "x", "d/.DS_Store": "x", "d/Thumbs.db": "x"}
    )
    assert safe_zip_members(data, file_name="z.zip") == {"a.csv": b"1", "b.md": b"2"}
    assert safe_zip_members(data, file_name="z.zip", select=lambda n: n.endswith(".md")) == {
        "b.md": b"2"
    }
    with pytest.raises(ImportFormatError, match="z.zip: not a readable zip archive"):
        safe_zip_members(b"PK\x03\x04broken", file_name="z.zip")


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    "data",
    [
        "Zoë;Ærø\n".encode("utf-8-sig"),
        "Zoë;Ærø\n".encode("utf-16"),
        "Zoë;Ærø\n".encode("utf-16-le"),
        "Zoë;Ærø\n".encode("utf-16-be"),
        "Zoë;Ærø\n".encode("cp1252"),
    ],
)
def test_text_in_any_common_encoding(data):
    assert decode_text(data, file_name="f.csv") == "Zoë;Ærø\n"


def test_binary_is_not_text_and_header_can_follow_preamble_lines():
    with pytest.raises(ImportFormatError, match="f.csv: binary data"):
        decode_text(
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x08\x06", file_name="f.csv"
        )
    table = read_csv_table(
        '"Export"\n"Notes:\nline two"\nA;B\n1;"x\ny"\n\n2;z\n',
        file_name="f.csv",
        is_header=lambda names: {"a", "b"} <= names,
    )
    assert table.delimiter == ";" and table.header == ["A", "B"]
    assert table.rows == [(4, ["1", "x\ny"]), (6, ["2", "z"])]


# ---------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-05-17T08:30:00+0000", dt.datetime(2023, 5, 17, 8, 30, tzinfo=UTC)),
        ("2023-05-17T10:30:00+02:00", dt.datetime(2023, 5, 17, 8, 30, tzinfo=UTC)),
        ("2021-03-05T17:00:00.123456Z", dt.datetime(2021, 3, 5, 17, 0, 0, 123000, tzinfo=UTC)),
        ("October 15, 2023 9:30 PM", dt.datetime(2023, 10, 15, 21, 30, tzinfo=UTC)),
        ("October 15, 2023 9:30 PM (GMT+2)", dt.datetime(2023, 10, 15, 19, 30, tzinfo=UTC)),
        (
            "Wed Jan 11 2023 00:00:00 GMT-0500 (Eastern Standard Time)",
            dt.datetime(2023, 1, 11, 5, tzinfo=UTC),
        ),
        ("3/5/21", dt.datetime(2021, 3, 5, 12, tzinfo=UTC)),
        ("25/12/2023", dt.datetime(2023, 12, 25, 12, tzinfo=UTC)),
        ("05.03.2021 14:00", dt.datetime(2021, 3, 5, 14, tzinfo=UTC)),
        ("@January 8, 2024 ", dt.datetime(2024, 1, 8, 12, tzinfo=UTC)),
        ("2024-02-30", None),
        ("soon", None),
        ("", None),
    ],
)
def test_timestamps_in_the_shapes_exports_use(text, expected):
    assert parse_timestamp(text) == expected


def test_zone_less_times_are_read_in_the_given_zone_and_days_in_the_users():
    paris = zone("Europe/Paris")
    assert parse_timestamp("2024-07-01 10:00", assume_tz=paris) == dt.datetime(
        2024, 7, 1, 8, tzinfo=UTC
    )
    assert parse_date("2021-06-14T22:00:00+0000", local_tz=paris) == dt.date(2021, 6, 15)
    assert parse_date("2021-06-14T22:00:00+0000") == dt.date(2021, 6, 14)
    assert parse_when("12 Mar").year is None and zone("Mars/Olympus") is None
    assert iso_utc(dt.datetime(2024, 3, 1, 9, 30, 0, 250999, tzinfo=UTC)) == (
        "2024-03-01T09:30:00.250Z"
    )


# ---------------------------------------------------------------- mapping rules


def test_priority_words_and_description_footer():
    assert [
        priority_from_label(t)
        for t in ("🔥 Urgent", "High", "medium", "Low", "P1", "p4", "whatever", "")
    ] == [5, 4, 3, 1, 5, 2, None, None]
    assert compose_description(
        "Body\r\ntext", labels=["a", "b"], recurrence="every day", comments=["one\ntwo"]
    ) == ("Body\ntext\n\nTags: a, b\nRepeats: every day\nComments:\n- one\n  two")
    assert compose_description("  ") is None


def test_builder_cuts_cycles_adopts_orphans_and_keeps_repeated_ids_apart():
    builder = ImportBuilder("todoist", now=NOW)
    builder.add_goal("todoist:task:a", title="A", source_item="a", parent="todoist:task:b")
    builder.add_goal("todoist:task:b", title="B", source_item="b", parent="todoist:task:a")
    builder.add_goal("todoist:task:c", title="C", source_item="c", parent="todoist:task:zzz")
    twin = builder.add_goal("todoist:task:c", title="C again", source_item="c2")
    assert twin == "todoist:task:c#2"
    skipped = builder.add_progress(
        "todoist:p:1",
        goal="todoist:task:c",
        value=Decimal("1e12"),
        source_kind="marks",
        recorded_at=None,
    )
    assert skipped is None
    builder.add_progress(
        "todoist:p:2", goal="todoist:task:gone", value=1, source_kind="marks", recorded_at=NOW
    )
    parsed = builder.finish()
    assert_contract(parsed, "todoist")
    goals = by_id(parsed)
    assert [goals[k]["parentGoalId"] for k in ("todoist:task:a", "todoist:task:b")].count(None) == 1
    root = goals["todoist:task:c"]["parentGoalId"]
    assert root == "todoist:goal:import-root" and goals[root]["parentGoalId"] is None
    assert parsed.extras["todoist:task:c"]["sourceParent"] == "todoist:task:zzz"
    adjusted = {e.external_key: e.adjustments for e in parsed.adjusted()}
    assert any("not in the file" in a for a in adjusted["todoist:task:c"])
    assert any("repeats the external id" in a for a in adjusted["todoist:task:c#2"])
    assert (
        sum(
            "cycle" in a
            for key in ("todoist:task:a", "todoist:task:b")
            for a in adjusted.get(key, [])
        )
        == 1
    )
    assert any("cycle" in w for w in parsed.warnings)
    assert any("not in the export" in w for w in parsed.warnings)
    reasons = [e.reason for e in parsed.skipped()]
    assert any("does not fit" in r for r in reasons)
    assert any("todoist:task:gone is not in the export" in r for r in reasons)
    assert parsed.extras["todoist:task:a"]["inferred"] == ["createdAt", "updatedAt"]
