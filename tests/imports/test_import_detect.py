"""Detection from content and the safety limits of `assets.imports.detect`: every format
goalport writes is recognised whatever the file is called, encrypted files open with the
passphrase or the user's key, and each hostile or broken file (too big, too many rows, zip
bombs, paths escaping the archive, malformed UTF-8, XML entities) is refused with an error
that says what and where. BOMs and CRLF line endings are read exactly."""

import datetime as dt
import io
import json
import zipfile

import pyarrow as pa
import pytest

from assets.formats.registry import FORMATS
from assets.imports.detect import EncryptedImportError, ImportLimits, detect_import
from assets.imports.parsers.base import ImportFormatError, ZipLimits
from resources import age
from resources.database import split_by_user
from synthetic.population import generate_population

EXPORTED_AT = dt.datetime(2026, 10, 1, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def user_tables() -> tuple[str, dict[str, pa.Table]]:
    population = generate_population(2, seed=21, heavy_every=0)
    user_id = sorted(population["User"]["id"].to_pylist())[0]
    tables = {}
    for name, table in population.items():
        parts = dict(split_by_user(table, "id" if name == "User" else "userId"))
        tables[name] = parts.get(user_id, table.slice(0, 0))
    return user_id, tables


def render(user_tables, fmt: str) -> bytes:
    user_id, tables = user_tables
    return FORMATS[fmt].render(tables, user_id=user_id, exported_at=EXPORTED_AT, filters=None)


def assert_same_tables(found: dict[str, pa.Table], expected: dict[str, pa.Table]) -> None:
    for name, table in expected.items():
        assert found[name].sort_by("id").equals(table.sort_by("id")), name


@pytest.mark.parametrize(
    ("fmt", "detected_as"),
    [
        ("json", "json"),
        ("csv", "csv"),
        ("csv-machine", "csv"),
        ("xlsx", "xlsx"),
        ("parquet", "parquet"),
        ("xml", "xml"),
    ],
)
def test_own_formats_are_recognised_from_content_not_name(user_tables, fmt, detected_as):
    user_id, tables = user_tables
    found = detect_import(render(user_tables, fmt), file_name="download (3).bin")
    assert (found.format, found.source_app) == (detected_as, "goalport")
    assert found.source_user_id == user_id
    assert found.exported_at == EXPORTED_AT
    assert_same_tables(found.tables, tables)


def test_age_files_open_with_passphrase_or_identity(user_tables):
    plain = render(user_tables, "json")
    identity, recipient = age.generate_identity()
    for armor in (False, True):
        sealed = age.encrypt(plain, passphrase="correct horse", work_factor=10, armor=armor)
        found = detect_import(sealed, passphrase="correct horse")
        assert found.encrypted and found.format == "json"
    to_key = age.encrypt(plain, recipients=[recipient])
    asked = []
    found = detect_import(to_key, identities=lambda: asked.append(1) or [identity])
    assert found.encrypted and asked == [1]
    # the key is fetched only when a file needs it
    detect_import(plain, identities=lambda: asked.append(2) or [identity])
    assert asked == [1]


def test_age_files_without_the_right_secret_are_refused(user_tables):
    sealed = age.encrypt(render(user_tables, "json"), passphrase="right", work_factor=10)
    with pytest.raises(EncryptedImportError, match="encrypted") as missing:
        detect_import(sealed, file_name="backup.age")
    assert missing.value.needs == "passphrase"
    with pytest.raises(EncryptedImportError, match="cannot decrypt"):
        detect_import(sealed, passphrase="wrong")
    with pytest.raises(ImportFormatError, match="cannot decrypt"):
        detect_import(sealed[:-20], passphrase="right")


def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return sink.getvalue()


def test_bundle_with_manifest_is_read_and_checked(user_tables):
    import hashlib

    export = render(user_tables, "csv")
    manifest = {
        "files": [{"path": "data/export.csv.zip", "sha256": hashlib.sha256(export).hexdigest()}]
    }
    bundle = _zip(
        {
            "manifest.json": json.dumps(manifest).encode(),
            "README.html": b"<p>hi</p>",
            "data/export.csv.zip": export,
        }
    )
    found = detect_import(bundle, file_name="gdpr.zip")
    assert found.format == "gdpr/csv" and found.source_user_id == user_tables[0]
    assert_same_tables(found.tables, user_tables[1])
    tampered = _zip(
        {"manifest.json": json.dumps(manifest).encode(), "data/export.csv.zip": export + b" "}
    )
    with pytest.raises(ImportFormatError, match="does not match its SHA-256"):
        detect_import(tampered, file_name="gdpr.zip")


def test_the_gdpr_bundle_goalport_writes_is_read(user_tables):
    from assets.gdpr.bundle import render_gdpr_bundle

    user_id, tables = user_tables
    bundle = render_gdpr_bundle(
        tables,
        user_id=user_id,
        exported_at=EXPORTED_AT,
        audit_rows=[],
        texts=None,
        live_counts=None,
    )
    found = detect_import(bundle, file_name="my-data.zip")
    assert found.format == "gdpr/json" and found.source_user_id == user_id
    assert_same_tables(found.tables, tables)


def test_bom_and_crlf_are_read_exactly(user_tables):
    json_file = render(user_tables, "json")
    found = detect_import(b"\xef\xbb\xbf" + json_file.replace(b"\n", b"\r\n"))
    assert_same_tables(found.tables, user_tables[1])

    # goalport writes CSV with CRLF (RFC 4180); tools that rewrite it with LF and a BOM
    # must not change a value (tables with multi-line values are left as written)
    with zipfile.ZipFile(io.BytesIO(render(user_tables, "csv-machine"))) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    crlf = {}
    rewritten = 0
    for name, content in members.items():
        table = user_tables[1].get(name.removesuffix(".csv"))
        if table is not None and content.count(b"\r\n") == table.num_rows + 1:
            content = b"\xef\xbb\xbf" + content.replace(b"\r\n", b"\n")
            rewritten += 1
        crlf[name] = content
    assert rewritten >= 5
    found = detect_import(_zip(crlf))
    assert_same_tables(found.tables, user_tables[1])


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (ImportLimits(max_file_bytes=1000), "an import takes at most 1,000"),
        (ImportLimits(max_rows=10), "rows; an import takes at most 10"),
    ],
)
def test_size_and_row_limits(user_tables, limits, message):
    with pytest.raises(ImportFormatError, match=message):
        detect_import(render(user_tables, "json"), limits=limits)


