"""`in_ids` on real databases: ids as hostile as a file's (quotes, backslashes, braces,
commas, JSON and array syntax, any script) select exactly their rows, on PostgreSQL in one
statement however many ids, and on SQLite in batches."""

import datetime as dt

import pytest
import sqlalchemy as sa

from assets.imports.bulk_sql import in_ids
from resources import schema
from resources.database import AppDatabase

HOSTILE_IDS = [
    'a"b',
    "back\\slash",
    "{1,2}",
    "a,b",
    '["x"]',
    "NULL",
    "",
    " padded ",
    "東京😀",
    "two\nlines",
    "\\u0041",
    "x" * 5000,
]


def _refs(ids: list[str]) -> list[dict]:
    now = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    return [
        {
            "id": i,
            "userId": "u1",
            "sourceApp": "todoist",
            "externalId": f"e{n}",
            "tableName": "Goal",
            "localId": f"l{n}",
            "extra": None,
            "createdAt": now,
            "updatedAt": now,
        }
        for n, i in enumerate(ids)
    ]


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_in_ids_selects_exactly_the_rows_with_those_ids(backend, pg_url, sqlite_url):
    database = AppDatabase(url=pg_url if backend == "postgresql" else sqlite_url)
    ref = schema.external_ref
    others = [f"other-{n}" for n in range(3_000)] + ["a", "b", "back", 'A"B']
    wanted = HOSTILE_IDS + [f"many-{n}" for n in range(3_000)]
    with database.engine.begin() as conn:
        conn.execute(ref.insert(), _refs(others + wanted))
    with database.engine.connect() as conn:
        clauses = list(in_ids(conn, ref.c.id, wanted + ["absent", 'absent"too']))
        found = [
            row_id
            for clause in clauses
            for row_id in conn.execute(sa.select(ref.c.id).where(clause)).scalars()
        ]
    assert sorted(found) == sorted(wanted)
    assert len(clauses) == (1 if backend == "postgresql" else 7)
    database.engine.dispose()
