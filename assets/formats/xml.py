"""The XML export: one document per user, described by the published XML Schema
`assets/formats/schemas/export-v1.xsd` (made from the app's tables by `export_xsd_text`).

    <export xmlns="urn:goalport:export:1" format="goalport.export" formatVersion="1"
            userId="..." exportedAt="2024-05-06T07:08:09.123Z">
      <filters>{"modules": ["fitness"]}</filters>     (only for a selective export)
      <User><row><id>...</id><email>...</email>...</row></User>
      <Module>...</Module> ... one element per app table, in schema order
    </export>

A row holds one element per column, in schema order; a null value is an absent element,
an empty text an empty one. Values are spelled as in every goalport format
(`assets/formats/common.py`), which are also XML Schema's (`xs:dateTime`, `xs:date`,
`xs:decimal`, `xs:boolean`). Text keeps every character: a carriage return is written as
`&#13;` (XML readers turn a raw one into a line feed), and a text with a character XML 1.0
cannot hold (most control characters) is written in base64 with `encoding="base64"`.

Reading is libxml2's (lxml) with a hardened parser: no entity is ever substituted, no DTD
loaded, no network used, and the default limits on depth and text size kept (no "huge
tree"). A document that has a DTD at all (so any entity declaration or external reference)
is then refused: an XXE or entity-expansion ("billion laughs") file gets a clear error,
never a network or file read. (defusedxml did the same before, with a pure-Python parser
about six times slower than reading the JSON export.)
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from lxml import etree
from lxml.etree import _Element as Element

from assets.formats.common import (
    FORMAT_NAME,
    FORMAT_VERSION,
    LEGACY_USER_SCHEMA,
    TABLE_NAMES,
    ExportStamp,
    as_export_text,
    column_from_values,
    export_renderer,
    filters_json,
    sort_by_id,
    upgrade_legacy_user,
)
from resources.schema import APP_ARROW_SCHEMAS

XML_NAMESPACE = "urn:goalport:export:1"
EXPORT_XSD_PATH = Path(__file__).parent / "schemas" / "export-v1.xsd"
WHERE = "export.xml"

_NS = "{" + XML_NAMESPACE + "}"
# Characters XML 1.0 cannot hold at all, even as a character reference.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;", '"': "&quot;"}
_TO_ESCAPE = re.compile('[&<>\r"]')


# An attribute's tabs and line feeds would be read back as spaces: referenced too.
_ATTRIBUTE_ESCAPES = {**_ESCAPES, "\n": "&#10;", "\t": "&#9;"}
_TO_ESCAPE_IN_ATTRIBUTE = re.compile('[&<>\r\n\t"]')


def _escape(text: str) -> str:
    return _TO_ESCAPE.sub(lambda m: _ESCAPES[m.group()], text)


def _escape_attribute(text: str) -> str:
    return _TO_ESCAPE_IN_ATTRIBUTE.sub(lambda m: _ATTRIBUTE_ESCAPES[m.group()], text)


# ---------------------------------------------------------------- writing


def xml_document(prepared: dict[str, pa.Table], stamp: ExportStamp) -> bytes:
    """The user's export as one UTF-8 XML document, from tables already prepared
    (`prepare_export_tables`; the GDPR bundle writes its copy from its own)."""
    attributes = {
        "format": FORMAT_NAME,
        "formatVersion": str(FORMAT_VERSION),
        "userId": stamp.user_id,
        "exportedAt": stamp.header()["exportedAt"],
    }
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<export xmlns="', XML_NAMESPACE, '"']
    for key, value in attributes.items():
        _check_xml_text(value, key)
        parts.append(f' {key}="{_escape_attribute(value)}"')
    parts.append(">\n")
    if stamp.filters:
        parts.append(f"  <filters>{_escape(filters_json(stamp.filters).decode())}</filters>\n")
    for name in TABLE_NAMES:
        table = prepared[name]
        if not table.num_rows:
            parts.append(f"  <{name}/>\n")
            continue
        parts.append(f"  <{name}>\n")
        columns = [
            (field.name, _value_texts(table.column(field.name), field)) for field in table.schema
        ]
        for i in range(table.num_rows):
            parts.append("    <row>")
            for column, texts in columns:
                text = texts[i]
                if text is None:
                    continue
                if _NOT_XML.search(text):
                    encoded = base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()
                    parts.append(f'<{column} encoding="base64">{encoded}</{column}>')
                else:
                    parts.append(f"<{column}>{_escape(text)}</{column}>")
            parts.append("</row>\n")
        parts.append(f"  </{name}>\n")
    parts.append("</export>\n")
    return "".join(parts).encode("utf-8")


render_xml = export_renderer(xml_document)


def _value_texts(column: pa.ChunkedArray, field: pa.Field) -> list[str | None]:
    if pa.types.is_boolean(field.type):
        return [None if v is None else ("true" if v else "false") for v in column.to_pylist()]
    if pa.types.is_integer(field.type):
        return [None if v is None else str(v) for v in column.to_pylist()]
    return as_export_text(column).to_pylist()


def _check_xml_text(value: str, what: str) -> None:
    if _NOT_XML.search(value):
        raise ValueError(f"{WHERE}: {what} {value!r} holds a character XML cannot carry")


# ---------------------------------------------------------------- reading


def read_xml_export(data: bytes) -> dict[str, pa.Table]:
    """The tables of a goalport XML export document."""
    root = _parse(data)
    if root.tag != _NS + "export":
        raise ValueError(f"{WHERE}: the root element is {root.tag!r}, expected <export> in "
                         f"namespace {XML_NAMESPACE}")  # fmt: skip
    if root.get("format") != FORMAT_NAME:
        raise ValueError(f"{WHERE}: 'format' is {root.get('format')!r}, expected {FORMAT_NAME!r}")
    if root.get("formatVersion") != str(FORMAT_VERSION):
        raise ValueError(
            f"{WHERE}: formatVersion {root.get('formatVersion')!r} is not supported "
            f"(this goalport reads version {FORMAT_VERSION})"
        )
    elements: dict[str, Element] = {}
    for child in root:
        name = _local(child.tag, "element")
        if name == "filters":
            continue
        if name not in APP_ARROW_SCHEMAS:
            raise ValueError(f"{WHERE}: unknown element <{name}> (not an app table)")
        if name in elements:
            raise ValueError(f"{WHERE}: <{name}> appears twice")
        elements[name] = child
    tables = {}
    for name in TABLE_NAMES:
        if name not in elements:
            raise ValueError(f"{WHERE}: the document has no <{name}>")
        tables[name] = _read_table(elements[name], name)
    return tables


def read_xml_stamp(data: bytes) -> tuple[str | None, str | None]:
    """(exportedAt, userId) as the document's root states them."""
    root = _parse(data)
    return root.get("exportedAt"), root.get("userId")


