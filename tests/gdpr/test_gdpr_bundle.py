"""GDPR bundles are complete, readable without goalport and tamper-evident: a rich user's
bundle passes the real `frictionless validate` and `sha256sum -c`, `goalport verify`, and the
published JSON Schema; changing one byte of any file makes `goalport verify` fail naming that
file; bulk bundles for a hash bucket hold their own user's ids and nobody else's."""

import datetime as dt
import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import dagster as dg
import jsonschema
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
import xmlschema
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.formats.common import TABLE_NAMES
from assets.formats.csv import csv_bytes, read_table_csv
from assets.formats.json import EXPORT_JSON_SCHEMA_PATH, read_json_export
from assets.formats.xml import EXPORT_XSD_PATH, read_xml_export
from assets.gdpr import layout
from assets.gdpr.bulk import (
    GdprBundleExporter,
    bucket_user_ids,
    split_chunk,
    user_bucket,
)
from assets.gdpr.bundle import (
    excel_table_csv,
    manifest_sha256_text,
    render_gdpr_bundle,
    table_csv,
)
from assets.gdpr.defs import GdprBulkConfig, gdpr_bundles
from assets.gdpr.texts import DEFAULT_GDPR_TEXTS, GdprTextsError, load_gdpr_texts
from assets.gdpr.verify import verify_bundle
from pipelines.cli.main import main as goalport
from resources import age, schema
from resources.audit import record_audit
from resources.database import AppDatabase, ExtractedBatch
from resources.settings import GDPR_TEXTS_ENV
from resources.storage import ObjectStorage
from synthetic.load import load_population
from synthetic.population import generate_population
from synthetic.seed import seed_database

FRICTIONLESS = str(Path(sys.executable).parent / "frictionless")
EXPORTED_AT = dt.datetime(2025, 2, 3, 4, 5, 6, 789000, tzinfo=dt.UTC)
BUNDLE_FILES = [
    layout.MANIFEST_SHA256,
    layout.MANIFEST,
    layout.README,
    layout.EXPORT_SCHEMA_FILE,
    layout.PROCESSING_SCHEMA_FILE,
    layout.DATA_JSON,
    layout.EXPORT_XSD_FILE,
    layout.DATA_XML,
    layout.DATA_PACKAGE,
    *[f"data/{name}.csv" for name in TABLE_NAMES],
    f"{layout.EXCEL_DIR}/datapackage.json",
    *[f"{layout.EXCEL_DIR}/{name}.csv" for name in TABLE_NAMES],
    layout.AUDIT_JSON,
    layout.AUDIT_CSV,
    layout.AUDIT_PACKAGE,
    layout.RECORDS_JSON,
]


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes]) -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return sink.getvalue()


def richest_user(tables: dict) -> tuple[str, dict]:
    per_user = ExtractedBatch(user_ids=(), tables=tables).per_user()
    user_id = max(
        per_user,
        key=lambda u: (
            sum(t.num_rows > 0 for t in per_user[u].values()),
            per_user[u]["Progress"].num_rows,
        ),
    )
    return user_id, per_user[user_id]


@pytest.fixture(scope="module")
def pure_bundle() -> tuple[str, bytes]:
    """A bundle rendered without a database: a rich generated user, audit rows, records."""
    user_id, tables = richest_user(generate_population(12, seed=4, heavy_every=0))
    audit = [
        {
            "id": f"aud_{i}",
            "createdAt": EXPORTED_AT - dt.timedelta(days=i),
            "operation": op,
            "operationType": "full",
            "dataTypes": '["Goal", "Progress"]',
            "recordCount": 10 * i,
            "actor": user_id,
            "details": json.dumps({"jobId": f"job_{i}", "note": "=cmd|' /C calc'!A0"}),
        }
        for i, op in enumerate(["export", "import", "backup"])
    ]
    live = {name: t.num_rows for name, t in tables.items()} | {"DataAuditLog": len(audit)}
    records = {"BackupConfig": [{"id": "bc1", "userId": user_id, "frequency": "weekly"}]}
    data = render_gdpr_bundle(
        tables,
        user_id=user_id,
        exported_at=EXPORTED_AT,
        audit_rows=audit,
        texts=None,
        live_counts=live,
        records=records,
    )
    return user_id, data


