"""`goalport export` leaves an audit row per file, as the request path does, so a user's
processing record is complete; and the CSV it writes for people is the spreadsheet-safe
flavour, while `csv-machine` says in its data package what it is for."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from pipelines.cli.main import main
from resources import schema
from synthetic.seed import seed_database


def test_cli_export_is_audited_and_csv_is_spreadsheet_safe(pg_url, tmp_path, monkeypatch):
    seed_database(pg_url, 2, seed=11, heavy_every=0)
    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    monkeypatch.setenv("GOALPORT_STORAGE_URL", str(tmp_path / "store"))
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            user, other = conn.execute(sa.select(schema.user.c.id).order_by("id")).scalars()
        done = CliRunner().invoke(
            main, ["export", user, "--format", "csv,csv-machine,xml", "--modules", "fitness"]
        )
        assert done.exit_code == 0, done.output
        lines = [line.split("\t") for line in done.stdout.strip().splitlines()]
        files = {fmt: Path(url.removeprefix("file://")) for _, fmt, _, url in lines}
        assert sorted(files) == ["csv", "csv-machine", "xml"]

        log = schema.data_audit_log
        with engine.connect() as conn:
            rows = conn.execute(sa.select(log).where(log.c.userId == user)).mappings().all()
            others = conn.execute(sa.select(log).where(log.c.userId == other)).all()
        exports = [r for r in rows if r["operation"] == "export"]
        assert others == []
        assert len(exports) == 3
        for row in exports:
            details = json.loads(row["details"])
            path = files[details["format"]]
            assert details["checksum"] == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
            assert details["fileSizeBytes"] == path.stat().st_size
            assert details["filters"] == {"modules": ["fitness"]}
            assert row["actor"] == "cli" and row["operationType"] == "selective"
            assert row["subjectRef"] and row["recordCount"] >= 1

        people = zipfile.ZipFile(io.BytesIO(files["csv"].read_bytes()))
        machine = zipfile.ZipFile(io.BytesIO(files["csv-machine"].read_bytes()))
        assert people.read("Goal.csv").startswith(b"\xef\xbb\xbf")
        assert not machine.read("Goal.csv").startswith(b"\xef\xbb\xbf")
        described = json.loads(machine.read("datapackage.json"))
        assert described["goalport"]["csvFlavour"] == "machine"
        assert "Not for spreadsheets" in described["description"]
        assert json.loads(people.read("datapackage.json"))["goalport"]["csvFlavour"] == "excel"
    finally:
        engine.dispose()
