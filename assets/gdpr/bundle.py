"""The GDPR bundle writer: everything held about one user, as one zip a person can read and
a program can check without goalport (Art. 15 access, Art. 20 portability).

`render_gdpr_bundle` is pure (tables and rows in, bytes out). It writes the files of the
layout in `assets.gdpr.layout` — the app data as JSON and as two CSV flavours, the records
of processing (`assets.gdpr.processing`), the README page (`assets.gdpr.readme`) — and the
manifest that lists every file's size and SHA-256 and the bundle's completeness (rows in
the bundle against a count in the live database). `assets.gdpr.verify` is its checker.

The bulk path renders thousands of bundles per run, so the costly parts are made once and
reused: row texts per chunk of users (`RowTexts`), the Excel CSV from the machine CSV's
bytes, empty tables' files and the Excel data package's differences once per process.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import orjson
import pyarrow as pa

from assets.formats.common import (
    TABLE_NAMES,
    ExportStamp,
    format_timestamp,
    json_default,
    prepare_export_tables,
)
from assets.formats.csv import build_datapackage, csv_bytes, csv_text_bytes, csv_text_table
from assets.formats.excel_csv import (
    EXCEL_ESCAPE_PREFIX,
    EXCEL_ESCAPE_TRIGGERS,
    UTF8_BOM,
    excel_escape,
)
from assets.formats.json import EXPORT_JSON_SCHEMA_PATH, json_document, json_object_texts
from assets.formats.xml import EXPORT_XSD_PATH, xml_document
from assets.formats.zip_archive import write_zip
from assets.gdpr.layout import (
    AUDIT_CSV,
    AUDIT_FORMAT,
    AUDIT_JSON,
    AUDIT_PACKAGE,
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    DATA_JSON,
    DATA_PACKAGE,
    DATA_XML,
    EXCEL_DIR,
    EXPORT_SCHEMA_FILE,
    EXPORT_XSD_FILE,
    MANIFEST,
    MANIFEST_DESCRIPTIONS,
    MANIFEST_SHA256,
    PROCESSING_SCHEMA_FILE,
    README,
    RECORD_TABLES,
    RECORDS_FORMAT,
    RECORDS_JSON,
    SELF_CHECK_PREFIX,
    describe_files,
)
from assets.gdpr.processing import (
    audit_datapackage,
    audit_entries,
    audit_table,
    build_processing_schema,
    jsonable_row,
)
from assets.gdpr.readme import render_readme
from assets.gdpr.texts import check_gdpr_texts


@dataclass(frozen=True)
class RowTexts:
    """One table's rows as export text, in id order: each row's JSON object, the table as
    the CSV writer takes it (timestamps as text) and, when made, its Excel flavour (else the
    Excel CSV is made from the machine CSV's bytes). The bulk path makes them once for a
    whole chunk of users, where Arrow's per-call costs are spread over many rows, and
    slices them per user."""

    json: pa.Array
    csv: pa.Table
    excel: pa.Table | None = None


def rows_as_text(table: pa.Table, *, excel: bool = False) -> RowTexts:
    machine = csv_text_table(table)
    if not excel:
        return RowTexts(json_object_texts(table), machine)
    # the machine text with the Excel escaping of the table's own text columns: what
    # csv_text_table(table, "excel") makes, without formatting the timestamps again
    escaped = [
        excel_escape(column) if pa.types.is_string(field.type) else column
        for field, column in zip(table.schema, machine.columns, strict=True)
    ]
    excel_table = pa.table(escaped, names=machine.column_names)
    return RowTexts(json_object_texts(table), machine, excel_table)


_EMPTY_ROW_TEXTS: dict[str, RowTexts] = {}


def _texts_of(table: pa.Table, name: str, given: RowTexts | None) -> RowTexts:
    """`given` if it holds exactly the table's rows, else the texts made here."""
    if (
        given is not None
        and len(given.json) == table.num_rows
        and given.csv["id"].equals(table["id"])
    ):
        return given
    if table.num_rows:
        return rows_as_text(table)
    if name not in _EMPTY_ROW_TEXTS:
        _EMPTY_ROW_TEXTS[name] = rows_as_text(table)
    return _EMPTY_ROW_TEXTS[name]


def render_gdpr_bundle(
    tables: Mapping[str, pa.Table],
    *,
    user_id: str,
    exported_at: dt.datetime,
    audit_rows: Sequence[Mapping],
    texts: Mapping | None,
    live_counts: Mapping[str, int] | None,
    records: Mapping[str, Sequence[Mapping]] | None = None,
    subject_ref: str | None = None,
    row_texts: Mapping[str, RowTexts] | None = None,
    dangling_references: Collection[tuple[str, str]] | None = None,
) -> bytes:
    """The bundle (zip bytes) of one user.

    `tables`: the user's app tables (APP_ARROW_SCHEMAS); `audit_rows`: their DataAuditLog
    rows as mappings; `texts`: Art. 15 texts (None: the defaults); `live_counts`: rows per
    table in the live database at export time (and "DataAuditLog"), for the completeness
    section; `records`: goalport's other rows about the user by table (RECORD_TABLES);
    `row_texts`: the tables' rows as export text when already made (see RowTexts);
    `dangling_references`: the foreign keys (table, column) that the user's rows leave
    dangling, when already worked out (see `build_datapackage`).
    """
    if exported_at.tzinfo is None:
        raise ValueError("exported_at must be timezone-aware (UTC)")
    texts = check_gdpr_texts(texts or {})
    prepared = prepare_export_tables(tables, user_id=user_id)
    given = row_texts or {}
    texts_of = {name: _texts_of(t, name, given.get(name)) for name, t in prepared.items()}
    stamp = format_timestamp(exported_at)
    entries = audit_entries(audit_rows)
    record_tables = (
        {name: [jsonable_row(r) for r in rows] for name, rows in records.items()}
        if records is not None
        else None
    )

    files: dict[str, bytes] = {}
    files[EXPORT_SCHEMA_FILE] = _published_export_schema()
    files[PROCESSING_SCHEMA_FILE] = _processing_schema_bytes()
    export_stamp = ExportStamp(user_id, exported_at)
    files[DATA_JSON] = json_document(
        prepared, {name: t.json for name, t in texts_of.items()}, export_stamp
    )
    files[EXPORT_XSD_FILE] = EXPORT_XSD_PATH.read_bytes()
    files[DATA_XML] = xml_document(prepared, export_stamp)
    package = build_datapackage(
        prepared, export_stamp, flavour="machine", dangling_references=dangling_references
    )
    files[DATA_PACKAGE] = _json_bytes(package)
    for name, table in prepared.items():
        files[f"data/{name}.csv"] = table_csv(table, name, texts_of[name].csv)
    files[f"{EXCEL_DIR}/datapackage.json"] = _json_bytes(excel_datapackage(package))
    for name, table in prepared.items():
        machine_csv = files[f"data/{name}.csv"]
        excel_texts = texts_of[name].excel
        files[f"{EXCEL_DIR}/{name}.csv"] = (
            csv_text_bytes(excel_texts, "excel")
            if excel_texts is not None and table.num_rows
            else excel_table_csv(table, name, machine_csv)
        )
    files[AUDIT_JSON] = _json_bytes(
        {
            "format": AUDIT_FORMAT,
            "formatVersion": 1,
            "userId": user_id,
            "subjectRef": subject_ref,
            "entries": entries,
        }
    )
    files[AUDIT_CSV] = csv_bytes(audit_table(entries))
    files[AUDIT_PACKAGE] = _json_bytes(audit_datapackage(user_id, stamp, len(entries)))
    if record_tables is not None:
        files[RECORDS_JSON] = _json_bytes(
            {
                "format": RECORDS_FORMAT,
                "formatVersion": 1,
                "userId": user_id,
                "tables": record_tables,
            }
        )

    completeness = build_completeness(prepared, entries, live_counts, record_tables, texts)
    descriptions = describe_files(files)
    readme = render_readme(
        prepared,
        user_id=user_id,
        exported_at=exported_at,
        entries=entries,
        texts=texts,
        completeness=completeness,
        descriptions={**descriptions, README: "This page.", **MANIFEST_DESCRIPTIONS},
        sizes={path: len(data) for path, data in files.items()},
        shown={name: t.csv for name, t in texts_of.items()},
    )
    files = {README: readme, **files}
    descriptions[README] = "This page: an index of the bundle, readable in any browser."

    digests = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    listed = [
        {
            "path": path,
            "size": len(data),
            "sha256": digests[path],
            "description": descriptions[path],
        }
        for path, data in files.items()
    ]
    manifest = {
        "format": BUNDLE_FORMAT,
        "formatVersion": BUNDLE_FORMAT_VERSION,
        "userId": user_id,
        "subjectRef": subject_ref,
        "exportedAt": stamp,
        "files": listed,
        "completeness": completeness,
    }
    manifest_bytes = _json_bytes(manifest)
    checksums = manifest_sha256_text(
        [*digests.items(), (MANIFEST, hashlib.sha256(manifest_bytes).hexdigest())]
    )
    ordered = [(MANIFEST_SHA256, checksums), (MANIFEST, manifest_bytes), *files.items()]
    return write_zip(ordered, exported_at, deflate=True)


_EXCEL_PACKAGE_CHANGES: tuple[dict, dict] | None = None


def excel_datapackage(machine_package: dict) -> dict:
    """The Excel flavour's data package, made from the machine one: the two differ only in
    what `build_datapackage` says about the flavour (learnt once per process from a pair
    built on empty tables), not in the keys, which are the costly part to work out."""
    global _EXCEL_PACKAGE_CHANGES
    if _EXCEL_PACKAGE_CHANGES is None:
        empty = {name: table.schema.empty_table() for name, table in _empty_tables().items()}
        stamp = ExportStamp("u", dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        pair = [build_datapackage(empty, stamp, flavour=f) for f in ("machine", "excel")]
        goalport = {k: v for k, v in pair[1]["goalport"].items() if pair[0]["goalport"].get(k) != v}
        resources = {
            r1["name"]: {k: v for k, v in r1.items() if r0.get(k) != v}
            for r0, r1 in zip(pair[0]["resources"], pair[1]["resources"], strict=True)
        }
        _EXCEL_PACKAGE_CHANGES = (goalport, resources)
    goalport, resources = _EXCEL_PACKAGE_CHANGES
    package = orjson.loads(orjson.dumps(machine_package))
    package["goalport"].update(goalport)
    for resource in package["resources"]:
        resource.update(resources[resource["name"]])
    return package


def _empty_tables() -> dict[str, pa.Table]:
    from resources.schema import empty_app_tables

    return empty_app_tables()


_EMPTY_CSV: dict[tuple[str, str], bytes] = {}


def table_csv(table: pa.Table, name: str, text_table: pa.Table | None = None) -> bytes:
    """The machine CSV of a table, from its `csv_text_table` when that is already made (an
    empty table's header is made once per process)."""
    if table.num_rows:
        return csv_text_bytes(csv_text_table(table) if text_table is None else text_table)
    if (name, "machine") not in _EMPTY_CSV:
        _EMPTY_CSV[name, "machine"] = csv_bytes(table, "machine")
    return _EMPTY_CSV[name, "machine"]


# A string field's start in the machine CSV: the writer quotes every string value and
# doubles every quote inside one, so `"` right after a line start or comma, followed by a
# trigger, can only be the opening of a field whose value starts with that trigger.
_EXCEL_FIELD_START = re.compile(
    rb'(^|,|\n)"([' + re.escape("".join(EXCEL_ESCAPE_TRIGGERS)).encode() + rb"])"
)
# the same field starts, less the one at the very start: a pattern without `^` that the
# regex engine scans several times faster
_FIELD_START_AFTER_SEPARATOR = re.compile(
    rb'[,\n]"[' + re.escape("".join(EXCEL_ESCAPE_TRIGGERS)).encode() + rb"]"
)
_TRIGGER_BYTES = frozenset(trigger.encode() for trigger in EXCEL_ESCAPE_TRIGGERS)


def excel_table_csv(table: pa.Table, name: str, machine_csv: bytes) -> bytes:
    """The Excel-friendly CSV: the machine CSV with a BOM, and an apostrophe before every
    string value that starts with a trigger character. Made from the machine CSV's bytes,
    which is exactly what `csv_bytes(table, "excel")` writes (tests hold them equal), at a
    fraction of the cost; a machine CSV whose header is not quoted (another writer) is
    rendered afresh instead."""
    if not machine_csv.startswith(b'"'):
        return csv_bytes(table, "excel")
    if machine_csv[1:2] not in _TRIGGER_BYTES and not _FIELD_START_AFTER_SEPARATOR.search(
        machine_csv
    ):
        return UTF8_BOM + machine_csv  # nothing to escape, the usual case, found faster
    escaped = _EXCEL_FIELD_START.sub(b'\\1"' + EXCEL_ESCAPE_PREFIX.encode() + b"\\2", machine_csv)
    return UTF8_BOM + escaped


@functools.cache
def _published_export_schema() -> bytes:
    return EXPORT_JSON_SCHEMA_PATH.read_bytes()


@functools.cache
def _processing_schema_bytes() -> bytes:
    return _json_bytes(build_processing_schema())


def manifest_sha256_text(entries: Sequence[tuple[str, str]]) -> bytes:
    """`<sha256>  <path>` lines (sha256sum's text mode) and the self-check comment line."""
    body = "".join(f"{digest}  {path}\n" for path, digest in entries)
    own = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return (body + SELF_CHECK_PREFIX + own + "\n").encode("utf-8")


def _json_bytes(value) -> bytes:
    return orjson.dumps(
        value, default=json_default, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    )


# ---------------------------------------------------------------- completeness

_STANDARD_NOT_INCLUDED = [
    {
        "what": "UserKey.wrappedIdentity (the private half of your backup key)",
        "why": "A secret, stored only encrypted under the operator's master key; it is never "
        "written to an export. The operator can hand it to you on request (`goalport keys "
        "export`), and it is destroyed when you are erased.",
    },
    {
        "what": "Earlier export, backup and import files in storage",
        "why": "Copies of the data in this bundle as it was then; each is listed with its "
        "time, size and checksum in processing/audit-log.json.",
    },
    {
        "what": "Pipeline run logs (Dagster)",
        "why": "Operational records of the export machinery; they name users only by id in "
        "run configuration and hold none of your content.",
    },
    {
        "what": "The entry recording this export",
        "why": "It is written to the audit log after the bundle is made; the next bundle "
        "will list it.",
    },
]


def build_completeness(
    prepared: Mapping[str, pa.Table],
    entries: list[dict],
    live_counts: Mapping[str, int] | None,
    records: Mapping[str, list] | None,
    texts: Mapping,
) -> dict:
    live_counts = live_counts or {}
    tables = {}
    for name in TABLE_NAMES:
        exported = prepared[name].num_rows
        live = live_counts.get(name)
        tables[name] = {"exported": exported, "live": live, "matches": live == exported}
    audit_live = live_counts.get("DataAuditLog")
    processing = {
        "DataAuditLog": {
            "exported": len(entries),
            "live": audit_live,
            "matches": audit_live == len(entries),
        }
    }
    not_included = list(_STANDARD_NOT_INCLUDED)
    if records is None:
        not_included.append(
            {
                "what": "goalport's other records about you (" + ", ".join(RECORD_TABLES) + ")",
                "why": "Not supplied to this bundle by the process that made it.",
            }
        )
    not_included.extend(texts.get("notIncluded") or [])
    complete = all(t["matches"] for t in tables.values()) and processing["DataAuditLog"]["matches"]
    return {
        "complete": complete,
        "method": "rows in this bundle compared with a count of the same rows in the live "
        "database, taken when the bundle was made",
        "tables": tables,
        "processing": processing,
        "records": {name: len(rows) for name, rows in records.items()} if records else {},
        "notIncluded": not_included,
    }
