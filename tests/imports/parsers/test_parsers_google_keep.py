"""Google Keep in a Takeout archive (.tgz or .zip, any folder name): notes, checklists,
labels, archived and trashed notes; hostile tars refused quickly; fuzzed notes never crash."""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
import time

import pytest
from file_exports import keep_notes, keep_takeout, tar_bytes
from fuzzing import FUZZ_SETTINGS, byte_mutations, json_mutations, parses_or_refuses
from hypothesis import given
from hypothesis import strategies as st
from parser_checks import NOW, adjustments_of, by_id, by_title, parse_detected, zip_bytes

from assets.imports.parsers.base import ImportFormatError
from assets.imports.parsers.detect import detect_source
from assets.imports.parsers.google_keep import parse_google_keep

UTC = dt.UTC
CREATED = 1_700_000_000_000_000


@pytest.mark.parametrize(("folder", "tgz"), [("Notizen", True), ("Keep", False), ("Заметки", True)])
def test_notes_and_checklists_whatever_the_folder_and_archive(folder, tgz):
    parsed = parse_detected(keep_takeout(folder=folder, tgz=tgz), "takeout-001.tgz", "google_keep")
    goals = by_title(parsed)
    shopping = goals["Einkaufsliste 🛒"]
    assert not shopping["isCompleted"] and shopping["createdAt"] == dt.datetime(
        2023, 11, 14, 22, 13, 20, tzinfo=UTC
    )
    items = {g["title"]: g for g in goals.values() if g["parentGoalId"] == shopping["id"]}
    assert {t: g["isCompleted"] for t, g in items.items()} == {
        "Milch": True,
        "Brot": False,
        "Käse 🧀": False,
    }
    assert items["Milch"]["completedAt"] == dt.datetime(2023, 11, 14, 23, 13, 20, tzinfo=UTC)
    assert "Tags: Haushalt" in shopping["description"]
    assert goals["Erledigt"]["isCompleted"]  # every item ticked
    untitled = next(g for t, g in goals.items() if t.startswith("Idee:"))
    assert len(untitled["description"]) > 4_000 and len(untitled["title"]) <= 200
    assert parsed.extras[untitled["id"]]["archived"] is True
    assert parsed.extras[untitled["id"]]["attachments"] == ["photo.jpg"]
    assert "Weg" not in goals
    assert any(e.reason == "in Keep's trash" for e in parsed.skipped())
    assert goals["Doppelt"]["id"] != shopping["id"]  # a repeated creation time stays apart


def test_inconsistent_times_are_normalised_and_each_adjustment_reported():
    parsed = parse_google_keep(keep_takeout(inconsistent=True), now=NOW)
    untitled = next(g for g in by_id(parsed).values() if g["title"].startswith("Idee:"))
    edited_at = dt.datetime(2023, 11, 13, 22, 13, 20, tzinfo=dt.UTC)
    assert untitled["createdAt"] == untitled["updatedAt"] == edited_at
    assert len(untitled["description"]) == 5000
    extras = parsed.extras[untitled["id"]]
    assert extras["sourceCreatedAt"] == "2023-11-14T22:13:30Z"
    assert extras["sourceDescription"].startswith("Idee: Très long texte")
    long_text, moved = adjustments_of(parsed, untitled["id"])
    assert "longer than the app's 5000" in long_text
    assert moved.startswith("last modified (2023-11-13T22:13:20Z) before it was created")


def test_a_single_note_json_and_detection():
    note = json.dumps(keep_notes()["Erledigt.json"]).encode()
    parsed = parse_detected(note, "Erledigt.json", "google_keep")
    assert by_title(parsed)["Steuer"]["isCompleted"]
    other = zip_bytes({"Takeout/Drive/file.json": json.dumps({"title": "x"})})
    assert detect_source(other, "takeout.zip") == "unknown"


def _tar_with(info: tarfile.TarInfo, content: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(info, io.BytesIO(content) if content else None)
    return buffer.getvalue()


def test_paths_outside_links_and_devices_are_refused():
    escape = tarfile.TarInfo("Takeout/../../etc/passwd.json")
    escape.size = 2
    with pytest.raises(ImportFormatError, match="unsafe path"):
        parse_google_keep(_tar_with(escape, b"{}"), file_name="evil.tgz")
    for kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        link = tarfile.TarInfo("Takeout/Keep/note.json")
        link.type, link.linkname = kind, "/etc/passwd"
        with pytest.raises(ImportFormatError, match="is a link"):
            parse_google_keep(_tar_with(link), file_name="evil.tgz")
    device = tarfile.TarInfo("Takeout/Keep/dev.json")
    device.type = tarfile.CHRTYPE
    with pytest.raises(ImportFormatError, match="special file"):
        parse_google_keep(_tar_with(device), file_name="evil.tgz")


def test_a_tar_bomb_is_refused_quickly():
    members = {f"Takeout/Keep/{n}.json": b"\x00" * (1024 * 1024) for n in range(300)}
    bomb = tar_bytes(members)
    started = time.monotonic()
    with pytest.raises(ImportFormatError, match="tar bomb"):
        parse_google_keep(bomb, file_name="bomb.tgz")
    assert time.monotonic() - started < 1


FUZZ_NOTE = json.dumps(keep_notes()["Einkaufsliste.json"]).encode()


@FUZZ_SETTINGS
@given(st.one_of(byte_mutations(FUZZ_NOTE), json_mutations(FUZZ_NOTE)), st.booleans())
def test_fuzzed_notes_import_or_are_refused(mutated, tgz):
    members = {"Takeout/Keep/a.json": mutated}
    data = tar_bytes(members) if tgz else zip_bytes(members)
    parses_or_refuses(parse_google_keep, data, "takeout.tgz", "google_keep")


def test_detection_never_claims_other_takeout_or_tar_files():
    tasks = zip_bytes(
        {"Takeout/Tasks/Tasks.json": json.dumps({"kind": "tasks#taskLists", "items": []})}
    )
    assert detect_source(tasks, "takeout.zip") != "google_keep"
    other = tar_bytes({"backup/notes.json": b'{"title": "x", "text": "y"}', "a.txt": b"hi"})
    assert detect_source(other, "backup.tgz") == "unknown"
    gzipped_json = __import__("gzip").compress(json.dumps(keep_notes()["Erledigt.json"]).encode())
    assert detect_source(gzipped_json, "note.json.gz") == "unknown"


def test_a_note_nested_too_deep_is_refused_in_one_line():
    deep = (
        b'{"textContent": "x", "isTrashed": false, "a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    )
    with pytest.raises(ImportFormatError, match="takeout.zip/Takeout/Keep/deep.json"):
        parse_google_keep(zip_bytes({"Takeout/Keep/deep.json": deep}), file_name="takeout.zip")
