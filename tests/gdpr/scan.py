"""A search for what remains of a user, for erasure tests: every row of every table, every
file below every storage root given (names and bytes, temporary files of interrupted writes
and empty folders named after them included, and the members of zip archives opened), and
every record of a Dagster instance (`scan_dagster`), for each needle (user id, e-mail, a
text of theirs). It trusts nothing of goalport's: tables are reflected, files are found
with fsspec directly (not through `ObjectStorage.list`, which hides temporary files).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from resources.storage import ObjectStorage


def _needle_condition(conn: sa.Connection, column: sa.ColumnElement, needle: str):
    text = sa.cast(column, sa.Text)
    if conn.dialect.name == "postgresql":
        return sa.func.strpos(text, needle) > 0
    return sa.func.instr(text, needle) > 0


def scan_tables(
    engine: sa.Engine, needles: Sequence[str], *, skip: Iterable[tuple[str, str]] = ()
) -> list[str]:
    """`table.column: needle` for every column of every table holding a needle; `skip`
    leaves out (table, row id) pairs (e.g. an erasure request still running)."""
    skipped = set(skip)
    found = []
    reflected = sa.MetaData()
    reflected.reflect(bind=engine)
    with engine.connect() as conn:
        for table in reflected.sorted_tables:
            if table.name == "alembic_version":
                continue
            for column in table.columns:
                if isinstance(column.type, sa.LargeBinary):
                    continue
                for needle in needles:
                    query = sa.select(*table.primary_key.columns).where(
                        _needle_condition(conn, column, needle)
                    )
                    for row in conn.execute(query):
                        if (table.name, str(row[0])) not in skipped:
                            found.append(f"{table.name}.{column.name}: {needle!r}")
    return sorted(set(found))


def _contents(name: str, data: bytes) -> Iterable[tuple[str, bytes]]:
    yield name, data
    if data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for member in archive.namelist():
                    yield from _contents(f"{name}!{member}", archive.read(member))
        except zipfile.BadZipFile:
            return


def scan_storage(
    places: Iterable[ObjectStorage | str], needles: Sequence[str], *, folders: bool = True
) -> list[str]:
    """`path: needle` for every file below each storage root whose path or content (zip
    members opened) holds a needle. With `folders` (the default: deleting a user's files
    removes their folders), folders named after a needle count too."""
    found = []
    for place in places:
        storage = place if isinstance(place, ObjectStorage) else ObjectStorage(url=place)
        fs, root = storage.fs, storage.root
        try:
            entries = fs.find(root, withdirs=folders, detail=True)
        except FileNotFoundError:
            continue
        for path, info in entries.items():
            relative = path.split("://", 1)[-1]
            if info.get("type") == "directory":
                found += [f"{relative}/: {n!r}" for n in needles if n in relative]
                continue
            for name, data in _contents(relative, fs.cat_file(path)):
                hits = [n for n in needles if n in name or n.encode() in data]
                found += [f"{name}: {n!r}" for n in hits]
    return sorted(set(found))


def scan_dagster(instance: dg.DagsterInstance, needles: Sequence[str]) -> list[str]:
    """`record kind: needle` for every record of the Dagster instance holding a needle: each
    run's config and tags (run keys included), every event of its log (materializations,
    asset check evaluations, step failures, log lines), the assets' latest
    materializations, every sensor and schedule's state (its cursor) and ticks, and every
    file below the instance's folder (its SQLite databases, captured compute logs)."""
    found: list[str] = []

    def search(kind: str, text: str) -> None:
        found.extend(f"{kind}: {n!r}" for n in needles if n in text)

    for record in instance.get_run_records():
        run = record.dagster_run
        search("run config", json.dumps(run.run_config, default=str))
        search("run tags (incl. run keys)", json.dumps(dict(run.tags)))
        for entry in instance.all_logs(run.run_id):
            search(f"event log ({entry.dagster_event_type})", dg.serialize_value(entry))
    for key in instance.get_asset_keys():
        event = instance.get_latest_materialization_event(key)
        search("latest materialization", dg.serialize_value(event))
    for state in instance.all_instigator_state():
        search(f"{state.name} state (cursor)", dg.serialize_value(state))
        for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id):
            search(f"{state.name} tick", dg.serialize_value(tick))
    for path in Path(instance.root_directory).rglob("*"):
        if path.is_file():
            search(f"instance file {path.name}", path.read_bytes().decode("latin-1"))
    return sorted(set(found))


def scan_everywhere(
    engine: sa.Engine,
    places: Iterable[ObjectStorage | str],
    needles: Sequence[str],
    *,
    folders: bool = True,
    dagster: dg.DagsterInstance | None = None,
) -> list[str]:
    """Everything `scan_tables`, `scan_storage` and (given an instance) `scan_dagster`
    find; empty when nothing remains."""
    found = scan_tables(engine, needles) + scan_storage(places, needles, folders=folders)
    return found + (scan_dagster(dagster, needles) if dagster is not None else [])


def personal_needles(engine: sa.Engine, user_id: str, marker_text: str) -> list[str]:
    """The user id, their e-mail address and `marker_text` (a text only they wrote)."""
    from resources import schema

    with engine.connect() as conn:
        email = conn.execute(
            sa.select(schema.user.c.email).where(schema.user.c.id == user_id)
        ).scalar_one()
    return [user_id, email, marker_text]
