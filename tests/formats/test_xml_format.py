"""The XML export: one document per user, valid against the published XML Schema (checked
by xmlschema, an independent validator), read back exactly, and safe to read: a file with
a DTD, an external entity (XXE) or an entity bomb is refused with a clear error."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
import time

import pyarrow as pa
import pytest
import xmlschema

from assets.formats.registry import FORMATS, REQUESTABLE_FORMATS, export_format
from assets.formats.xml import EXPORT_XSD_PATH, export_xsd_text, read_xml_export, read_xml_filters
from resources.schema import APP_TABLE_NAMES
from tests.formats.test_renderers import UID, as_tables, rich_rows

AT = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
XSD = xmlschema.XMLSchema11(str(EXPORT_XSD_PATH))


def render(tables, **options) -> bytes:
    return FORMATS["xml"].render(tables, user_id=UID, exported_at=AT, **options)


def test_xml_is_a_requestable_readable_format():
    assert "xml" in REQUESTABLE_FORMATS
    assert export_format("xml").extension == "xml"
    assert export_format("xml").media_type == "application/xml"


def test_the_published_xsd_is_the_one_made_from_the_tables():
    assert EXPORT_XSD_PATH.read_text(encoding="utf-8") == export_xsd_text()


def test_a_rich_export_is_valid_and_comes_back_exactly():
    tables = as_tables(rich_rows())
    filters = {"modules": ["fitness"], "dateRange": {"start": "2024-01-01", "end": None}}
    data = render(tables, filters=filters)
    XSD.validate(data.decode("utf-8"))  # raises, naming the path, if not valid
    # the awkward values are really in the file: a raw CR would be read as LF
    assert b"&#13;" in data and b'encoding="base64"' in data
    back = read_xml_export(data)
    for name in APP_TABLE_NAMES:
        expected = FORMATS["json"].read(FORMATS["json"].render(tables, user_id=UID, exported_at=AT))
        assert back[name].equals(expected[name]), name
    assert render(back, filters=filters) == data
    assert read_xml_filters(data) == filters
    assert xmlschema.__version__  # reported: the validator in use


def test_an_empty_export_is_valid():
    data = render(as_tables({}))
    XSD.validate(data.decode())
    assert all(t.num_rows == 0 for t in read_xml_export(data).values())


def test_the_validator_refuses_what_goalport_must_not_write():
    data = render(as_tables(rich_rows())).decode()
    assert not XSD.is_valid(data.replace("<priority>", "<priority>x", 1))
    assert not XSD.is_valid(data.replace('formatVersion="1"', 'formatVersion="2"'))


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE export [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<export xmlns="urn:goalport:export:1" format="goalport.export" formatVersion="1"
  userId="u" exportedAt="2024-01-01T00:00:00.000Z"><filters>&secret;</filters></export>"""

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<export xmlns="urn:goalport:export:1">&lol4;</export>"""


@pytest.fixture
def listener():
    """A local HTTP server that counts requests: reading a file must never call out."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY x "leaked">')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", hits
    server.shutdown()


def test_xxe_entity_bomb_and_external_dtd_are_refused(listener):
    url, hits = listener
    external = (
        f'<?xml version="1.0"?><!DOCTYPE export SYSTEM "{url}/evil.dtd">'
        '<export xmlns="urn:goalport:export:1"/>'
    ).encode()
    parameter = (
        f'<?xml version="1.0"?><!DOCTYPE export [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]>'
        '<export xmlns="urn:goalport:export:1"/>'
    ).encode()
    for hostile in (XXE, LAUGHS, external, parameter):
        with pytest.raises(ValueError, match=r"export\.xml: refused: the document declares a DTD"):
            read_xml_export(hostile)
    assert hits == []


def test_deep_nesting_and_undeclared_entities_are_refused_quickly():
    head = b'<export xmlns="urn:goalport:export:1" format="goalport.export" formatVersion="1">'
    deep = head + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</export>"
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"export\.xml: not well-formed XML"):
        read_xml_export(deep)
    assert time.perf_counter() - started < 2
    with pytest.raises(ValueError, match=r"export\.xml: not well-formed XML"):
        read_xml_export(head + b"<filters>&secret;</filters></export>")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.replace(b"urn:goalport:export:1", b"urn:other"), "is not in namespace|root"),
        (lambda d: d.replace(b"<priority>3</priority>", b"<priority>3.5</priority>", 1),
         r"<Goal> row \d+, field 'priority': '3.5' is not a whole number"),
        (lambda d: d.replace(b"<isCompleted>false<", b"<isCompleted>maybe<", 1),
         r"<Goal> row \d+, field 'isCompleted': 'maybe' is not true or false"),
        (lambda d: d.replace(b"<row><id>", b"<row><colour>red</colour><id>", 1),
         r"<User> row 1: unknown field\(s\) colour"),
        (lambda d: d.replace(b"<Goal>", b"<Goal/><Goal>", 1), "<Goal> appears twice"),
        (lambda d: d[: len(d) // 2], "not well-formed XML"),
        (lambda d: d.replace(b'formatVersion="1"', b'formatVersion="9"'), "formatVersion '9'"),
    ],
)  # fmt: skip
def test_a_broken_document_is_refused_naming_where(change, message):
    data = render(as_tables(rich_rows()))
    with pytest.raises(ValueError, match=message):
        read_xml_export(change(data))


def test_an_xml_export_with_the_old_single_name_imports():
    data = render(as_tables(rich_rows()))
    old = data.replace(b"<firstName>Zo\xc3\xab \xf0\x9f\x98\x80</firstName>", b"")
    start = old.index(b"<lastName>")
    end = old.index(b"</lastName>") + len(b"</lastName>")
    old = old[:start] + "<name>Zoë  Brontë Jr.</name>".encode() + old[end:]
    user = read_xml_export(old)["User"]
    assert user.select(["firstName", "lastName"]).to_pylist() == [
        {"firstName": "Zoë", "lastName": "Brontë Jr."}
    ]
    assert isinstance(user, pa.Table) and user.num_rows == 1


def test_an_xml_export_is_recognised_and_imported_from_its_bytes():
    from assets.imports.detect import detect_import
    from assets.imports.parsers.base import ImportFormatError

    tables = as_tables(rich_rows())
    data = render(tables, filters={"modules": ["bible"]})
    found = detect_import(data, file_name="download (2).bin")
    assert found.format == "xml" and found.source_app == "goalport"
    back = {name: found.tables[name] for name in APP_TABLE_NAMES}
    assert render(back, filters={"modules": ["bible"]}) == data  # export -> import -> export
    with pytest.raises(ImportFormatError, match="refused: the document declares a DTD"):
        detect_import(XXE.replace(b"urn:goalport:export:1", b"urn:goalport:export:1 "))


def test_a_user_id_with_tabs_and_line_breaks_keeps_them():
    from assets.formats.xml import read_xml_stamp

    user_id = "odd\tid\nwith\r\nbreaks & <marks>"
    data = FORMATS["xml"].render(as_tables({}), user_id=user_id, exported_at=AT)
    XSD.validate(data.decode())
    assert read_xml_stamp(data) == ("2024-05-06T07:08:09.123Z", user_id)
