"""The GDPR bundle's layout: its fixed file paths, the format names it writes, and what each
file and each table is.

Fixed paths, so that tools need no discovery:

    README.html                         what this is: every category of data as tables and
                                        charts, what each file is, the Art. 15 information
    manifest.json                       size and SHA-256 of every file; completeness (rows per
                                        table against the live database); what is not included
    manifest-sha256.txt                 the same hashes (and manifest.json's) for `sha256sum -c`
    schema/export-v1.schema.json        JSON Schema of data/goalport-export.json (the published one)
    schema/processing-v1.schema.json    JSON Schema of processing/*.json
    data/goalport-export.json           the app data, goalport JSON export version 1
    data/goalport-export.xml            the same data as one XML document (export format 1)
    schema/export-v1.xsd                XML Schema of data/goalport-export.xml (the published one)
    data/datapackage.json, data/*.csv   machine CSV (RFC 4180, UTF-8, no BOM) + Frictionless package
    data/excel/...                      the same CSV for spreadsheets (BOM, formula escaping recorded)
    processing/audit-log.json|.csv      every audit-log entry about the user
    processing/datapackage.json         Frictionless description of audit-log.csv
    processing/records.json             goalport's other records about the user (jobs, settings)

The writer (`assets.gdpr.bundle`), its README page (`assets.gdpr.readme`) and its checker
(`assets.gdpr.verify`) all take the paths from here. `manifest-sha256.txt` ends with a
comment line, `SELF_CHECK_PREFIX` and the SHA-256 of the lines above it (`sha256sum` skips
`#` lines), so that a change to it is told apart from a change to manifest.json.
"""

from __future__ import annotations

from collections.abc import Mapping

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
DATA_XML = "data/goalport-export.xml"
EXPORT_XSD_FILE = "schema/export-v1.xsd"
DATA_PACKAGE = "data/datapackage.json"
EXCEL_DIR = "data/excel"
AUDIT_JSON = "processing/audit-log.json"
AUDIT_CSV = "processing/audit-log.csv"
AUDIT_PACKAGE = "processing/datapackage.json"
RECORDS_JSON = "processing/records.json"
SELF_CHECK_PREFIX = "# sha256 of the lines above: "
BUNDLE = "(bundle)"  # the name problems of the whole file are reported under


# ---------------------------------------------------------------- what each table is

CATEGORY_DESCRIPTIONS: dict[str, str] = {
    "User": "Your account: e-mail address, first and last name, time zone, when it was created.",
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
    "ExportEncryption": "How your encrypted exports were encrypted (your public key, or that a "
    "passphrase was used; the passphrase itself is never kept).",
}

# ---------------------------------------------------------------- what each file is

MANIFEST_DESCRIPTIONS = {
    MANIFEST: "Size and SHA-256 of every file, completeness, and what is not included.",
    MANIFEST_SHA256: "The SHA-256 of every file, for `sha256sum -c manifest-sha256.txt`.",
}


# The data files that are not one table's CSV.
_FILE_DESCRIPTIONS = {
    EXPORT_SCHEMA_FILE: "JSON Schema (draft 2020-12) of data/goalport-export.json.",
    PROCESSING_SCHEMA_FILE: (
        "JSON Schema (draft 2020-12) of processing/audit-log.json and records.json."
    ),
    DATA_JSON: "All your app data in one JSON document (goalport export format 1).",
    DATA_XML: "The same data in one XML document (goalport export format 1).",
    EXPORT_XSD_FILE: "XML Schema of data/goalport-export.xml.",
    DATA_PACKAGE: "Frictionless data package: types, primary and foreign keys of data/*.csv.",
    f"{EXCEL_DIR}/datapackage.json": (
        "Frictionless data package of the Excel copy, with how its escaping is undone."
    ),
    AUDIT_JSON: "Every audit-log entry about you: what was done with your data, and when.",
    AUDIT_CSV: "The same audit-log entries as CSV.",
    AUDIT_PACKAGE: "Frictionless data package of processing/audit-log.csv.",
    RECORDS_JSON: "goalport's other records about you: " + ", ".join(RECORD_TABLES) + ".",
}


def describe_files(files: Mapping[str, bytes]) -> dict[str, str]:
    """What each of the bundle's data files is, for the manifest and the README."""
    described = {}
    for path in files:
        folder, _, name = path.rpartition("/")
        table = name.removesuffix(".csv")
        if path in _FILE_DESCRIPTIONS:
            text = _FILE_DESCRIPTIONS[path]
        elif folder == "data":
            text = f"{table}, machine CSV (RFC 4180, UTF-8): {CATEGORY_DESCRIPTIONS[table]}"
        elif folder == EXCEL_DIR:
            text = (
                f"{table} for spreadsheets (UTF-8 BOM; text starting with = + - @ escaped with ')."
            )
        else:
            text = ""
        described[path] = text
    return described
