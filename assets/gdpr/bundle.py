"""The GDPR bundle: everything held about one user, as one zip a person can read and a
program can check without goalport (Art. 15 access, Art. 20 portability).

Layout (fixed paths, so that tools need no discovery):

    README.html                         what this is: every category of data as tables and
                                        charts, what each file is, the Art. 15 information
    manifest.json                       size and SHA-256 of every file; completeness (rows per
                                        table against the live database); what is not included
    manifest-sha256.txt                 the same hashes (and manifest.json's) for `sha256sum -c`
    schema/export-v1.schema.json        JSON Schema of data/goalport-export.json (the published one)
    schema/processing-v1.schema.json    JSON Schema of processing/*.json
    data/goalport-export.json           the app data, goalport JSON export version 1
    data/datapackage.json, data/*.csv   machine CSV (RFC 4180, UTF-8, no BOM) + Frictionless package
    data/excel/...                      the same CSV for spreadsheets (BOM, formula escaping recorded)
    processing/audit-log.json|.csv      every audit-log entry about the user
    processing/datapackage.json         Frictionless description of audit-log.csv
    processing/records.json             goalport's other records about the user (jobs, settings)

`render_gdpr_bundle` is pure (tables and rows in, bytes out). `verify_bundle` is its
checker: it opens age-encrypted bundles, checks every hash, the manifest, the JSON against
its schema, that JSON and both CSV copies hold the same rows, and the counts, and names the
file that is wrong. `manifest-sha256.txt` ends with a comment line holding the SHA-256 of
the lines above it (`sha256sum` skips `#` lines), so that a change to it is told apart from a
change to manifest.json.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import html
import io
import json
import os
import re
import zipfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa

from assets.formats.common import (
    TABLE_NAMES,
    format_timestamp,
    json_default,
    prepare_export_tables,
)
from assets.formats.json import EXPORT_JSON_SCHEMA_PATH, json_document, json_object_texts
from assets.formats.report import (
    CONTENT_SECURITY_POLICY,
    completion_bar_chart,
    goal_chart_figures,
)
from assets.formats.tabular import (
    EXCEL_ESCAPE_PREFIX,
    EXCEL_ESCAPE_TRIGGERS,
    UTF8_BOM,
    build_datapackage,
    csv_bytes,
    csv_text_bytes,
    csv_text_table,
    excel_escape,
    write_zip,
)

BUNDLE_FORMAT = "goalport.gdpr-bundle"
BUNDLE_FORMAT_VERSION = 1
AUDIT_FORMAT = "goalport.audit-log"
RECORDS_FORMAT = "goalport.gdpr-records"

README = "README.html"
MANIFEST = "manifest.json"
MANIFEST_SHA256 = "manifest-sha256.txt"
EXPORT_SCHEMA_FILE = "schema/export-v1.schema.json"
PROCESSING_SCHEMA_FILE = "schema/processing-v1.schema.json"
DATA_JSON = "data/goalport-export.json"
DATA_PACKAGE = "data/datapackage.json"
EXCEL_DIR = "data/excel"
AUDIT_JSON = "processing/audit-log.json"
AUDIT_CSV = "processing/audit-log.csv"
AUDIT_PACKAGE = "processing/datapackage.json"
RECORDS_JSON = "processing/records.json"
SELF_CHECK_PREFIX = "# sha256 of the lines above: "
BUNDLE = "(bundle)"  # the name problems of the whole file are reported under

TEXTS_ENV = "GOALPORT_GDPR_TEXTS"
README_ROWS_PER_TABLE = 10
README_AUDIT_ROWS = 200
README_GOAL_CHARTS = 6

# ---------------------------------------------------------------- Art. 15 texts

DEFAULT_GDPR_TEXTS: dict = {
    "controller": "The operator of this Goal Assistant installation.",
    "contact": (
        "Write to the operator of this Goal Assistant installation; their privacy contact "
        "(and data protection officer, if they have one) is named in the app's privacy notice."
    ),
    "purposes": [
        "Providing the Goal Assistant app: keeping your goals, progress, achievements, "
        "Bible study and work projects so that you can track them (contract, Art. 6(1)(b)).",
        "Exports, backups and imports that you ask for (Art. 20 data portability).",
        "Keeping a record of what was done with your data: exports, imports, backups, "
        "deletions (accountability, Art. 5(2); legal obligation, Art. 6(1)(c)).",
        "Keeping the service secure and available (legitimate interest, Art. 6(1)(f)).",
    ],
    "categories": [
        "Account data: e-mail address, name, time zone.",
        "Content you created: goals, progress entries and notes, achievements, settings, "
        "Bible reading plans, readings and study notes, work projects and tasks.",
        "Records of processing: when your data was exported, imported, backed up or deleted.",
    ],
    "recipients": [
        "The operator's hosting and storage providers, as processors under Art. 28.",
        "Nobody else: your data is not sold or shared with third parties for their own use.",
    ],
    "retention": (
        "Your data is kept while your account exists. When you ask for erasure it is deleted "
        "from the database and storage (after a grace period in which you can cancel), your "
        "encryption key is destroyed, and only a pseudonymous record that the erasure took "
        "place is kept. Export files expire after 7 days; backups follow the retention you set."
    ),
    "source": "You: everything in this bundle was entered by you in the app or imported by you.",
    "automatedDecisions": "No decisions with legal or similarly significant effects are automated.",
    "transfers": "None outside the EU/EEA unless the privacy notice says otherwise.",
    "rights": [
        "Access (Art. 15): this bundle.",
        "Rectification (Art. 16): correct your data in the app.",
        "Erasure (Art. 17): ask for your account and data to be deleted.",
        "Restriction (Art. 18) and objection (Art. 21): write to the contact above.",
        "Portability (Art. 20): the data/ folder, in JSON and CSV, can be imported elsewhere.",
        "Withdraw consent at any time, where processing relies on it.",
    ],
    "complaint": (
        "You can complain to a data protection supervisory authority, in particular in the EU "
        "member state where you live or work, or where you think the law was broken."
    ),
    "notIncluded": [],
}
_TEXT_KEYS = (
    "controller",
    "contact",
    "retention",
    "source",
    "automatedDecisions",
    "transfers",
    "complaint",
)
_LIST_KEYS = ("purposes", "categories", "recipients", "rights")


class GdprTextsError(ValueError):
    """The Art. 15 texts file is unusable; the message names the file and the key."""


def check_gdpr_texts(texts: Mapping, where: str = "GDPR texts") -> dict:
    """The defaults overlaid with `texts`, every value checked."""
    merged = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULT_GDPR_TEXTS.items()}
    for key, value in texts.items():
        if key in _TEXT_KEYS:
            if not isinstance(value, str) or not value.strip():
                raise GdprTextsError(f"{where}: {key!r} must be a non-empty string")
        elif key in _LIST_KEYS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise GdprTextsError(f"{where}: {key!r} must be a list of strings")
        elif key == "notIncluded":
            ok = isinstance(value, list) and all(
                isinstance(v, dict) and set(v) == {"what", "why"} for v in value
            )
            if not ok:
                raise GdprTextsError(
                    f'{where}: \'notIncluded\' must be a list of {{"what": ..., "why": ...}}'
                )
        else:
            known = ", ".join(DEFAULT_GDPR_TEXTS)
            raise GdprTextsError(f"{where}: unknown key {key!r}; the keys are {known}")
        merged[key] = value
    return merged


def load_gdpr_texts(path: str | os.PathLike | None = None) -> dict:
    """The Art. 15 texts: the JSON object in `path` (default: the file GOALPORT_GDPR_TEXTS
    names) over the defaults; the defaults alone when no file is configured."""
    path = path or os.environ.get(TEXTS_ENV, "").strip() or None
    if path is None:
        return check_gdpr_texts({})
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise GdprTextsError(f"{TEXTS_ENV}: cannot read {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise GdprTextsError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise GdprTextsError(f"{path}: expected a JSON object of texts")
    return check_gdpr_texts(loaded, str(path))


# ---------------------------------------------------------------- what each table is

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "User": "Your account: e-mail address, name, time zone, when it was created.",
    "Module": "The areas of life you track goals in (fitness, learning, Bible, work, ...).",
    "Goal": "Your goals and sub-goals: title, description, priority, difficulty, dates, status.",
    "Progress": "Every progress entry you recorded: value, target, notes, when.",
    "Achievement": "Achievements you earned, with their points.",
    "UserSetting": "Your app settings.",
    "BibleReadingPlan": "Your Bible reading plans.",
    "BibleReading": "The readings of your plans and when you completed them.",
    "BibleStudyNote": "Your Bible study notes.",
    "WorkProject": "Your work projects: status, budget, dates.",
    "WorkTask": "The tasks of your work projects.",
}

# goalport's own tables whose rows about the user go to processing/records.json
RECORD_TABLES: dict[str, str] = {
    "DataExportJob": "Export requests (what, when, which file, its checksum and expiry).",
    "DataImportJob": "Import requests (source app, file name, mode, outcome).",
    "ImportChange": "Before/after of every row an import changed (for undo).",
    "ExternalRef": "Links from other apps' ids to yours, so re-imports update in place.",
    "BackupConfig": "Your backup settings (frequency, destination, encryption, retention).",
    "UserKey": "The public half of your backup encryption key (age recipient).",
    "NotificationOutbox": "Notifications sent or waiting to be sent to you.",
    "GoalTemplate": "Goal templates you authored.",
    "ErasureRequest": "Erasure requests you made.",
}

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


# ---------------------------------------------------------------- rendering


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
    files[DATA_JSON] = json_document(
        prepared,
        {name: t.json for name, t in texts_of.items()},
        user_id=user_id,
        exported_at=exported_at,
        filters=None,
    )
    package = build_datapackage(
        prepared,
        flavour="machine",
        user_id=user_id,
        exported_at=exported_at,
        filters=None,
        dangling_references=dangling_references,
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
    files[AUDIT_CSV] = csv_bytes(_audit_table(entries))
    files[AUDIT_PACKAGE] = _json_bytes(_audit_datapackage(user_id, stamp, len(entries)))
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
        descriptions={**descriptions, README: "This page.", **_MANIFEST_DESCRIPTIONS},
        sizes={path: len(data) for path, data in files.items()},
        shown={name: t.csv for name, t in texts_of.items()},
    )
    files = {README: readme, **files}
    descriptions[README] = "This page: an index of the bundle, readable in any browser."

    manifest = {
        "format": BUNDLE_FORMAT,
        "formatVersion": BUNDLE_FORMAT_VERSION,
        "userId": user_id,
        "subjectRef": subject_ref,
        "exportedAt": stamp,
        "files": [
            {
                "path": path,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "description": descriptions[path],
            }
            for path, data in files.items()
        ],
        "completeness": completeness,
    }
    manifest_bytes = _json_bytes(manifest)
    checksums = manifest_sha256_text(
        [(f["path"], f["sha256"]) for f in manifest["files"]]
        + [(MANIFEST, hashlib.sha256(manifest_bytes).hexdigest())]
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
        stamp = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        pair = [
            build_datapackage(empty, flavour=f, user_id="u", exported_at=stamp, filters=None)
            for f in ("machine", "excel")
        ]
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


_MANIFEST_DESCRIPTIONS = {
    MANIFEST: "Size and SHA-256 of every file, completeness, and what is not included.",
    MANIFEST_SHA256: "The SHA-256 of every file, for `sha256sum -c manifest-sha256.txt`.",
}


def describe_files(files: Mapping[str, bytes]) -> dict[str, str]:
    described = {}
    for path in files:
        folder, _, name = path.rpartition("/")
        table = name.removesuffix(".csv")
        if path == EXPORT_SCHEMA_FILE:
            text = "JSON Schema (draft 2020-12) of data/goalport-export.json."
        elif path == PROCESSING_SCHEMA_FILE:
            text = "JSON Schema (draft 2020-12) of processing/audit-log.json and records.json."
        elif path == DATA_JSON:
            text = "All your app data in one JSON document (goalport export format 1)."
        elif path == DATA_PACKAGE:
            text = "Frictionless data package: types, primary and foreign keys of data/*.csv."
        elif path == f"{EXCEL_DIR}/datapackage.json":
            text = "Frictionless data package of the Excel copy, with how its escaping is undone."
        elif folder == "data":
            text = f"{table}, machine CSV (RFC 4180, UTF-8): {CATEGORY_DESCRIPTIONS[table]}"
        elif folder == EXCEL_DIR:
            text = (
                f"{table} for spreadsheets (UTF-8 BOM; text starting with = + - @ escaped with ')."
            )
        elif path == AUDIT_JSON:
            text = "Every audit-log entry about you: what was done with your data, and when."
        elif path == AUDIT_CSV:
            text = "The same audit-log entries as CSV."
        elif path == AUDIT_PACKAGE:
            text = "Frictionless data package of processing/audit-log.csv."
        elif path == RECORDS_JSON:
            text = "goalport's other records about you: " + ", ".join(RECORD_TABLES) + "."
        else:
            text = ""
        described[path] = text
    return described


def manifest_sha256_text(entries: Sequence[tuple[str, str]]) -> bytes:
    """`<sha256>  <path>` lines (sha256sum's text mode) and the self-check comment line."""
    body = "".join(f"{digest}  {path}\n" for path, digest in entries)
    own = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return (body + SELF_CHECK_PREFIX + own + "\n").encode("utf-8")


def _json_bytes(value) -> bytes:
    return orjson.dumps(
        value, default=json_default, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    )


# ---------------------------------------------------------------- processing records

_AUDIT_FIELDS = (
    "id",
    "createdAt",
    "operation",
    "operationType",
    "dataTypes",
    "recordCount",
    "actor",
    "details",
)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _loads_json_text(value):
    if value is None or not isinstance(value, str | bytes):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def audit_entries(rows: Sequence[Mapping]) -> list[dict]:
    """DataAuditLog rows as JSON-ready entries, oldest first."""
    entries = []
    for row in rows:
        created = row["createdAt"]
        data_types = _loads_json_text(row.get("dataTypes"))
        entries.append(
            {
                "id": str(row["id"]),
                "createdAt": format_timestamp(created)
                if isinstance(created, dt.datetime)
                else created,
                "operation": row["operation"],
                "operationType": row.get("operationType"),
                "dataTypes": data_types if isinstance(data_types, list) else [],
                "recordCount": row.get("recordCount"),
                "actor": row.get("actor"),
                "details": _loads_json_text(row.get("details")) or {},
            }
        )
    entries.sort(key=lambda e: (e["createdAt"], e["id"]))
    return entries


def _audit_table(entries: list[dict]) -> pa.Table:
    def dumps(value) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)

    return pa.table(
        {
            "id": pa.array([e["id"] for e in entries], pa.string()),
            "createdAt": pa.array([e["createdAt"] for e in entries], pa.string()),
            "operation": pa.array([e["operation"] for e in entries], pa.string()),
            "operationType": pa.array([e["operationType"] for e in entries], pa.string()),
            "dataTypes": pa.array([dumps(e["dataTypes"]) for e in entries], pa.string()),
            "recordCount": pa.array([e["recordCount"] for e in entries], pa.int64()),
            "actor": pa.array([e["actor"] for e in entries], pa.string()),
            "details": pa.array([dumps(e["details"]) for e in entries], pa.string()),
        }
    )