def test_zip_bombs_and_escaping_paths_are_refused(user_tables):
    limits = ImportLimits(zip=ZipLimits(max_member_bytes=4 * 1024 * 1024, ratio_floor_bytes=1024))
    bomb = _zip({"datapackage.json": b"{}", "Goal.csv": b"0" * (3 * 1024 * 1024)})
    with pytest.raises(ImportFormatError, match="zip bomb"):
        detect_import(bomb, file_name="bomb.zip", limits=limits)
    huge = _zip({"Goal.csv": b"0" * (5 * 1024 * 1024)}, zipfile.ZIP_STORED)
    with pytest.raises(ImportFormatError, match="too large"):
        detect_import(huge, limits=limits)
    for evil in ("../../etc/cron.d/x", "/etc/passwd", "data/../../x"):
        with pytest.raises(ImportFormatError, match="unsafe path"):
            detect_import(_zip({"manifest.json": b"{}", evil: b"x"}), file_name="evil.zip")


def test_zip_entry_larger_than_declared_is_refused():
    """A member whose header lies about its size is caught while reading, not trusted."""
    real = b"A" * 200_000
    data = bytearray(_zip({"Goal.csv": real}, zipfile.ZIP_STORED))
    # shrink the declared sizes in the local header and the central directory
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + offset : at + offset + 4] = (1000).to_bytes(4, "little")
    with pytest.raises(ImportFormatError, match="Goal.csv"):
        detect_import(bytes(data), file_name="liar.zip")


def test_malformed_utf8_is_named_with_its_line(user_tables):
    broken = render(user_tables, "json").replace(b"\n", b"\n\xc3\x28", 1)
    with pytest.raises(ImportFormatError, match=r"line 2.*not valid UTF-8"):
        detect_import(broken, file_name="x.json")
    with zipfile.ZipFile(io.BytesIO(render(user_tables, "csv"))) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["Goal.csv"] = members["Goal.csv"] + b"\xff\xfe broken\n"
    with pytest.raises(ImportFormatError, match=r"Goal.csv.*not valid UTF-8"):
        detect_import(_zip(members), file_name="x.zip")


@pytest.mark.parametrize("part", ["xl/workbook.xml", "xl/sharedStrings.xml", "[Content_Types].xml"])
def test_xml_entities_in_workbooks_are_refused_before_parsing(user_tables, part):
    with zipfile.ZipFile(io.BytesIO(render(user_tables, "xlsx"))) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    laughs = (
        b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>\n'
    )
    content = members.get(part, b'<?xml version="1.0"?><x/>')
    members[part] = laughs + content.split(b"?>", 1)[-1]
    with pytest.raises(ImportFormatError, match="DOCTYPE or ENTITY"):
        detect_import(_zip(members), file_name="laughs.xlsx")


def test_other_apps_go_to_their_parsers_and_junk_is_refused():
    todoist = (
        b"TYPE,CONTENT,DESCRIPTION,PRIORITY,INDENT,AUTHOR,RESPONSIBLE,DATE,DATE_LANG,TIMEZONE\r\n"
        b"task,Write the report,,1,1,Ann (1),,,en,UTC\r\n"
        b"task,Check the figures,,4,2,Ann (1),,,en,UTC\r\n"
    )
    found = detect_import(todoist, file_name="Work [123].csv")
    assert found.source_app == "todoist" and not found.is_goalport
    goals = found.tables["Goal"]
    assert {"Write the report", "Check the figures"} <= set(goals["title"].to_pylist())
    assert all(key.startswith("todoist:") for key in goals["id"].to_pylist())
    assert set(goals["userId"].to_pylist()) == {""}
    with pytest.raises(ImportFormatError, match="supported app"):
        detect_import(b"just some words\n", file_name="notes.txt")
    with pytest.raises(ImportFormatError, match="empty"):
        detect_import(b"\xef\xbb\xbf \r\n", file_name="empty.csv")