def read_xml_filters(data: bytes) -> dict | None:
    """The filters a selective XML export was made with (None: everything)."""
    element = _parse(data).find(_NS + "filters")
    if element is None or not element.text:
        return None
    try:
        return orjson.loads(element.text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{WHERE}: <filters> is not JSON: {exc}") from exc


def _hardened_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


_REFUSED_DTD = (
    f"{WHERE}: refused: the document declares a DTD, entities or external references "
    "(DOCTYPE); goalport exports never do, and such a file could read local files or "
    "expand without end"
)


class _DoctypeSeen:
    """A parser target that only notes whether a DOCTYPE was declared."""

    seen = False

    def doctype(self, *_args: object) -> None:
        self.seen = True

    def start(self, *_args: object) -> None: ...
    def end(self, *_args: object) -> None: ...
    def data(self, *_args: object) -> None: ...
    def close(self) -> None: ...


def _declares_doctype(data: bytes) -> bool:
    """Whether a (possibly broken) document declares a DOCTYPE: a hostile file is named
    as such even when it is not well-formed besides."""
    target = _DoctypeSeen()
    parser = etree.XMLParser(
        target=target, recover=True, resolve_entities=False, load_dtd=False, no_network=True
    )
    try:
        etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        pass
    return target.seen


def _parse(data: bytes) -> Element:
    try:
        root = etree.fromstring(data, _hardened_parser())
    except etree.XMLSyntaxError as exc:
        if _declares_doctype(data):
            raise ValueError(_REFUSED_DTD) from exc
        raise ValueError(f"{WHERE}: not well-formed XML: {exc}") from exc
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise ValueError(_REFUSED_DTD)
    return root


def _local(tag: str, what: str) -> str:
    if not tag.startswith(_NS):
        raise ValueError(f"{WHERE}: {what} {tag!r} is not in namespace {XML_NAMESPACE}")
    return tag[len(_NS) :]


def _read_table(element: Element, name: str) -> pa.Table:
    """One table's rows, gathered column by column (a null is an absent element). Cells
    with attributes or children are rare (base64 text, or an error): only a table that
    has some reads each cell through `_cell_text`."""
    count = len(element)
    names = set(APP_ARROW_SCHEMAS[name].names)
    if name == "User":
        names |= set(LEGACY_USER_SCHEMA.names)
    columns: dict[str, list[str | None]] = {_NS + n: [None] * count for n in names}
    row_tag = _NS + "row"
    plain = not element.xpath("boolean(*/*/* | */*/@*)")
    for index, row in enumerate(element):
        if row.tag != row_tag:
            raise ValueError(f"{WHERE}: <{name}> holds <{_local(row.tag, 'element')}>, not <row>")
        for cell in row:
            column = columns.get(cell.tag)
            if column is None:
                _unknown_fields(row, name, index, names)
                continue  # not reached: _unknown_fields raises
            if column[index] is not None:
                raise ValueError(
                    f"{WHERE}: <{name}> row {index + 1}: <{_local(cell.tag, 'element')}> "
                    "appears twice"
                )
            if plain:
                column[index] = cell.text or ""
            else:
                column[index] = _cell_text(cell, name, index, _local(cell.tag, "element"))
    by_name = {tag[len(_NS) :]: values for tag, values in columns.items()}
    schema = APP_ARROW_SCHEMAS[name]
    if (
        name == "User"
        and any(v is not None for v in by_name["name"])
        and all(v is None for v in by_name["firstName"])
    ):
        schema = LEGACY_USER_SCHEMA  # an export older than first and last name
    extra = [by_name[n] for n in sorted(names - set(schema.names))]
    for index in range(count) if any(v is not None for e in extra for v in e) else ():
        unknown = sorted(n for n in names - set(schema.names) if by_name[n][index] is not None)
        if unknown:
            raise ValueError(
                f"{WHERE}: <{name}> row {index + 1}: unknown field(s) {', '.join(unknown)}"
            )

    def locate(i: int) -> str:
        return f"{WHERE}: <{name}> row {i + 1}"

    arrays = [column_from_values(_typed(by_name[f.name], f, locate), f, locate) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    return sort_by_id(upgrade_legacy_user(table, name), f"<{name}>")


def _unknown_fields(row: Element, name: str, index: int, known: set[str]) -> None:
    unknown = sorted({_local(cell.tag, "element") for cell in row} - known)
    raise ValueError(f"{WHERE}: <{name}> row {index + 1}: unknown field(s) {', '.join(unknown)}")


def _cell_text(cell: Element, table: str, index: int, column: str) -> str:
    if len(cell):
        raise ValueError(f"{WHERE}: <{table}> row {index + 1}, field {column!r}: holds elements")
    text = cell.text or ""
    encoding = cell.get("encoding")
    if encoding is None:
        return text
    if encoding != "base64":
        raise ValueError(
            f"{WHERE}: <{table}> row {index + 1}, field {column!r}: unknown encoding {encoding!r}"
        )
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "surrogatepass")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{WHERE}: <{table}> row {index + 1}, field {column!r}: not valid base64 text"
        ) from exc


