"""`verify_bundle`: check a GDPR bundle without trusting it, and name the file that is wrong.

It opens age-encrypted bundles, checks every file against both hash lists (manifest.json and
manifest-sha256.txt, whose last line is a checksum of its own lines), the JSON against its
schema, that the JSON and both CSV copies hold the same rows, the audit-log counts and the
completeness the manifest records. Every problem is reported under the path of the file it
is in (or "(bundle)" for the archive as a whole), so that `goalport verify` can say which
file was altered or damaged. Only the CLI and tests import this module: the bundle writer
never needs jsonschema or the readers.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import jsonschema
import orjson
import pyarrow.csv as pcsv
from lxml import etree

from assets.formats.common import TABLE_NAMES
from assets.formats.csv import read_table_csv
from assets.formats.json import read_json_export
from assets.formats.xml import EXPORT_XSD_PATH, read_xml_export, read_xml_stamp
from assets.gdpr.layout import (
    AUDIT_CSV,
    AUDIT_JSON,
    AUDIT_PACKAGE,
    BUNDLE,
    BUNDLE_FORMAT,
    DATA_JSON,
    DATA_PACKAGE,
    DATA_XML,
    EXCEL_DIR,
    EXPORT_SCHEMA_FILE,
    EXPORT_XSD_FILE,
    MANIFEST,
    MANIFEST_SHA256,
    PROCESSING_SCHEMA_FILE,
    README,
    RECORDS_JSON,
    SELF_CHECK_PREFIX,
)
from resources import age


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
    readable = {n: d for n, d in members.items() if d is not None}
    actual = {n: hashlib.sha256(d).hexdigest() for n, d in readable.items()}
    damaged = {n for n, d in members.items() if d is None}

    listed_txt: dict[str, str] | None = None
    if MANIFEST_SHA256 not in members:
        report.add(MANIFEST_SHA256, "missing")
    elif MANIFEST_SHA256 not in damaged:
        parsed = _parse_sha256_text(readable[MANIFEST_SHA256])
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
            manifest = orjson.loads(readable[MANIFEST])
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
            and (listed_manifest[path][0] != len(readable[path]))
        ):
            report.add(
                path, f"size {len(readable[path])} is not the listed {listed_manifest[path][0]}"
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

    def usable(path: str) -> bytes | None:
        return members.get(path) if path in intact else None

    manifest = None
    raw_manifest = usable(MANIFEST)
    if raw_manifest is not None:
        manifest = orjson.loads(raw_manifest)
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

    _check_xml(usable, json_tables, manifest, report)

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


@functools.cache
def _published_xsd() -> tuple[bytes, etree.XMLSchema]:
    published = EXPORT_XSD_PATH.read_bytes()
    return published, etree.XMLSchema(etree.fromstring(published))


def _check_xml(usable, json_tables, manifest, report: VerifyReport) -> None:
    """The XML copy: read back by goalport's reader (which refuses DTDs and entities), valid
    against the published XML Schema (the bundle's own copy must be that one: a schema
    from a file is never loaded, as it could fetch others), and the same rows as the JSON."""
    raw_xml, raw_xsd = usable(DATA_XML), usable(EXPORT_XSD_FILE)
    if raw_xml is None:
        return
    try:
        xml_tables = read_xml_export(raw_xml)
        _, xml_user = read_xml_stamp(raw_xml)
    except ValueError as exc:
        report.add(DATA_XML, str(exc))
        return
    if raw_xsd is not None:
        published, schema = _published_xsd()
        if raw_xsd != published:
            report.add(EXPORT_XSD_FILE, "is not the published XML Schema of export format 1")
        elif not schema.validate(etree.fromstring(raw_xml, _no_entities_parser())):
            error = schema.error_log.last_error
            report.add(DATA_XML, f"does not match {EXPORT_XSD_FILE}: line {error.line}: "
                       f"{error.message}")  # fmt: skip
        else:
            report.checks.append(f"{DATA_XML} validates against {EXPORT_XSD_FILE}")
    if manifest is not None and xml_user != manifest.get("userId"):
        report.add(DATA_XML, "is the export of another user than the manifest names")
    if json_tables is not None:
        if any(not xml_tables[n].equals(json_tables[n]) for n in TABLE_NAMES):
            report.add(DATA_XML, f"does not hold the same rows as {DATA_JSON}")
        else:
            report.checks.append(f"{DATA_XML} holds the same rows as {DATA_JSON}")


def _no_entities_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