def test_the_bundle_holds_exactly_the_documented_files(pure_bundle):
    _user, data = pure_bundle
    assert list(members(data)) == BUNDLE_FILES
    report = verify_bundle(data)
    assert report.ok
    assert f"{layout.DATA_XML} holds the same rows as {layout.DATA_JSON}" in report.checks
    assert f"{layout.DATA_XML} validates against {layout.EXPORT_XSD_FILE}" in report.checks


def test_the_xml_copy_is_valid_to_an_independent_validator_and_holds_the_json_rows(pure_bundle):
    user_id, data = pure_bundle
    files = members(data)
    assert files[layout.EXPORT_XSD_FILE] == EXPORT_XSD_PATH.read_bytes()
    xmlschema.XMLSchema(EXPORT_XSD_PATH.read_text(encoding="utf-8")).validate(
        files[layout.DATA_XML].decode("utf-8")
    )
    from_xml, from_json = (
        read_xml_export(files[layout.DATA_XML]),
        read_json_export(files[layout.DATA_JSON]),
    )
    assert from_xml.keys() == from_json.keys()
    assert all(from_xml[name].equals(from_json[name]) for name in from_json)
    assert from_xml["Progress"].num_rows > 0 and from_xml["User"]["id"][0].as_py() == user_id
    readme = files[layout.README].decode("utf-8")
    assert layout.DATA_XML in readme and layout.EXPORT_XSD_FILE in readme

    # An XML copy whose rows differ from the JSON's is named (the rest made consistent).
    changed = files[layout.DATA_XML].replace(b"<title>", b"<title>X", 1)
    report = verify_bundle(_with_file(files, layout.DATA_XML, changed))
    assert report.bad_files == [layout.DATA_XML], report.lines()
    assert "does not hold the same rows" in " ".join(report.lines())


def _with_file(files: dict[str, bytes], path: str, data: bytes) -> bytes:
    """The bundle with one file replaced and its manifest and checksum file made to match."""
    files = dict(files)
    files[path] = data
    manifest = json.loads(files[layout.MANIFEST])
    for entry in manifest["files"]:
        if entry["path"] == path:
            entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    files[layout.MANIFEST] = json.dumps(manifest, indent=2, ensure_ascii=False).encode()
    digests = [(e["path"], e["sha256"]) for e in manifest["files"]]
    digests.append((layout.MANIFEST, hashlib.sha256(files[layout.MANIFEST]).hexdigest()))
    files[layout.MANIFEST_SHA256] = manifest_sha256_text(digests)
    return rezip(files)


def test_rendering_is_deterministic_and_the_manifest_lists_every_file(pure_bundle):
    user_id, data = pure_bundle
    tables = richest_user(generate_population(12, seed=4, heavy_every=0))[1]
    manifest = json.loads(members(data)[layout.MANIFEST])
    audit = json.loads(members(data)[layout.AUDIT_JSON])["entries"]
    again = render_gdpr_bundle(
        tables,
        user_id=user_id,
        exported_at=EXPORTED_AT,
        audit_rows=[
            {
                **e,
                "createdAt": dt.datetime.fromisoformat(e["createdAt"].replace("Z", "+00:00")),
                "dataTypes": json.dumps(e["dataTypes"]),
                "details": json.dumps(e["details"]),
            }
            for e in audit
        ],
        texts=None,
        live_counts={n: c["live"] for n, c in manifest["completeness"]["tables"].items()}
        | {"DataAuditLog": len(audit)},
        records={"BackupConfig": [{"id": "bc1", "userId": user_id, "frequency": "weekly"}]},
    )
    assert again == data
    assert manifest["userId"] == user_id and manifest["completeness"]["complete"]
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(BUNDLE_FILES) - {layout.MANIFEST, layout.MANIFEST_SHA256}
    for path, content in members(data).items():
        if path in listed:
            assert listed[path]["sha256"] == hashlib.sha256(content).hexdigest()
            assert listed[path]["size"] == len(content) and listed[path]["description"]