_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}
_TRUE = pa.array(["true", "1"])
_WHOLE_NUMBER = r"^[+-]?[0-9]+$"


def _typed(
    texts: list[str | None], field: pa.Field, locate: Callable[[int], str]
) -> list | pa.Array:
    """XML texts as the values `column_from_values` expects (XML Schema's lexical forms):
    text as it is; any other type with its whitespace collapsed, booleans and whole
    numbers checked."""
    t = field.type
    if pa.types.is_string(t):
        return texts
    array = pc.utf8_trim(pa.array(texts, pa.string()), " \t\n\r")
    if pa.types.is_boolean(t):
        _first_invalid(array, pc.is_in(array, pa.array(list(_BOOLEANS))), field, locate,
                       "is not true or false")  # fmt: skip
        return pc.if_else(pc.is_valid(array), pc.is_in(array, _TRUE), None)
    if pa.types.is_integer(t):
        valid = pc.match_substring_regex(array, _WHOLE_NUMBER)
        _first_invalid(array, valid, field, locate, "is not a whole number")
        return pc.replace_substring_regex(array, r"^\+", "")
    return array


def _first_invalid(
    array: pa.Array, valid: pa.Array, field: pa.Field, locate: Callable[[int], str], what: str
) -> None:
    bad = pc.and_(pc.is_valid(array), pc.invert(pc.fill_null(valid, False)))
    index = pc.index(bad, True).as_py()
    if index >= 0:
        raise ValueError(f"{locate(index)}, field {field.name!r}: {array[index].as_py()!r} {what}")


