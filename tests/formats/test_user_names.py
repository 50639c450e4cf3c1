"""The user's name is the app's first and last name, everywhere: the migration splits the
old single `name`, every format writes both, and exports made before (one `name`) still
import, split the same way."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import openpyxl
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from assets.formats.common import full_name, split_full_name
from assets.formats.registry import FORMATS, READABLE_FORMATS, reader_of
from migrations import downgrade, upgrade
from resources.schema import APP_ARROW_SCHEMAS, APP_TABLE_NAMES

UID = "u-names"
AT = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
OLD_NAMES = {
    "u1": "José García",
    "u2": "Nguyễn Thị Minh Khai",
    "u3": "李小龙",
    "u4": "  Zoë \t Brontë  ",
    "u5": "   ",
    "u6": None,
}
SPLIT = {
    "u1": ("José", "García"),
    "u2": ("Nguyễn", "Thị Minh Khai"),
    "u3": ("李小龙", None),
    "u4": ("Zoë", "Brontë"),
    "u5": (None, None),
    "u6": (None, None),
}


def test_split_rule_is_first_word_and_the_rest():
    for user_id, name in OLD_NAMES.items():
        assert split_full_name(name) == SPLIT[user_id]
    assert full_name("Zoë", "Brontë") == "Zoë Brontë"
    assert full_name("李小龙", None) == "李小龙"
    assert full_name(None, " ") is None


def test_migration_splits_existing_names_and_joins_them_on_downgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'names.db'}"
    upgrade(url, "0002_foreign_key_indexes")
    engine = sa.create_engine(url)
    try:
        users = sa.table(
            "User", *(sa.column(c) for c in ("id", "email", "name", "createdAt", "updatedAt"))
        )
        with engine.begin() as conn:
            conn.execute(
                users.insert(),
                [
                    {
                        "id": u,
                        "email": f"{u}@example.test",
                        "name": n,
                        "createdAt": AT,
                        "updatedAt": AT,
                    }
                    for u, n in OLD_NAMES.items()
                ],
            )
        upgrade(url, "0007_user_names")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("User")}
            rows = conn.execute(sa.text('SELECT id, "firstName", "lastName" FROM "User"')).all()
        assert "name" not in columns and {"firstName", "lastName"} <= columns
        assert {r.id: (r.firstName, r.lastName) for r in rows} == SPLIT
        downgrade(url, "0002_foreign_key_indexes")
        with engine.connect() as conn:
            back = dict(conn.execute(sa.text('SELECT id, name FROM "User"')).all())
        assert back == {
            "u1": "José García",
            "u2": "Nguyễn Thị Minh Khai",
            "u3": "李小龙",
            "u4": "Zoë Brontë",
            "u5": None,
            "u6": None,
        }
    finally:
        engine.dispose()


def _tables(first: str | None, last: str | None) -> dict[str, pa.Table]:
    user = {
        "id": UID,
        "email": "jose@example.test",
        "firstName": first,
        "lastName": last,
        "timezone": "Europe/Madrid",
        "createdAt": AT,
        "updatedAt": AT,
    }
    goal = {
        "id": "g1",
        "userId": UID,
        "title": "Run",
        "priority": 3,
        "isCompleted": False,
        "createdAt": AT,
        "updatedAt": AT,
    }
    rows = {"User": [user], "Goal": [goal]}
    return {
        name: pa.Table.from_pylist(
            [{f.name: r.get(f.name) for f in APP_ARROW_SCHEMAS[name]} for r in rows.get(name, [])],
            schema=APP_ARROW_SCHEMAS[name],
        )
        for name in APP_TABLE_NAMES
    }


@pytest.mark.parametrize("fmt", READABLE_FORMATS)
def test_every_format_carries_first_and_last_name(fmt):
    tables = _tables("José", "García Márquez")
    back = reader_of(fmt)(FORMATS[fmt].render(tables, user_id=UID, exported_at=AT))
    assert back["User"].select(["id", "email", "firstName", "lastName"]).to_pylist() == [
        {"id": UID, "email": "jose@example.test", "firstName": "José", "lastName": "García Márquez"}
    ]


# ---------------------------------------------------------------- old exports (one `name`)


def _rewrite_zip(data: bytes, member: str, content: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as target:
        for info in source.infolist():
            target.writestr(info, content if info.filename == member else source.read(info))
    return sink.getvalue()


def _legacy_user_table(new: pa.Table, name: str | None) -> pa.Table:
    at = new.schema.get_field_index("firstName")
    table = new.drop_columns(["firstName", "lastName"])
    return table.add_column(at, pa.field("name", pa.string()), pa.array([name], pa.string()))


def _old_json(data: bytes, name: str | None) -> bytes:
    document = orjson.loads(data)
    user = document["user"]
    document["user"] = {
        ("name" if k == "firstName" else k): (name if k == "firstName" else v)
        for k, v in user.items()
        if k != "lastName"
    }
    return orjson.dumps(document)


def _old_csv(data: bytes, name: str | None) -> bytes:
    raw = zipfile.ZipFile(io.BytesIO(data)).read("User.csv")
    bom = b"\xef\xbb\xbf" if raw.startswith(b"\xef\xbb\xbf") else b""
    text = pcsv.read_csv(
        io.BytesIO(raw[len(bom) :]),
        convert_options=pcsv.ConvertOptions(
            column_types={n: pa.string() for n in APP_ARROW_SCHEMAS["User"].names}
        ),
    )
    sink = io.BytesIO()
    pcsv.write_csv(_legacy_user_table(text, name), sink)
    return _rewrite_zip(data, "User.csv", bom + sink.getvalue())


def _old_parquet(data: bytes, name: str | None) -> bytes:
    table = pq.read_table(pa.BufferReader(zipfile.ZipFile(io.BytesIO(data)).read("User.parquet")))
    sink = io.BytesIO()
    pq.write_table(_legacy_user_table(table, name), sink)
    return _rewrite_zip(data, "User.parquet", sink.getvalue())


def _old_xlsx(data: bytes, name: str | None) -> bytes:
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book["User"]
    header = [c.value for c in sheet[1]]
    first = header.index("firstName") + 1
    sheet.cell(1, first, "name")
    sheet.cell(2, first).value = name
    sheet.delete_cols(header.index("lastName") + 1)
    sink = io.BytesIO()
    book.save(sink)
    return sink.getvalue()


OLD_SHAPES = {
    "json": _old_json,
    "csv": _old_csv,
    "csv-machine": _old_csv,
    "parquet": _old_parquet,
    "xlsx": _old_xlsx,
}


@pytest.mark.parametrize("fmt", sorted(OLD_SHAPES))
@pytest.mark.parametrize(
    ("old_name", "first", "last"),
    [
        ("José García Márquez", "José", "García Márquez"),
        ("李小龙", "李小龙", None),
        (None, None, None),
    ],
)
def test_an_export_made_before_first_and_last_name_still_imports(fmt, old_name, first, last):
    expected = _tables(first, last)
    current = FORMATS[fmt].render(_tables("placeholder", "value"), user_id=UID, exported_at=AT)
    old = OLD_SHAPES[fmt](current, old_name)
    assert b"placeholder" not in old or fmt == "xlsx"  # xlsx: shared strings may linger
    back = reader_of(fmt)(old)
    for table_name in APP_TABLE_NAMES:
        assert back[table_name].equals(expected[table_name]), (fmt, table_name)


def test_covers_every_readable_format():
    assert set(OLD_SHAPES) >= set(READABLE_FORMATS) - {"xml"}  # test_xml_format.py


@pytest.mark.parametrize("fmt", ["json", "csv", "xlsx", "parquet"])
def test_an_old_export_goes_through_import_detection(fmt):
    from assets.imports.detect import detect_import

    current = FORMATS[fmt].render(_tables("placeholder", "value"), user_id=UID, exported_at=AT)
    found = detect_import(OLD_SHAPES[fmt](current, "Ana María Pérez"), file_name="old-export")
    assert found.source_app == "goalport"
    assert found.tables["User"].select(["firstName", "lastName"]).to_pylist() == [
        {"firstName": "Ana", "lastName": "María Pérez"}
    ]
