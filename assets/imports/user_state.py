"""The user's data as an import sees it: their rows, their ExternalRefs, and a fingerprint.

The preview diffs the file against this state and records its fingerprint on the job; the
apply recomputes the fingerprint inside its own transaction and refuses when it differs,
so a plan is only ever applied to the very rows it was computed from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from assets.imports.bulk_sql import in_ids
from assets.imports.jobs import ImportJobError
from assets.imports.staging import StagedImport
from resources import schema
from resources.database import AppDatabase


@dataclass
class UserState:
    """The user's rows now (app tables and ExternalRefs) and their fingerprint."""

    tables: dict[str, pa.Table]
    refs: pa.Table
    fingerprint: str
    user_exists: bool


def fingerprint_user_data(conn: sa.Connection, user_id: str) -> str:
    """A hash of every row the user has (app tables and ExternalRefs), computed in the
    caller's transaction: equal fingerprints mean the same rows and values."""
    tables = [*schema.APP_TABLES, schema.external_ref]
    digest = hashlib.sha256()
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET LOCAL TimeZone = 'UTC'"))
        parts = []
        for table in tables:
            owner_name = schema.owner_column(table.name)
            # each row hashed from its values (no text form to build, no sort: 4x faster
            # than an md5 of the rows' text), the 64-bit hashes added up
            parts.append(
                f"SELECT '{table.name}' AS t, count(*) AS n, "
                f"coalesce(sum(hash_record_extended(x, 0)::numeric), 0)::text AS h "
                f'FROM "{table.name}" x WHERE x."{owner_name}" = :u'
            )
        for name, count, hashed in conn.execute(sa.text(" UNION ALL ".join(parts)), {"u": user_id}):
            digest.update(f"{name}:{count}:{hashed};".encode())
        return digest.hexdigest()
    for table in tables:
        owned = table.c[schema.owner_column(table.name)] == user_id
        rows = conn.execute(sa.select(table).where(owned).order_by(table.c.id))
        count = 0
        for row in rows:
            digest.update(repr(tuple(row)).encode())
            count += 1
        digest.update(f"{table.name}:{count};".encode())
    return digest.hexdigest()


def current_fingerprint(engine: sa.Engine, user_id: str) -> str:
    """`fingerprint_user_data` in a transaction of its own."""
    with engine.begin() as conn:
        return fingerprint_user_data(conn, user_id)


def load_user_state(database: AppDatabase, user_id: str) -> UserState:
    """The user's data as the preview sees it; the fingerprint is taken before and after
    reading, and the read repeated if the data moved meanwhile."""
    engine = database.engine
    for _ in range(5):
        before = current_fingerprint(engine, user_id)
        tables = {
            name: t for name, t in database.extract([user_id]).per_user().get(user_id, {}).items()
        } or schema.empty_app_tables()
        refs = _read_refs(engine, user_id)
        if current_fingerprint(engine, user_id) == before:
            exists = tables["User"].num_rows > 0
            return UserState(tables, refs, before, exists)
    raise ImportJobError(f"user {user_id}'s data keeps changing; try the import again later")


def _read_refs(engine_or_conn, user_id: str) -> pa.Table:
    ref = schema.external_ref
    query = sa.select(ref).where(ref.c.userId == user_id)
    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.connect() as conn:
            rows = conn.execute(query).fetchall()
    else:
        rows = engine_or_conn.execute(query).fetchall()
    return schema.rows_to_arrow(ref, rows)


def ids_owned_by_others(
    conn: sa.Connection, staged: StagedImport
) -> tuple[dict[str, pa.Array], list[str]]:
    """Staged ids that exist for another user, per table; e-mails other accounts use."""
    found: dict[str, pa.Array] = {}
    user_id = staged.user_id
    for name, table in staged.tables.items():
        if name == "User" or table.num_rows == 0:
            continue
        t = schema.metadata.tables[name]
        ids = table["id"].to_pylist()
        hits: list[str] = []
        for clause in in_ids(conn, t.c.id, ids):
            hits += [
                r[0] for r in conn.execute(sa.select(t.c.id).where(clause, t.c.userId != user_id))
            ]
        if hits:
            found[name] = pa.array(hits, pa.string())
    emails: list[str] = []
    users = staged.tables["User"]
    if users.num_rows:
        wanted = [e for e in users["email"].to_pylist() if e]
        emails = [
            r[0]
            for r in conn.execute(
                sa.select(schema.user.c.email).where(
                    schema.user.c.email.in_(wanted), schema.user.c.id != user_id
                )
            )
        ]
    return found, emails


def read_rows_by_id(conn: sa.Connection, table: sa.Table, ids: list[str]) -> pa.Table:
    """The rows of `table` with these ids, whoever they belong to, as Arrow."""
    rows: list[sa.Row[Any]] = []
    for clause in in_ids(conn, table.c.id, ids):
        rows += conn.execute(sa.select(table).where(clause)).fetchall()
    return schema.rows_to_arrow(table, rows)
