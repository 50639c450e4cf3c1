"""What an uploaded file is, decided from its bytes, and its tables read within safe limits.

An import may come from anywhere (a browser upload, the storage inbox, a backup restore), so
nothing here trusts the file name: the content says what the file is. goalport's own
formats are recognised by their markers (the JSON document's `"format": "goalport.export"`,
the CSV zip's `datapackage.json`, the XLSX custom properties, the Parquet file metadata,
the GDPR bundle's `manifest.json` + `data/`), an age-encrypted file by its header (binary
`age-encryption.org/v1` or armored `-----BEGIN AGE ENCRYPTED FILE-----`), and anything else
goes to the parsers of other apps (`assets.imports.parsers.detect.parse_foreign_export`).

Before a reader sees a byte, the file is checked against `ImportLimits`: its size, the
members of a zip (count, absolute or `..` paths, declared and actual uncompressed sizes,
compression ratio: a zip bomb is refused before it is inflated), UTF-8 validity of text
parts, DOCTYPE/ENTITY declarations in any XML part of a workbook (entity expansion is
refused before openpyxl parses anything), and the number of rows. Each problem raises
`ImportFormatError` naming the file (and member, row or field) and what is wrong.

A UTF-8 byte-order mark and CRLF line endings are what Excel and Windows tools write:
they are accepted and read exactly (the BOM is dropped, CRLF ends a line), never an error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import posixpath
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from assets.formats.registry import reader_of
from assets.imports.parsers.base import (
    ZIP_LIMITS,
    ImportFormatError,
    MappingEntry,
    ZipLimits,
    is_zip,
    safe_zip_members,
)
from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES, as_utc

__all__ = [
    "DetectedImport",
    "EncryptedImportError",
    "ImportFormatError",
    "ImportLimits",
    "detect_import",
]

GOALPORT = "goalport"
FORMAT_MARKER = b'"goalport.export"'
UTF8_BOM = b"\xef\xbb\xbf"
_XML_DECLARATIONS = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# Members of a workbook whose XML is parsed by a reader; all are checked for entities.
_XML_SUFFIXES = (".xml", ".rels", ".vml")


@dataclass(frozen=True)
class ImportLimits:
    """What one import may be before it is refused (defaults fit the largest real users)."""

    max_file_bytes: int = 256 * 1024 * 1024
    max_rows: int = 2_000_000
    zip: ZipLimits = ZIP_LIMITS
    # scrypt log2(N) a passphrase file may ask for (18 is what `age -p` writes)
    max_work_factor: int = 22
    # a GDPR bundle or an encrypted file may wrap one export, no deeper
    max_nesting: int = 2


DEFAULT_LIMITS = ImportLimits()


class EncryptedImportError(ImportFormatError):
    """The file is age-encrypted and nothing given opens it; `needs` says what would."""

    def __init__(self, file: str, reason: str, needs: str):
        super().__init__(file, None, None, reason)
        self.needs = needs  # "passphrase" or "identity"


@dataclass
class DetectedImport:
    """One file's tables with what it is and where it came from.

    For goalport's own formats the tables keep the file's ids and user ids; for other apps
    (`source_app` is "todoist", "trello", ...) ids are external keys ("todoist:task:123")
    and `userId` is empty: staging maps them onto the target user's rows.
    """

    file_name: str
    format: str  # json, csv, xlsx, parquet, gdpr, or the other app's format name
    source_app: str
    tables: dict[str, pa.Table]
    sha256: str
    size: int
    encrypted: bool = False
    exported_at: dt.datetime | None = None
    source_user_id: str | None = None
    filters: dict | None = None
    extras: dict[str, dict] = field(default_factory=dict)
    report: list[MappingEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_goalport(self) -> bool:
        return self.source_app == GOALPORT

    def row_counts(self) -> dict[str, int]:
        return {name: t.num_rows for name, t in self.tables.items()}

    @property
    def total_rows(self) -> int:
        return sum(t.num_rows for t in self.tables.values())


Identities = Sequence[str] | Callable[[], Sequence[str]]


def detect_import(
    data: bytes,
    *,
    file_name: str = "upload",
    passphrase: str | None = None,
    identities: Identities = (),
    limits: ImportLimits = DEFAULT_LIMITS,
    timezone: str | None = None,
    now: dt.datetime | None = None,
) -> DetectedImport:
    """Recognise `data` from its content and read it into app-shaped Arrow tables.

    `passphrase` and `identities` (age `AGE-SECRET-KEY-1...`, or a callable giving them,
    asked only when the file is encrypted to a key) open age-encrypted files. `timezone`
    (the user's) and `now` are for other apps' exports that write local times or leave
    times out.
    """
    name = posixpath.basename(file_name.replace("\\", "/")) or "upload"
    _check_size(data, name, limits)
    options = _Options(passphrase, identities, limits, timezone, now)
    detected = _detect(data, name, options, depth=0)
    detected.sha256 = hashlib.sha256(data).hexdigest()
    detected.size = len(data)
    _check_rows(detected, limits)
    return detected


def _check_size(data: bytes, name: str, limits: ImportLimits) -> None:
    if len(data) > limits.max_file_bytes:
        raise ImportFormatError(
            name,
            None,
            None,
            f"the file is {len(data):,} bytes; an import takes at most {limits.max_file_bytes:,}",
        )
    if not data.strip(b" \t\r\n\x00" + UTF8_BOM):
        raise ImportFormatError(name, None, None, "the file is empty")


def _check_rows(detected: DetectedImport, limits: ImportLimits) -> None:
    if detected.total_rows > limits.max_rows:
        raise ImportFormatError(
            detected.file_name,
            None,
            None,
            f"the file holds {detected.total_rows:,} rows; an import takes at most "
            f"{limits.max_rows:,}",
        )


@dataclass(frozen=True)
class _Options:
    passphrase: str | None
    identities: Identities
    limits: ImportLimits
    timezone: str | None
    now: dt.datetime | None

    def without_keys(self) -> _Options:
        return _Options(None, (), self.limits, self.timezone, self.now)


def _detect(data: bytes, name: str, options: _Options, depth: int) -> DetectedImport:
    limits = options.limits
    if depth > limits.max_nesting:
        raise ImportFormatError(name, None, None, "files are nested too deeply")
    from resources import age

    if age.is_age_file(data[:64]):
        plaintext = _decrypt(data, name, options.passphrase, options.identities, limits)
        _check_size(plaintext, name, limits)
        inner = _detect(plaintext, name, options.without_keys(), depth + 1)
        inner.encrypted = True
        return inner
    if is_zip(data):
        return _detect_zip(data, name, options, depth)
    head = data[:65536]
    if head.lstrip(UTF8_BOM + b" \t\r\n").startswith(b"{") and _looks_like_goalport_json(data):
        return _read_goalport_json(data, name)
    if head.lstrip(UTF8_BOM + b" \t\r\n").startswith(b"<") and _XML_MARKER in head:
        return _read_goalport_xml(data, name)
    return _read_foreign(data, name, options)


def _read_goalport_xml(data: bytes, name: str) -> DetectedImport:
    from assets.formats.xml import read_xml_filters, read_xml_stamp

    data = _strip_bom(data)
    tables = _read_with(reader_of("xml"), data, name)
    exported_at, user_id = read_xml_stamp(data)
    return _goalport_export(name, "xml", data, tables, exported_at, user_id, read_xml_filters(data))


# ---------------------------------------------------------------- encryption


def _decrypt(
    data: bytes,
    name: str,
    passphrase: str | None,
    identities: Identities,
    limits: ImportLimits,
) -> bytes:
    from resources import age

    if passphrase is None:
        keys = identities() if callable(identities) else identities
        if not keys:
            raise EncryptedImportError(
                name,
                "the file is encrypted (age); give its passphrase, or import it for the user "
                "whose backup key it was encrypted to",
                needs="passphrase",
            )
    else:
        keys = ()
    try:
        return age.decrypt(
            data,
            identities=list(keys),
            passphrase=passphrase,
            max_work_factor=limits.max_work_factor,
        )
    except age.AgeWrongPassphraseError as exc:
        raise EncryptedImportError(name, f"cannot decrypt: {exc}", needs="passphrase") from exc
    except age.AgeNoMatchError as exc:
        needs = "identity" if passphrase is None else "passphrase"
        raise EncryptedImportError(name, f"cannot decrypt: {exc}", needs=needs) from exc
    except age.AgeError as exc:
        raise ImportFormatError(name, None, None, f"cannot decrypt: {exc}") from exc


# ---------------------------------------------------------------- JSON


def _looks_like_goalport_json(data: bytes) -> bool:
    if FORMAT_MARKER in data[:65536]:
        return True
    # keys in another order (a re-saved file): only then parse the whole document
    return _parses_as_export(data)


def _is_export_document(data: bytes) -> bool:
    """A goalport JSON export itself (not a data package or manifest that names the format)."""
    return FORMAT_MARKER in data and _parses_as_export(data)


def _parses_as_export(data: bytes) -> bool:
    """Whether `data` is a JSON object whose "format" is goalport's export format."""
    import orjson

    try:
        document = orjson.loads(_strip_bom(data))
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and document.get("format") == "goalport.export"


def _strip_bom(data: bytes) -> bytes:
    return data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data


def check_utf8(data: bytes, name: str) -> None:
    """Raise ImportFormatError naming the line if `data` is not valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFormatError(
            name,
            f"line {line}",
            None,
            f"is not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r}); "
            "save the file as UTF-8",
        ) from None


_XML_MARKER = b"urn:goalport:export:"
_HEADER_TEXT = re.compile(rb'"(exportedAt|userId)"\s*:\s*"([^"\\]*)"')


def _read_goalport_json(data: bytes, name: str) -> DetectedImport:

    data = _strip_bom(data)
    check_utf8(data, name)
    tables = _read_with(reader_of("json"), data, name)
    header = {k.decode(): v.decode() for k, v in _HEADER_TEXT.findall(data[:4096])}
    if "exportedAt" not in header or "userId" not in header:
        import orjson

        document = orjson.loads(data)
        header = {k: document.get(k) for k in ("exportedAt", "userId")}
    return _goalport_export(
        name, "json", data, tables, header.get("exportedAt"), header.get("userId")
    )


def _read_with(reader: Callable[[bytes], dict[str, pa.Table]], data: bytes, name: str):
    try:
        return reader(data)
    except ImportFormatError:
        raise
    except ValueError as exc:
        raise ImportFormatError(name, None, None, str(exc)) from exc
    except (zipfile.BadZipFile, pa.ArrowException, KeyError, OSError) as exc:
        raise ImportFormatError(name, None, None, f"cannot be read: {exc}") from exc


def _goalport_export(
    name: str,
    fmt: str,
    data: bytes,
    tables: dict[str, pa.Table],
    exported_at: str | None,
    user_id: str | None,
    filters: dict | None = None,
) -> DetectedImport:
    """One of goalport's own exports, read, with what its stamp says (`ExportStamp`: the
    time as export text, the user, the filters)."""
    return DetectedImport(
        file_name=name,
        format=fmt,
        source_app=GOALPORT,
        tables=tables,
        sha256="",
        size=len(data),
        exported_at=_parse_time(exported_at),
        source_user_id=user_id,
        filters=filters,
    )


def _refuse_rows_over(limits: ImportLimits, rows: int, name: str, allowance: int = 0) -> None:
    """Refuse a file of more rows than an import takes, counted before its tables are read
    (`allowance`: rows of the count that hold no data)."""
    if rows > limits.max_rows + allowance:
        raise ImportFormatError(
            name, None, None, f"holds {rows:,} rows; an import takes at most {limits.max_rows:,}"
        )


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return as_utc(value)


# ---------------------------------------------------------------- zips


def _detect_zip(data: bytes, name: str, options: _Options, depth: int) -> DetectedImport:
    limits = options.limits
    # Every member is checked (paths, declared and actual sizes, ratio) and read once,
    # bounded, before any reader or parser opens the archive.
    members = safe_zip_members(data, file_name=name, limits=limits.zip)
    names = set(members)
    if "xl/workbook.xml" in names:
        return _read_xlsx(data, name, members, options)
    if "datapackage.json" in names and FORMAT_MARKER in members["datapackage.json"]:
        return _read_csv_zip(data, name, members, limits)
    table_files = {f"{t}.parquet" for t in APP_TABLE_NAMES}
    if table_files <= names:
        return _read_parquet_zip(data, name, members, limits)
    if "manifest.json" in names and any(n.startswith("data/") for n in names):
        return _read_bundle(name, members, options, depth)
    return _read_foreign(data, name, options)


def _read_csv_zip(
    data: bytes, name: str, members: dict[str, bytes], limits: ImportLimits
) -> DetectedImport:
    import orjson

    for member, content in members.items():
        if member.endswith(".csv"):
            check_utf8(content, f"{name}: {member}")
            if content.count(b"\n") > limits.max_rows + 1:
                raise ImportFormatError(
                    name, f"member '{member}'", None, f"has more than {limits.max_rows:,} rows"
                )
    try:
        package = orjson.loads(_strip_bom(members["datapackage.json"]))
        meta = package.get("goalport") or {}
    except (orjson.JSONDecodeError, AttributeError) as exc:
        raise ImportFormatError(name, "member 'datapackage.json'", None, f"{exc}") from exc
    tables = _read_with(reader_of("csv"), data, name)
    return _goalport_export(
        name, "csv", data, tables, meta.get("exportedAt"), meta.get("userId"), meta.get("filters")
    )


def _read_parquet_zip(
    data: bytes, name: str, members: dict[str, bytes], limits: ImportLimits
) -> DetectedImport:
    import pyarrow.parquet as pq

    rows = 0
    inflated = 0
    metadata: dict[bytes, bytes] = {}
    for member, content in members.items():
        if not member.endswith(".parquet"):
            continue
        try:
            file_meta = pq.ParquetFile(pa.BufferReader(content)).metadata
        except (pa.ArrowException, OSError) as exc:
            raise ImportFormatError(
                name, f"member '{member}'", None, f"not Parquet: {exc}"
            ) from exc
        rows += file_meta.num_rows
        inflated += sum(
            file_meta.row_group(i).total_byte_size for i in range(file_meta.num_row_groups)
        )
        metadata = metadata or dict(file_meta.metadata or {})
    _refuse_rows_over(limits, rows, name)
    if inflated > limits.zip.max_total_bytes:
        raise ImportFormatError(
            name,
            None,
            None,
            f"its Parquet data inflate to {inflated:,} bytes, more than the "
            f"{limits.zip.max_total_bytes:,} an import accepts",
        )
    if metadata.get(b"goalport.format") != b"goalport.export":
        raise ImportFormatError(name, None, None, "Parquet files without goalport's metadata")
    tables = _read_with(reader_of("parquet"), data, name)
    filters = None
    if metadata.get(b"goalport.filters"):
        import orjson

        filters = orjson.loads(metadata[b"goalport.filters"])
    return _goalport_export(
        name,
        "parquet",
        data,
        tables,
        metadata.get(b"goalport.exportedAt", b"").decode(),
        metadata.get(b"goalport.userId", b"").decode() or None,
        filters,
    )


def _read_xlsx(
    data: bytes, name: str, members: dict[str, bytes], options: _Options
) -> DetectedImport:

    limits = options.limits
    for member, content in members.items():
        if member.lower().endswith(_XML_SUFFIXES) and _declares_entities(content):
            raise ImportFormatError(
                name,
                f"member '{member}'",
                None,
                "declares a DOCTYPE or ENTITY; workbooks never need one and entity expansion "
                "can exhaust memory, so the file is refused",
            )
    properties = _custom_properties(members.get("docProps/custom.xml"), name)
    if properties.get("goalport.format") != "goalport.export":
        return _read_foreign(data, name, options)
    rows = sum(c.count(b"<row ") for m, c in members.items() if m.startswith("xl/worksheets/"))
    _refuse_rows_over(limits, rows, name, allowance=len(APP_TABLE_NAMES) * 2 + 100)
    tables = _read_with(reader_of("xlsx"), data, name)
    return _goalport_export(
        name,
        "xlsx",
        data,
        tables,
        properties.get("goalport.exportedAt"),
        properties.get("goalport.userId"),
    )


def _declares_entities(content: bytes) -> bool:
    if _XML_DECLARATIONS.search(content):
        return True
    if (
        content[:2] in (b"\xff\xfe", b"\xfe\xff")
        or content[1:2] == b"\x00"
        or content[:1] == b"\x00"
    ):
        for encoding in ("utf-16", "utf-16-le", "utf-16-be"):
            try:
                text = content.decode(encoding)
            except UnicodeDecodeError:
                continue
            if re.search(r"<!\s*(DOCTYPE|ENTITY)", text, re.IGNORECASE):
                return True
    return False


def _custom_properties(xml: bytes | None, name: str) -> dict[str, str]:
    """docProps/custom.xml as {name: text value} (checked free of entities beforehand)."""
    if not xml:
        return {}
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ImportFormatError(name, "member 'docProps/custom.xml'", None, str(exc)) from exc
    properties = {}
    for prop in root:
        key = prop.get("name")
        if key and len(prop):
            properties[key] = prop[0].text or ""
    return properties


def _read_bundle(
    name: str, members: dict[str, bytes], options: _Options, depth: int
) -> DetectedImport:
    """A GDPR bundle or a backup: `manifest.json` (SHA-256 of every file) beside `data/`.

    The machine-readable export inside `data/` is imported: a goalport JSON document
    (`data/export.json`, `data/goalport-export.json` or any `data/*.json` that is one), else a nested export file (CSV or
    Parquet zip, XLSX), else loose `data/<Table>.csv` with a datapackage.json or loose
    `data/<Table>.parquet`, which are read as the zip they would form.
    """
    kind = _verify_manifest(name, members)
    data_files = {m[len("data/") :]: c for m, c in members.items() if m.startswith("data/")}

    def inner(content: bytes, member: str) -> DetectedImport:
        found = _detect(content, f"{name}: data/{member}", options, depth + 1)
        if not found.is_goalport:
            raise ImportFormatError(name, f"member 'data/{member}'", None, "is not goalport's")
        found.format = f"{kind}/{found.format}"
        found.file_name = name
        return found

    ordered = sorted(data_files, key=lambda m: (m != "export.json", m))
    for member in ordered:
        content = data_files[member]
        if member.endswith(".json") and "/" not in member and _is_export_document(content):
            return inner(content, member)
    for member in ordered:
        content = data_files[member]
        if member.endswith((".zip", ".xlsx")) and is_zip(content):
            return inner(content, member)
    for folder in sorted({posixpath.dirname(m) for m in data_files}, key=len):
        prefix = f"{folder}/" if folder else ""
        local = {m[len(prefix) :]: c for m, c in data_files.items() if m.startswith(prefix)}
        csv_names = {f"{t}.csv" for t in APP_TABLE_NAMES}
        parquet_names = {f"{t}.parquet" for t in APP_TABLE_NAMES}
        if "datapackage.json" in local and csv_names <= set(local):
            keep = csv_names | {"datapackage.json"}
            return inner(_zip_of({m: local[m] for m in keep}), f"{prefix}datapackage.json")
        if parquet_names <= set(local):
            return inner(_zip_of({m: local[m] for m in parquet_names}), f"{prefix}*.parquet")
    raise ImportFormatError(
        name, None, None, "a bundle without a goalport export in data/ (nothing to import)"
    )


def _verify_manifest(name: str, members: dict[str, bytes]) -> str:
    """Check every SHA-256 the manifest lists (as {"files": [{"path", "sha256"}]} or as
    {"files": {path: sha256}}); a file that does not match means the bundle was altered.
    Returns what the bundle is: "backup" (a goalport backup) or "gdpr"."""
    import orjson

    try:
        manifest = orjson.loads(_strip_bom(members["manifest.json"]))
    except orjson.JSONDecodeError as exc:
        raise ImportFormatError(name, "member 'manifest.json'", None, f"not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ImportFormatError(name, "member 'manifest.json'", None, "is not a JSON object")
    kind = "backup" if manifest.get("format") == "goalport.backup" else "gdpr"
    listed = manifest.get("files")
    if isinstance(listed, dict):
        pairs = list(listed.items())
    elif isinstance(listed, list):
        pairs = [
            (entry.get("path") or entry.get("name"), entry.get("sha256"))
            for entry in listed
            if isinstance(entry, dict)
        ]
    else:
        pairs = []
    for path, digest in pairs:
        if not isinstance(path, str) or not isinstance(digest, str):
            continue
        content = members.get(path)
        if content is None:
            raise ImportFormatError(
                name, f"member '{path}'", None, "is in the manifest but missing"
            )
        if hashlib.sha256(content).hexdigest() != digest.lower():
            raise ImportFormatError(
                name, f"member '{path}'", None, "does not match its SHA-256 in manifest.json"
            )
    return kind


def _zip_of(files: dict[str, bytes]) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as archive:
        for member, content in sorted(files.items()):
            archive.writestr(member, content)
    return sink.getvalue()


# ---------------------------------------------------------------- other apps


def _read_foreign(data: bytes, name: str, options: _Options) -> DetectedImport:
    try:
        from assets.imports.parsers.detect import parse_foreign_export
    except ImportError:  # the other apps' parsers are optional in a stripped install
        raise ImportFormatError(
            name, None, None, "not a goalport export, and no importer for other apps is installed"
        ) from None
    parsed = parse_foreign_export(data, file_name=name, now=options.now, timezone=options.timezone)
    tables = {n: parsed.tables.get(n, APP_ARROW_SCHEMAS[n].empty_table()) for n in APP_TABLE_NAMES}
    return DetectedImport(
        file_name=name,
        format=getattr(parsed, "format", None) or parsed.source_app,
        source_app=parsed.source_app,
        tables=tables,
        sha256="",
        size=len(data),
        extras=dict(parsed.extras),
        report=list(parsed.report),
        warnings=list(parsed.warnings),
    )