def _audit_datapackage(user_id: str, stamp: str, rows: int) -> dict:
    def text(name, description, required=False):
        spec = {"name": name, "type": "string", "description": description}
        if required:
            spec["constraints"] = {"required": True}
        return spec

    fields = [
        text("id", "entry id", True),
        {
            "name": "createdAt",
            "type": "datetime",
            "description": "UTC, ISO 8601 with Z",
            "constraints": {"required": True},
        },
        text("operation", "export, import, backup, erase, template, ...", True),
        text("operationType", "the kind of operation"),
        text("dataTypes", "JSON list of the tables involved"),
        {"name": "recordCount", "type": "integer", "description": "rows involved"},
        text("actor", "who asked for it"),
        text("details", "JSON object: job ids, file, size, checksum, ... (never contents)"),
    ]
    return {
        "name": "goalport-processing-records",
        "title": "Records of processing of your data",
        "created": stamp,
        "profile": "tabular-data-package",
        "goalport": {"userId": user_id, "format": AUDIT_FORMAT, "formatVersion": 1},
        "resources": [
            {
                "name": "audit-log",
                "path": "audit-log.csv",
                "type": "table",
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "dialect": {
                    "delimiter": ",",
                    "lineTerminator": "\r\n",
                    "quoteChar": '"',
                    "doubleQuote": True,
                    "header": True,
                },
                "schema": {"fields": fields, "primaryKey": ["id"], "missingValues": [""]},
                "goalport:rowCount": rows,
            }
        ],
    }