def test_bulk_texts_made_once_per_chunk_render_the_same_bundles():
    """The bulk path formats a whole chunk's rows at once (Arrow's kernels above 1000 rows,
    orjson below) and slices them per user: every bundle must come out byte for byte as
    rendered from that user's tables alone."""
    tables = generate_population(12, seed=4, heavy_every=0)
    assert tables["Progress"].num_rows >= 1000  # the chunk takes the other JSON path
    # one goal in a module of another user: a foreign key that user's bundle leaves dangling
    goals, modules = tables["Goal"], tables["Module"]
    other_module = modules.filter(pc.not_equal(modules["userId"], goals["userId"][0]))["id"][0]
    moved = pa.concat_arrays(
        [pa.array([other_module.as_py()]), goals["moduleId"][1:].combine_chunks()]
    )
    tables["Goal"] = goals.set_column(
        goals.schema.get_field_index("moduleId"), goals.schema.field("moduleId"), moved
    )
    batch = ExtractedBatch(user_ids=(), tables=tables)
    split = split_chunk(batch)
    per_user = batch.per_user()
    assert set(split) == set(per_user) and len(per_user) == 12
    dangling = {
        u: rows.dangling_references for u, rows in split.items() if rows.dangling_references
    }
    assert dangling == {goals["userId"][0].as_py(): {("Goal", "moduleId")}}
    for user_id, rows in split.items():
        for name, table in rows.tables.items():  # texts of exactly these rows: used as given
            if name in rows.texts:
                assert rows.texts[name].csv["id"].equals(table["id"])
                assert len(rows.texts[name].json) == table.num_rows
        options = {
            "user_id": user_id,
            "exported_at": EXPORTED_AT,
            "audit_rows": [],
            "texts": None,
            "live_counts": None,
        }
        alone = render_gdpr_bundle(per_user[user_id], **options)
        assert (
            render_gdpr_bundle(
                rows.tables,
                row_texts=rows.texts,
                dangling_references=rows.dangling_references,
                **options,
            )
            == alone
        )


TEXT = st.text(alphabet=st.sampled_from(list("=+-@'\t\r\n\",aé ")), max_size=6)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(st.none(), TEXT), min_size=1, max_size=8))
def test_the_excel_copy_is_exactly_what_the_excel_renderer_writes(values):
    rows = [
        {"id": f"s{i:03d}", "userId": "u", "key": v or "", "value": v, "updatedAt": EXPORTED_AT}
        for i, v in enumerate(values)
    ]
    table = pa.Table.from_pylist(rows, schema=schema.APP_ARROW_SCHEMAS["UserSetting"])
    machine = table_csv(table, "UserSetting")
    assert machine == csv_bytes(table, "machine")
    assert excel_table_csv(table, "UserSetting", machine) == csv_bytes(table, "excel")


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_one_changed_byte_in_any_file_fails_verify_naming_that_file(pure_bundle, name, tmp_path):
    _user, data = pure_bundle
    files = members(data)
    content = bytearray(files[name])
    middle = len(content) // 2
    content[middle] = (content[middle] + 1) % 256 if content[middle] != ord("\n") else ord(" ")
    files[name] = bytes(content)
    path = tmp_path / "tampered.zip"
    path.write_bytes(rezip(files))

    result = CliRunner().invoke(goalport, ["verify", str(path)])

    assert result.exit_code == 1, result.output
    assert result.output.startswith("FAILED")
    named = {line.split(": ", 1)[0] for line in result.output.splitlines()[1:]}
    assert named == {name}, result.output