# ---------------------------------------------------------------- the published schema


def export_xsd_text() -> str:
    """The XML Schema of the export document, made from the app's tables (the published
    `schemas/export-v1.xsd` is this text; a test keeps them equal)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"',
        f'           targetNamespace="{XML_NAMESPACE}" xmlns="{XML_NAMESPACE}"',
        '           elementFormDefault="qualified">',
        "  <xs:annotation><xs:documentation>",
        f"    A goalport export ({FORMAT_NAME} version {FORMAT_VERSION}): one user's rows of every",
        "    app table. A null value is an absent element; all times are UTC.",
        "  </xs:documentation></xs:annotation>",
        '  <xs:element name="export">',
        "    <xs:complexType>",
        "      <xs:sequence>",
        '        <xs:element name="filters" type="xs:string" minOccurs="0"/>',
        *(f'        <xs:element name="{n}" type="{n}Table"/>' for n in TABLE_NAMES),
        "      </xs:sequence>",
        f'      <xs:attribute name="format" type="xs:string" use="required" fixed="{FORMAT_NAME}"/>',
        '      <xs:attribute name="formatVersion" type="xs:integer" use="required"'
        f' fixed="{FORMAT_VERSION}"/>',
        '      <xs:attribute name="userId" type="xs:string" use="required"/>',
        '      <xs:attribute name="exportedAt" type="xs:dateTime" use="required"/>',
        "    </xs:complexType>",
        "  </xs:element>",
        '  <xs:complexType name="text">',
        "    <xs:simpleContent>",
        '      <xs:extension base="xs:string">',
        '        <xs:attribute name="encoding">',
        '          <xs:simpleType><xs:restriction base="xs:string">',
        '            <xs:enumeration value="base64"/>',
        "          </xs:restriction></xs:simpleType>",
        "        </xs:attribute>",
        "      </xs:extension>",
        "    </xs:simpleContent>",
        "  </xs:complexType>",
    ]
    decimals = set()
    for name in TABLE_NAMES:
        lines += [
            f'  <xs:complexType name="{name}Table">',
            f'    <xs:sequence><xs:element name="row" type="{name}Row" minOccurs="0"'
            ' maxOccurs="unbounded"/></xs:sequence>',
            "  </xs:complexType>",
            f'  <xs:complexType name="{name}Row">',
            "    <xs:sequence>",
        ]
        for field in APP_ARROW_SCHEMAS[name]:
            optional = ' minOccurs="0"' if field.nullable else ""
            xsd_type = _xsd_type(field.type)
            if xsd_type.startswith("decimal"):
                decimals.add((field.type.precision, field.type.scale))
            lines.append(f'      <xs:element name="{field.name}" type="{xsd_type}"{optional}/>')
        lines += ["    </xs:sequence>", "  </xs:complexType>"]
    for precision, scale in sorted(decimals):
        lines += [
            f'  <xs:simpleType name="decimal{precision}_{scale}">',
            '    <xs:restriction base="xs:decimal">',
            f'      <xs:totalDigits value="{precision}"/><xs:fractionDigits value="{scale}"/>',
            "    </xs:restriction>",
            "  </xs:simpleType>",
        ]
    lines.append("</xs:schema>")
    return "\n".join(lines) + "\n"


def _xsd_type(t: pa.DataType) -> str:
    if pa.types.is_string(t):
        return "text"
    if pa.types.is_timestamp(t):
        return "xs:dateTime"
    if pa.types.is_date(t):
        return "xs:date"
    if pa.types.is_boolean(t):
        return "xs:boolean"
    if pa.types.is_int32(t):
        return "xs:int"
    if pa.types.is_integer(t):
        return "xs:long"
    if pa.types.is_decimal(t):
        return f"decimal{t.precision}_{t.scale}"
    raise TypeError(f"no XML Schema type for {t}")
