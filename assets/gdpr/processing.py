"""The bundle's records of processing: the user's audit-log entries (what was done with
their data, and when) as JSON, CSV and a Frictionless package, goalport's other rows about
them (processing/records.json), and the JSON Schema of both.

Rows arrive as database mappings (the bulk path fetches them for a whole chunk of users);
what leaves is plain JSON values, never binary columns: a wrapped key or any other secret
never reaches a bundle.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal

import pyarrow as pa

from assets.formats.common import format_timestamp
from assets.gdpr.layout import AUDIT_FORMAT, RECORDS_FORMAT

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


def audit_table(entries: list[dict]) -> pa.Table:
    """The entries as processing/audit-log.csv's table (lists and objects as JSON text)."""

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


def audit_datapackage(user_id: str, stamp: str, rows: int) -> dict:
    """The Frictionless data package that describes processing/audit-log.csv."""

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
    """The JSON Schema (draft 2020-12) of processing/audit-log.json and records.json."""
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