def test_damaged_zip_data_is_reported_for_the_damaged_member(pure_bundle):
    _user, data = pure_bundle
    raw = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo("data/Progress.csv")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF
    report = verify_bundle(bytes(raw))
    assert report.bad_files == ["data/Progress.csv"], report.lines()


def test_an_unlisted_file_or_a_missing_file_is_named(pure_bundle):
    _user, data = pure_bundle
    files = members(data)
    extra = rezip({**files, "data/extra.csv": b"id\r\n"})
    assert verify_bundle(extra).bad_files == ["data/extra.csv"]
    del files["data/Goal.csv"]
    assert "data/Goal.csv" in verify_bundle(rezip(files)).bad_files


def test_an_incomplete_bundle_does_not_verify(pure_bundle):
    user_id, tables = richest_user(generate_population(4, seed=9, heavy_every=0))
    live = {name: t.num_rows for name, t in tables.items()} | {"DataAuditLog": 0}
    live["Progress"] += 1  # a row the bundle lacks
    data = render_gdpr_bundle(
        tables,
        user_id=user_id,
        exported_at=EXPORTED_AT,
        audit_rows=[],
        texts=None,
        live_counts=live,
    )
    report = verify_bundle(data)
    assert report.bad_files == [layout.MANIFEST]
    assert "Progress" in report.problems[0].message
    readme = members(data)[layout.README].decode()
    assert "incomplete" in readme and "other records about you" in readme


def test_encrypted_bundles_verify_with_the_key_or_passphrase(pure_bundle, tmp_path, monkeypatch):
    _user, data = pure_bundle
    with_passphrase = age.encrypt(data, passphrase="correct horse", work_factor=10)
    assert verify_bundle(with_passphrase, passphrase="correct horse").ok
    assert verify_bundle(with_passphrase, passphrase="wrong").bad_files == [layout.BUNDLE]
    assert verify_bundle(with_passphrase).bad_files == [layout.BUNDLE]

    identity, recipient = age.generate_identity()
    (tmp_path / "key.txt").write_text(identity + "\n")
    (tmp_path / "b.zip.age").write_bytes(age.encrypt(data, recipients=[recipient]))
    result = CliRunner().invoke(
        goalport, ["verify", str(tmp_path / "b.zip.age"), "--identity", str(tmp_path / "key.txt")]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: encrypted bundle (age)")

    (tmp_path / "p.zip.age").write_bytes(with_passphrase)
    monkeypatch.setenv("BUNDLE_PASSPHRASE", "correct horse")
    result = CliRunner().invoke(
        goalport, ["verify", str(tmp_path / "p.zip.age"), "--passphrase-env", "BUNDLE_PASSPHRASE"]
    )
    assert result.exit_code == 0, result.output


def test_texts_come_from_the_configured_file_with_defaults(tmp_path, monkeypatch):
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps({"controller": "Acme Goals GmbH, Berlin"}))
    monkeypatch.setenv(GDPR_TEXTS_ENV, str(texts_file))
    texts = load_gdpr_texts()
    assert texts["controller"] == "Acme Goals GmbH, Berlin"
    assert texts["complaint"] == DEFAULT_GDPR_TEXTS["complaint"]
    texts_file.write_text(json.dumps({"controler": "typo"}))
    with pytest.raises(GdprTextsError, match="unknown key 'controler'"):
        load_gdpr_texts()


# ---------------------------------------------------------------- a rich user, from PostgreSQL