def jsonable_row(row: Mapping) -> dict:
    """A database row as JSON values; binary columns are left out (never exported)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bytes | bytearray | memoryview):
            continue
        if isinstance(value, dt.datetime):
            value = format_timestamp(_utc(value))
        elif isinstance(value, dt.date):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        out[str(key)] = value
    return out


def build_processing_schema() -> dict:
    entry = {
        "type": "object",
        "required": list(_AUDIT_FIELDS),
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "createdAt": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T[0-9:.]+Z$"},
            "operation": {"type": "string"},
            "operationType": {"type": ["string", "null"]},
            "dataTypes": {"type": "array", "items": {"type": "string"}},
            "recordCount": {"type": ["integer", "null"]},
            "actor": {"type": ["string", "null"]},
            "details": {"type": ["object", "array", "string", "null"]},
        },
    }
    scalar = {"type": ["string", "number", "integer", "boolean", "null"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:goalport:schema:gdpr-processing-v1",
        "title": "goalport GDPR bundle: records of processing, version 1",
        "oneOf": [{"$ref": "#/$defs/AuditLog"}, {"$ref": "#/$defs/Records"}],
        "$defs": {
            "AuditEntry": entry,
            "AuditLog": {
                "type": "object",
                "required": ["format", "formatVersion", "userId", "subjectRef", "entries"],
                "additionalProperties": False,
                "properties": {
                    "format": {"const": AUDIT_FORMAT},
                    "formatVersion": {"const": 1},
                    "userId": {"type": "string"},
                    "subjectRef": {"type": ["string", "null"]},
                    "entries": {"type": "array", "items": {"$ref": "#/$defs/AuditEntry"}},
                },
            },
            "Records": {
                "type": "object",
                "required": ["format", "formatVersion", "userId", "tables"],
                "additionalProperties": False,
                "properties": {
                    "format": {"const": RECORDS_FORMAT},
                    "formatVersion": {"const": 1},
                    "userId": {"type": "string"},
                    "tables": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "array",
                            "items": {"type": "object", "additionalProperties": scalar},
                        },
                    },
                },
            },
        },
    }


# ---------------------------------------------------------------- completeness


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


# ---------------------------------------------------------------- README.html

_STYLE = """
body { margin:0; background:#f7f9fb; color:#1f2933;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 20px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 12px; border-bottom: 1px solid #d9e2ec; padding-bottom: 6px; }
h3 { font-size: 16px; margin: 22px 0 6px; }
.meta, .note { color: #616e7c; }
.note { font-size: 13px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: #fff; border: 1px solid #d9e2ec; margin: 6px 0; }
th, td { text-align: left; padding: 5px 9px; border-bottom: 1px solid #d9e2ec; vertical-align: top;
  font-size: 13px; max-width: 360px; overflow-wrap: anywhere; }
th { background: #eef2f6; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b42318; font-weight: 600; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 14px; }
figure { margin: 0; background: #fff; border: 1px solid #d9e2ec; border-radius: 8px; padding: 10px 12px; }
figcaption { font-size: 14px; font-weight: 600; margin-bottom: 4px; overflow-wrap: anywhere; }
svg text { font: 11px system-ui, sans-serif; fill: #616e7c; }
code { background: #eef2f6; padding: 1px 4px; border-radius: 3px; }
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render_readme(
    prepared: Mapping[str, pa.Table],
    *,
    user_id: str,
    exported_at: dt.datetime,
    entries: list[dict],
    texts: Mapping,
    completeness: Mapping,
    descriptions: Mapping[str, str],
    sizes: Mapping[str, int],
    shown: Mapping[str, pa.Table] | None = None,
) -> bytes:
    """The human-readable index of the bundle: self-contained HTML, no scripts, no links out.

    `shown`: the tables whose first rows are shown, when not `prepared` itself: the same
    rows with timestamps already as export text (`csv_text_table`), which read faster."""
    user_rows = prepared["User"].to_pylist()
    user = user_rows[0] if user_rows else {}
    who = user.get("name") or user.get("email") or user_id
    when = exported_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = [
        f"<h1>Your data: {_e(who)}</h1>",
        f'<p class="meta">Everything held about user <code>{_e(user_id)}</code>'
        f"{' (' + _e(user.get('email')) + ')' if user.get('email') else ''}, "
        f"as of {_e(when)}.</p>",
        _summary_section(prepared, entries, completeness),
        _charts_section(prepared),
        _categories_section(prepared, shown or prepared),
        _processing_section(entries),
        _art15_section(texts, prepared),
        _files_section(descriptions, sizes),
        _completeness_section(completeness),
        _checking_section(),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Your data: {_e(who)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(sections)
        + "\n</main>\n</body>\n</html>\n"
    )
    return page.encode("utf-8")


def _summary_section(prepared, entries, completeness) -> str:
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(CATEGORY_DESCRIPTIONS[name])}</td>"
        f'<td class="num">{prepared[name].num_rows}</td>'
        f'<td><a href="data/{_e(name)}.csv">data/{_e(name)}.csv</a></td></tr>'
        for name in TABLE_NAMES
    )
    state = (
        "complete: every row in the live database is in this bundle"
        if completeness["complete"]
        else '<span class="bad">incomplete: see “Completeness” below</span>'
    )
    return (
        "<h2>What we hold about you</h2>"
        f"<p>This bundle is {state}. It also holds the audit log of what was done "
        f"with your data ({len(entries)} entries, processing/).</p>"
        '<table><thead><tr><th>Category</th><th>What it is</th><th class="num">Rows</th>'
        f"<th>File</th></tr></thead><tbody>{rows}</tbody></table>"
    )


@dataclass(frozen=True)
class _Series:
    """One goal's progress in time order, in the shape report_html's line chart draws."""

    at: np.ndarray
    value: np.ndarray
    max_value: np.ndarray

    def __len__(self) -> int:
        return len(self.at)


def _charts_section(prepared) -> str:
    goals = prepared["Goal"]
    body = "<h2>Your progress</h2>"
    if goals.num_rows == 0:
        return body + '<p class="note">No goals.</p>'
    modules = dict(
        zip(
            prepared["Module"]["id"].to_pylist(),
            prepared["Module"]["name"].to_pylist(),
            strict=True,
        )
    )
    totals: dict[str, list[int]] = {}
    for module_id, done in zip(
        goals["moduleId"].to_pylist(), goals["isCompleted"].to_pylist(), strict=True
    ):
        counts = totals.setdefault(modules.get(module_id, "No module"), [0, 0])
        counts[0] += 1
        counts[1] += 1 if done else 0
    ordered = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
    body += "<h3>Completed goals by module</h3>" + completion_bar_chart(
        [(label, total, done) for label, (total, done) in ordered]
    )
    progress = prepared["Progress"]
    if progress.num_rows == 0:
        return body + '<p class="note">No progress recorded.</p>'
    ordered_progress = progress.select(["goalId", "recordedAt", "value", "maxValue"]).sort_by(
        [("goalId", "ascending"), ("recordedAt", "ascending")]
    )
    goal_ids = ordered_progress["goalId"].to_numpy(zero_copy_only=False)
    at = ordered_progress["recordedAt"].cast(pa.int64()).to_numpy(zero_copy_only=False)
    values = ordered_progress["value"].cast(pa.float64()).to_numpy(zero_copy_only=False)
    targets = ordered_progress["maxValue"].cast(pa.float64()).to_numpy(zero_copy_only=False)
    starts = np.concatenate(([0], np.flatnonzero(goal_ids[1:] != goal_ids[:-1]) + 1))
    ends = np.concatenate((starts[1:], [len(goal_ids)]))
    titles = dict(zip(goals["id"].to_pylist(), goals["title"].to_pylist(), strict=True))
    series = {
        str(goal_ids[s]): _Series(at[s:e], values[s:e], targets[s:e])
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
    }
    figures, charted = goal_chart_figures(series, titles, README_GOAL_CHARTS)
    more = ""
    if charted > README_GOAL_CHARTS:
        more = (
            f'<p class="note">The {README_GOAL_CHARTS} goals with the most entries; all '
            f"{charted} goals' progress is in data/Progress.csv.</p>"
        )
    return body + "<h3>Progress over time</h3>" + more + f'<div class="charts">{figures}</div>'


def _categories_section(prepared, shown) -> str:
    parts = ["<h2>Your data, by category</h2>"]
    for name in TABLE_NAMES:
        table = prepared[name]
        parts.append(
            f'<h3 id="{_e(name)}">{_e(name)}</h3><p>{_e(CATEGORY_DESCRIPTIONS[name])} '
            f"{table.num_rows} rows, all of them in <code>data/{_e(name)}.csv</code> and "
            "<code>data/goalport-export.json</code>.</p>"
        )
        if table.num_rows == 0:
            continue
        columns = [c for c in table.column_names if c != "userId"]
        first_rows = shown[name].slice(0, README_ROWS_PER_TABLE)
        cells = [[_cell(v) for v in first_rows[c].to_pylist()] for c in columns]
        head = "".join(f"<th>{_e(c)}</th>" for c in columns)
        body = "".join(
            "<tr><td>" + "</td><td>".join(row) + "</td></tr>" for row in zip(*cells, strict=True)
        )
        parts.append(
            f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
        )
        if table.num_rows > README_ROWS_PER_TABLE:
            parts.append(
                f'<p class="note">The first {README_ROWS_PER_TABLE} of {table.num_rows} rows '
                "(by id) are shown here.</p>"
            )
    return "".join(parts)


def _cell(value) -> str:
    if type(value) is str:  # most cells, and timestamps already as text
        return _e(value)
    if value is None:
        return '<span class="note">(empty)</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dt.datetime):
        return _e(format_timestamp(value))
    return _e(value)


def _processing_section(entries: list[dict]) -> str:
    body = (
        "<h2>What was done with your data</h2><p>Every entry of the audit log about you "
        "(exports, imports, backups, deletions, ...). All of them are in "
        "<code>processing/audit-log.json</code> and <code>processing/audit-log.csv</code>.</p>"
    )
    if not entries:
        return body + '<p class="note">No entries yet.</p>'
    recent = list(reversed(entries))[:README_AUDIT_ROWS]
    rows = "".join(
        f"<tr><td>{_e(e['createdAt'])}</td><td>{_e(e['operation'])}</td>"
        f"<td>{_e(e['operationType'])}</td><td>{_e(', '.join(e['dataTypes']))}</td>"
        f'<td class="num">{_e(e["recordCount"])}</td><td>{_e(e["actor"])}</td></tr>'
        for e in recent
    )
    note = ""
    if len(entries) > README_AUDIT_ROWS:
        note = f'<p class="note">The latest {README_AUDIT_ROWS} of {len(entries)} entries.</p>'
    return (
        body + '<div class="scroll"><table><thead><tr><th>When (UTC)</th><th>Operation</th>'
        '<th>Type</th><th>Data</th><th class="num">Records</th><th>Asked by</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>{note}"
    )


def _art15_section(texts: Mapping, prepared) -> str:
    def para(key: str) -> str:
        return f"<p>{_e(texts[key])}</p>"

    def items(key: str) -> str:
        return "<ul>" + "".join(f"<li>{_e(v)}</li>" for v in texts[key]) + "</ul>"

    held = [
        f"{name} ({prepared[name].num_rows})" for name in TABLE_NAMES if prepared[name].num_rows
    ]
    return (
        "<h2>How your data is processed (Art. 15 GDPR)</h2>"
        "<h3>Who is responsible</h3>"
        + para("controller")
        + para("contact")
        + "<h3>Why: purposes and legal bases</h3>"
        + items("purposes")
        + "<h3>Categories of personal data</h3>"
        + items("categories")
        + f'<p class="note">Held about you now: {_e(", ".join(held) or "nothing")}.</p>'
        + "<h3>Recipients</h3>"
        + items("recipients")
        + "<h3>How long it is kept</h3>"
        + para("retention")
        + "<h3>Where it comes from</h3>"
        + para("source")
        + "<h3>Automated decision-making</h3>"
        + para("automatedDecisions")
        + "<h3>Transfers to other countries</h3>"
        + para("transfers")
        + "<h3>Your rights</h3>"
        + items("rights")
        + "<h3>Where to complain</h3>"
        + para("complaint")
    )


def _files_section(descriptions: Mapping[str, str], sizes: Mapping[str, int]) -> str:
    rows = "".join(
        f"<tr><td><code>{_e(path)}</code></td><td>{_e(text)}</td>"
        f'<td class="num">{_e(sizes.get(path, ""))}</td></tr>'
        for path, text in sorted(descriptions.items())
    )
    return (
        "<h2>What each file is</h2>"
        '<table><thead><tr><th>File</th><th>What it is</th><th class="num">Bytes</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _completeness_section(completeness: Mapping) -> str:
    def row(name, c):
        mark = "" if c["matches"] else ' class="bad"'
        return (
            f'<tr{mark}><td>{_e(name)}</td><td class="num">{c["exported"]}</td>'
            f'<td class="num">{_e(c["live"] if c["live"] is not None else "not counted")}</td></tr>'
        )

    rows = "".join(row(n, c) for n, c in completeness["tables"].items())
    rows += "".join(row(n, c) for n, c in completeness["processing"].items())
    missing = "".join(
        f"<li><b>{_e(item['what'])}</b>: {_e(item['why'])}</li>"
        for item in completeness["notIncluded"]
    )
    return (
        "<h2>Completeness</h2><p>Rows in this bundle against a count of the same rows in the "
        "live database when it was made.</p>"
        '<table><thead><tr><th>Table</th><th class="num">In this bundle</th>'
        f'<th class="num">In the database</th></tr></thead><tbody>{rows}</tbody></table>'
        f"<h3>Not included, and why</h3><ul>{missing}</ul>"
    )


def _checking_section() -> str:
    return (
        "<h2>Checking this bundle</h2><ul>"
        "<li>Every file is unchanged: <code>sha256sum -c manifest-sha256.txt</code></li>"
        "<li>Everything (hashes, schema, counts): <code>goalport verify BUNDLE.zip</code></li>"
        "<li>The CSV data package: <code>frictionless validate data/datapackage.json</code></li>"
        "</ul>"
    )


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerifyProblem:
    path: str
    message: str


@dataclass
class VerifyReport:
    """What `verify_bundle` found: `ok`, the problems (each naming its file), what was checked."""

    problems: list[VerifyProblem] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    encrypted: bool = False
    user_id: str | None = None
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_files(self) -> list[str]:
        return list(dict.fromkeys(p.path for p in self.problems))

    def add(self, path: str, message: str) -> None:
        self.problems.append(VerifyProblem(path, message))

    def lines(self) -> list[str]:
        head = "encrypted bundle (age), decrypted; " if self.encrypted else ""
        if self.ok:
            return [f"OK: {head}{self.files} files, user {self.user_id}", *self.checks]
        return [f"FAILED: {head}{len(self.problems)} problem(s)"] + [
            f"{p.path}: {p.message}" for p in self.problems
        ]


def verify_bundle(
    data: bytes, *, identities: Sequence[str] = (), passphrase: str | None = None
) -> VerifyReport:
    """Check a bundle (zip, or an age file holding one) and say which file is wrong."""
    from resources import age

    report = VerifyReport()
    if age.is_age_file(data[:64]):
        report.encrypted = True
        if not identities and passphrase is None:
            report.add(BUNDLE, "the bundle is encrypted (age): give an identity file or passphrase")
            return report
        try:
            data = age.decrypt(data, identities=list(identities), passphrase=passphrase)
        except age.AgeError as exc:
            report.add(BUNDLE, f"cannot decrypt: {exc}")
            return report
    members = _read_members(data, report)
    if members is None:
        return report
    report.files = len(members)
    trusted = _check_integrity(members, report)
    _check_contents(members, trusted, report)
    return report


def _read_members(data: bytes, report: VerifyReport) -> dict[str, bytes | None] | None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        report.add(BUNDLE, f"not a zip archive: {exc}")
        return None
    members: dict[str, bytes | None] = {}
    for info in archive.infolist():
        name = info.filename
        if name.endswith("/"):
            continue
        if name in members:
            report.add(name, "appears more than once in the zip")
            continue
        if name.startswith("/") or ".." in name.split("/"):
            report.add(name, "unsafe path in the zip")
            continue
        try:
            members[name] = archive.read(info)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
            report.add(name, f"damaged in the zip (cannot be read: {exc})")
            members[name] = None
    return members


def _parse_sha256_text(raw: bytes) -> tuple[dict[str, str], bool] | None:
    """({path: sha256}, the self-check matches) or None if the text is not in the format."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    body, _, last = text.rstrip("\n").rpartition("\n")
    body += "\n" if body else ""
    self_ok = last.startswith(SELF_CHECK_PREFIX) and hashlib.sha256(
        body.encode("utf-8")
    ).hexdigest() == last.removeprefix(SELF_CHECK_PREFIX)
    entries = {}
    for line in body.splitlines():
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if match is None:
            return None
        entries[match.group(2)] = match.group(1)
    return entries, self_ok


def _check_integrity(members: Mapping[str, bytes | None], report: VerifyReport) -> set[str]:
    """Check every file against both hash lists; return the files that are intact."""
    actual = {n: hashlib.sha256(d).hexdigest() for n, d in members.items() if d is not None}
    damaged = {n for n, d in members.items() if d is None}

    listed_txt: dict[str, str] | None = None
    if MANIFEST_SHA256 not in members:
        report.add(MANIFEST_SHA256, "missing")
    elif MANIFEST_SHA256 not in damaged:
        parsed = _parse_sha256_text(members[MANIFEST_SHA256])
        if parsed is None or not parsed[1]:
            report.add(
                MANIFEST_SHA256,
                "altered: its lines do not match its own checksum line"
                if parsed
                else "not in sha256sum format",
            )
        else:
            listed_txt = parsed[0]

    manifest_ok = MANIFEST in members and MANIFEST not in damaged
    if MANIFEST not in members:
        report.add(MANIFEST, "missing")
    elif manifest_ok and listed_txt is not None and listed_txt.get(MANIFEST) != actual[MANIFEST]:
        report.add(MANIFEST, "altered: its SHA-256 is not the one in manifest-sha256.txt")
        manifest_ok = False
    listed_manifest: dict[str, tuple[int, str]] | None = None
    if manifest_ok:
        try:
            manifest = orjson.loads(members[MANIFEST])
            listed_manifest = {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]}
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            report.add(MANIFEST, f"not a goalport bundle manifest: {exc}")
            manifest_ok = False

    expected: dict[str, str] = {}
    if listed_txt is not None:
        expected.update({p: h for p, h in listed_txt.items() if p != MANIFEST})
    elif listed_manifest is not None:
        expected.update({p: h for p, (_size, h) in listed_manifest.items()})
    if listed_txt is not None and listed_manifest is not None:
        if set(listed_manifest) != set(expected) or any(
            listed_manifest[p][1] != expected[p] for p in expected
        ):
            report.add(MANIFEST, "its file list does not agree with manifest-sha256.txt")
            manifest_ok = False
    intact = set()
    for path, digest in expected.items():
        if path in damaged:
            continue
        if path not in members:
            report.add(path, "listed in the manifest but missing from the bundle")
        elif actual[path] != digest:
            report.add(path, f"altered: SHA-256 {actual[path]} is not the listed {digest}")
        elif (
            listed_manifest is not None
            and path in listed_manifest
            and (listed_manifest[path][0] != len(members[path]))
        ):
            report.add(
                path, f"size {len(members[path])} is not the listed {listed_manifest[path][0]}"
            )
        else:
            intact.add(path)
    for path in members:
        if path not in expected and path not in (MANIFEST, MANIFEST_SHA256) and path not in damaged:
            report.add(path, "not listed in the manifest")
    if expected:
        report.checks.append(f"SHA-256 and size of {len(intact)} files match the manifest")
    if manifest_ok:
        intact.add(MANIFEST)
    if listed_txt is not None:
        intact.add(MANIFEST_SHA256)
    return intact


@functools.lru_cache(maxsize=8)
def first_schema_error(schema_text: bytes, document_text: bytes) -> str | None:
    """Where and why the document does not match the JSON Schema, or None if it does.

    Cached by content: validating a big document takes a while, and checking the same
    bytes again (many bundles made from one template, a bundle checked twice) is free."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(orjson.loads(schema_text))
    error = next(iter(validator.iter_errors(orjson.loads(document_text))), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"at {where}: {error.message}"


def _check_contents(
    members: Mapping[str, bytes | None], intact: set[str], report: VerifyReport
) -> None:
    """Check what the files say, for the files whose bytes are intact."""
    from assets.formats.readers import read_json_export, read_table_csv

    def usable(path: str) -> bytes | None:
        return members.get(path) if path in intact else None

    manifest = None
    if usable(MANIFEST) is not None:
        manifest = orjson.loads(members[MANIFEST])
        if manifest.get("format") != BUNDLE_FORMAT or manifest.get("formatVersion") != 1:
            report.add(MANIFEST, f"not a {BUNDLE_FORMAT} version 1 manifest")
            manifest = None
        else:
            report.user_id = manifest.get("userId")
    for required in (README, DATA_JSON, EXPORT_SCHEMA_FILE, DATA_PACKAGE, AUDIT_JSON):
        if required not in members:
            report.add(required, "missing")

    json_tables = None
    raw_json, raw_schema = usable(DATA_JSON), usable(EXPORT_SCHEMA_FILE)
    if raw_json is not None:
        try:
            document = orjson.loads(raw_json)
        except orjson.JSONDecodeError as exc:
            report.add(DATA_JSON, f"not valid JSON: {exc}")
            document = None
        if document is not None and raw_schema is not None:
            error = first_schema_error(raw_schema, raw_json)
            if error is not None:
                report.add(DATA_JSON, f"does not match {EXPORT_SCHEMA_FILE} {error}")
                document = None
            else:
                report.checks.append(f"{DATA_JSON} validates against {EXPORT_SCHEMA_FILE}")
        if document is not None:
            if manifest is not None and document.get("userId") != manifest.get("userId"):
                report.add(DATA_JSON, "is the export of another user than the manifest names")
            try:
                json_tables = read_json_export(raw_json)
            except ValueError as exc:
                report.add(DATA_JSON, str(exc))

    for folder, excel in (("data", False), (EXCEL_DIR, True)):
        for name in TABLE_NAMES:
            path = f"{folder}/{name}.csv"
            raw = usable(path)
            if raw is None:
                if path not in members:
                    report.add(path, "missing")
                continue
            try:
                table = read_table_csv(raw, name, excel=excel, file_name=path)
            except ValueError as exc:
                report.add(path, str(exc))
                continue
            if json_tables is not None and not table.equals(json_tables[name]):
                report.add(path, f"does not hold the same {name} rows as {DATA_JSON}")
            elif manifest is not None:
                counted = manifest["completeness"]["tables"].get(name, {}).get("exported")
                if counted != table.num_rows:
                    report.add(path, f"has {table.num_rows} rows; the manifest says {counted}")
    report.checks.append("JSON, machine CSV and Excel CSV hold the same rows")

    for package_path in (DATA_PACKAGE, f"{EXCEL_DIR}/datapackage.json", AUDIT_PACKAGE):
        raw = usable(package_path)
        if raw is None:
            continue
        folder = package_path.rpartition("/")[0]
        try:
            package = orjson.loads(raw)
            for resource in package["resources"]:
                target = f"{folder}/{resource['path']}"
                if target not in members:
                    report.add(package_path, f"describes {resource['path']}, which is missing")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            report.add(package_path, f"not a data package: {exc}")

    raw_audit, raw_processing_schema = usable(AUDIT_JSON), usable(PROCESSING_SCHEMA_FILE)
    if raw_audit is not None and raw_processing_schema is not None:
        for path in (AUDIT_JSON, RECORDS_JSON):
            raw = usable(path)
            if raw is None:
                continue
            error = first_schema_error(raw_processing_schema, raw)
            if error is not None:
                report.add(path, f"does not match {PROCESSING_SCHEMA_FILE} {error}")
        entries = len(orjson.loads(raw_audit).get("entries", []))
        raw_csv = usable(AUDIT_CSV)
        if raw_csv is not None:
            import pyarrow.csv as pcsv

            rows = pcsv.read_csv(
                io.BytesIO(raw_csv), parse_options=pcsv.ParseOptions(newlines_in_values=True)
            ).num_rows
            if rows != entries:
                report.add(AUDIT_CSV, f"has {rows} entries; {AUDIT_JSON} has {entries}")
        if manifest is not None:
            listed = manifest["completeness"]["processing"]["DataAuditLog"]["exported"]
            if listed != entries:
                report.add(AUDIT_JSON, f"has {entries} entries; the manifest says {listed}")
        report.checks.append(f"{entries} audit-log entries, in JSON and CSV")

    if manifest is not None:
        completeness = manifest["completeness"]
        short = [
            f"{name} {c['exported']} of {c['live']}"
            for name, c in {**completeness["tables"], **completeness["processing"]}.items()
            if not c["matches"]
        ]
        if short or not completeness.get("complete"):
            report.add(
                MANIFEST, "the bundle is incomplete: " + (", ".join(short) or "see completeness")
            )
        else:
            report.checks.append("complete: every table's rows match the live database's count")