@pytest.mark.slow
def test_rich_users_bundle_passes_frictionless_sha256sum_verify_and_the_schema(
    pg_url, tmp_path, monkeypatch
):
    seed_database(pg_url, 8, seed=21, heavy_every=0)
    database = AppDatabase(url=pg_url)
    engine = database.engine
    user_id, _tables = richest_user(database.extract(database.all_user_ids()).tables)
    with engine.begin() as conn:
        record_audit(
            conn,
            user_id=user_id,
            operation="import",
            operation_type="todoist",
            record_count=3,
            actor=user_id,
            details={"jobId": "imp_1", "sourceApp": "todoist"},
        )
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps({"controller": "Acme Goals GmbH", "rights": ["Ask us."]}))
    monkeypatch.setenv(GDPR_TEXTS_ENV, str(texts_file))
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    out = tmp_path / "out"

    result = CliRunner().invoke(goalport, ["gdpr", "export", user_id, "--out", str(out)])

    assert result.exit_code == 0, result.output
    (bundle_path,) = (out / "gdpr" / user_id).glob("*.zip")
    data = bundle_path.read_bytes()
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)

    checked = subprocess.run(
        ["sha256sum", "--strict", "-c", "manifest-sha256.txt"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": OK") == len(BUNDLE_FILES) - 1

    valid = subprocess.run(
        [FRICTIONLESS, "validate", "data/datapackage.json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert valid.returncode == 0, valid.stdout + valid.stderr

    result = CliRunner().invoke(goalport, ["verify", str(bundle_path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK:") and "validates against" in result.output

    published = json.loads(EXPORT_JSON_SCHEMA_PATH.read_text(encoding="utf-8"))
    document = json.loads((folder / layout.DATA_JSON).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(published).validate(document)
    assert (folder / layout.EXPORT_SCHEMA_FILE).read_bytes() == EXPORT_JSON_SCHEMA_PATH.read_bytes()

    manifest = json.loads((folder / layout.MANIFEST).read_text())
    with engine.connect() as conn:
        for table in schema.APP_TABLES:
            owner = table.c.id if table.name == "User" else table.c.userId
            live = conn.execute(sa.select(sa.func.count()).where(owner == user_id)).scalar()
            assert manifest["completeness"]["tables"][table.name] == {
                "exported": live,
                "live": live,
                "matches": True,
            }
            assert (
                live
                == read_table_csv(
                    (folder / f"data/{table.name}.csv").read_bytes(), table.name
                ).num_rows
            )
            excel = read_table_csv(
                (folder / f"data/excel/{table.name}.csv").read_bytes(), table.name, excel=True
            )
            assert excel.equals(
                read_table_csv((folder / f"data/{table.name}.csv").read_bytes(), table.name)
            )
    assert manifest["completeness"]["complete"]
    assert {i["what"].split(" ")[0] for i in manifest["completeness"]["notIncluded"]} >= {
        "UserKey.wrappedIdentity"
    }

    audit = json.loads((folder / layout.AUDIT_JSON).read_text())
    assert [e["operation"] for e in audit["entries"]] == ["import"]
    readme = (folder / layout.README).read_text(encoding="utf-8")
    assert "Acme Goals GmbH" in readme and "Ask us." in readme
    assert "<svg" in readme and "<script" not in readme
    for heading in (
        "Recipients",
        "How long it is kept",
        "Where to complain",
        "Where it comes from",
    ):
        assert heading in readme
    for name in TABLE_NAMES:
        assert f"data/{name}.csv" in readme

    with engine.connect() as conn:
        logged = conn.execute(
            sa.select(schema.data_audit_log).where(
                schema.data_audit_log.c.userId == user_id,
                schema.data_audit_log.c.operationType == "gdpr",
            )
        ).one()
    assert json.loads(logged.details)["checksum"] == "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- bulk: buckets and isolation


ID = re.compile(rb"\bc[0-9a-z]{24}\b")


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.slow
@given(n_users=st.integers(min_value=2, max_value=7), seed=st.integers(min_value=0, max_value=500))
def test_each_bundle_of_a_bucket_holds_only_its_users_ids(pg_url, tmp_path_factory, n_users, seed):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        names = ", ".join(f'"{t.name}"' for t in schema.metadata.sorted_tables)
        conn.execute(sa.text(f"TRUNCATE {names} CASCADE"))
    tables = generate_population(n_users, seed=seed, heavy_every=0)
    load_population(engine, tables)
    engine.dispose()
    owner_of: dict[bytes, str] = {}
    for name, table in tables.items():
        owners = table["id" if name == "User" else "userId"].to_pylist()
        for row_id, owner in zip(table["id"].to_pylist(), owners, strict=True):
            owner_of[row_id.encode()] = owner
    users = tables["User"]["id"].to_pylist()
    buckets = 2
    bucket = user_bucket(users[0], buckets)
    database = AppDatabase(url=pg_url)
    storage = ObjectStorage(url=str(tmp_path_factory.mktemp("bulk")))

    chosen = bucket_user_ids(database.engine, bucket, buckets)
    with GdprBundleExporter(database, storage, workers=1, max_rows_per_chunk=500) as exporter:
        result = exporter.export(chosen)

    assert sorted(b.user_id for b in result.bundles) == sorted(chosen)
    assert not result.incomplete_user_ids
    for bundle in result.bundles:
        others = [u.encode() for u in users if u != bundle.user_id]
        for name, content in members(storage.read_bytes(bundle.stored.key)).items():
            foreign = {
                i for i in ID.findall(content) if owner_of.get(i, bundle.user_id) != bundle.user_id
            }
            assert not foreign, f"{bundle.user_id}'s {name} holds other users' ids {foreign}"
            assert not [o for o in others if o in content], name


@pytest.mark.slow
def test_buckets_agree_in_sql_and_python_and_the_bulk_asset_writes_a_bucket(pg_url, tmp_path):
    seed_database(pg_url, 24, seed=8, heavy_every=0)
    database = AppDatabase(url=pg_url)
    everyone = database.all_user_ids()
    in_sql = [bucket_user_ids(database.engine, b, 4) for b in range(4)]
    assert sorted(u for bucket in in_sql for u in bucket) == everyone
    for bucket, users in enumerate(in_sql):
        assert users == sorted(u for u in everyone if user_bucket(u, 4) == bucket)
    partition = max(range(64), key=lambda b: len(bucket_user_ids(database.engine, b)))
    users = bucket_user_ids(database.engine, partition)
    assert len(users) >= 2  # so that the chunks go to worker processes
    storage = ObjectStorage(url=str(tmp_path))
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [gdpr_bundles],
            partition_key=f"{partition:02d}",
            resources={"database": database, "storage": storage},
            run_config=dg.RunConfig(
                ops={"gdpr_bundles": GdprBulkConfig(workers=2, max_rows_per_chunk=1)}
            ),
            instance=instance,
        )
    assert result.success
    metadata = result.asset_materializations_for_node("gdpr_bundles")[0].metadata
    assert metadata["bundles"].value == len(users) and metadata["chunks"].value == len(users)
    # the run's record names no user: erasing one must not take the bucket's run with it
    recorded = repr({name: value.value for name, value in metadata.items()})
    assert not [u for u in users if u in recorded]
    keys = storage.list("gdpr")
    assert sorted(k.split("/")[1] for k in keys) == sorted(users)
    for key in keys:
        assert verify_bundle(storage.read_bytes(key)).ok


@pytest.mark.slow
def test_export_all_writes_every_users_bundle_to_s3(pg_url, s3_url, monkeypatch):
    seed_database(pg_url, 5, seed=31, heavy_every=0)
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)

    result = CliRunner().invoke(
        goalport, ["gdpr", "export", "--all", "--out", s3_url, "--workers", "2"]
    )

    assert result.exit_code == 0, result.output
    storage = ObjectStorage(url=s3_url)
    keys = storage.list("gdpr")
    assert sorted(k.split("/")[1] for k in keys) == AppDatabase(url=pg_url).all_user_ids()
    assert verify_bundle(storage.read_bytes(keys[0])).ok
    result = CliRunner().invoke(goalport, ["gdpr", "export", "--all", "someone"])
    assert result.exit_code == 1 and "not both" in result.output
