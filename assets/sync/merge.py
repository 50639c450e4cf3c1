"""A device's push: its changes merged into the user's rows in ONE transaction.

Each change is `(changeId, table, id, op, baseVersion, fields)`: the device changed
`fields` of a row it last saw at `baseVersion` (None: it made the row), or deleted it.

- **The same version** as the server's: the fields are written (`applied`).
- **A newer server version**: a field-level three-way merge against the row's image at the
  base version (`SyncRowHistory`). Fields only the device changed are written; fields only
  the server changed stay; a field both changed to different values is a conflict, which
  the user's sync policy decides (the import conflict policies, `assets.imports.plan.
  POLICIES`, read from their UserSetting `syncConflictPolicy`; default `fail`). Under
  `fail` nothing of that change is written and the device gets `conflict` with the
  server's row; otherwise the result is `merged`, with the losing values listed. Without
  the base image (past the horizon) every field the device changed that differs from the
  server's is taken as changed on both sides.
- **A deletion wins over an edit**, either way round. An edit of a row deleted on the
  server is a `conflict` with `reason` "deleted" and `row` null: the device deletes its
  copy (a goal's sub-goals went with it on the server too). A device's delete of a row the
  server changed since is applied all the same (`merged`: the device had not seen the
  server's edit); the device that edited learns of it from the tombstone. A device deletes
  the rows below a deleted one on its side, so anything else would leave the two sides
  with different trees.
- A row that breaks a data-quality rule, refers to a row the user does not own, or uses an
  id of someone else's row is `rejected` with the rule and field; nothing of it is written.

Idempotent by `(deviceId, changeId)`: what a change got is stored (`SyncPushReceipt`) in
the same transaction, and a retried change gets the stored answer and applies nothing.
Every row written (cascades included) is journalled as an import's change
(`assets.imports.apply.record_row_changes`) under one `applied` DataImportJob per push
(`sourceApp` "sync"), so `goalport import undo` / the imports API can inspect and undo it.
The user's sync lock is held throughout (`changelog.lock_user`), and the erasure fence is
checked: an erased user's device writes nothing.

**Round trips.** The rows, versions, tombstones and base images a push needs are read
first, one query per table; references are judged against ids read the same way; each
change is then one write, and versions, receipts and the journal are gathered at the end.
Only when the database refuses a write (a unique setting key, say) is the push run again
with a savepoint around each change, so that the refused one alone is rolled back.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from assets.imports.apply import record_row_changes
from assets.imports.bulk_sql import in_ids
from assets.imports.jobs import record_applied_job
from assets.imports.plan import POLICIES
from assets.imports.row_json import rows_as_json
from assets.imports.staging import REFERENCES_FROM, REFERENCES_TO
from assets.sync import changelog
from assets.sync.devices import record_cursor, use_device
from assets.sync.rows import (
    SYNC_TABLES,
    FieldError,
    app_table,
    encode_row,
    encode_value,
    image_values,
    parse_fields,
    stored_row,
)
from assets.sync.validate import RowRefusedError, RowValidator
from resources import schema
from resources.audit import UserErasedError, new_id, record_audit, utc_now
from resources.erasure_fence import fence_users

POLICY_SETTING = "syncConflictPolicy"
DEFAULT_POLICY = "fail"
MAX_CHANGES = 1000
SYNC_SOURCE = "sync"


@dataclass(frozen=True)
class PushedChange:
    change_id: str
    table: str
    id: str
    op: str  # upsert, delete
    base_version: int | None
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class PushResult:
    results: list[dict[str, Any]]
    cursor: changelog.Cursor
    job_id: str | None  # the import job journalling what was written, if anything was
    seconds: float


class _Refused(Exception):
    def __init__(self, rule: str, field: str | None, message: str):
        super().__init__(message)
        self.rule, self.field, self.message = rule, field, message


def sync_policy(conn: sa.Connection, user_id: str) -> str:
    """The user's sync conflict policy: their UserSetting `syncConflictPolicy` (a JSON
    string), else `fail`."""
    setting = schema.user_setting
    raw = conn.execute(
        sa.select(setting.c.value).where(
            setting.c.userId == user_id, setting.c.key == POLICY_SETTING
        )
    ).scalar()
    try:
        policy = json.loads(raw) if raw else DEFAULT_POLICY
    except ValueError:
        policy = DEFAULT_POLICY
    return policy if policy in POLICIES else DEFAULT_POLICY


def push_changes(
    engine: sa.Engine,
    user_id: str,
    device_id: str,
    changes: list[PushedChange],
    *,
    device_name: str | None = None,
    actor: str | None = None,
) -> PushResult:
    """Apply a device's changes in one transaction (see the module docstring)."""
    started = time.perf_counter()
    if len(changes) > MAX_CHANGES:
        raise ValueError(f"a push takes at most {MAX_CHANGES} changes; send the rest next")
    try:
        result = _push(engine, user_id, device_id, changes, device_name, actor, savepoints=False)
    except _RetryWithSavepoints:
        result = _push(engine, user_id, device_id, changes, device_name, actor, savepoints=True)
    result.seconds = time.perf_counter() - started
    return result


def _push(engine, user_id, device_id, changes, device_name, actor, *, savepoints: bool):
    receipts = schema.sync_push_receipt
    with engine.begin() as conn:
        changelog.lock_user(conn, user_id)
        if fence_users(conn, [user_id]):
            raise UserErasedError("the user was erased; nothing is synced")
        device = use_device(conn, user_id, device_id, device_name)
        stored = {
            r.changeId: json.loads(r.result)
            for r in conn.execute(
                sa.select(receipts.c.changeId, receipts.c.result).where(
                    receipts.c.userId == user_id,
                    receipts.c.deviceId == device_id,
                    receipts.c.changeId.in_([c.change_id for c in changes]),
                )
            )
        }
        fresh = [c for c in changes if c.change_id not in stored]
        merger = _Merger(conn, user_id, sync_policy(conn, user_id), savepoints)
        merger.prefetch(fresh)
        new_results = {}
        for change in fresh:
            if change.change_id not in new_results:  # a change id twice in one push: once
                new_results[change.change_id] = merger.apply(change)
        merger.fill_versions()
        now = utc_now()
        if new_results:
            conn.execute(
                receipts.insert(),
                [
                    {
                        "id": new_id("spr_"),
                        "userId": user_id,
                        "deviceId": device_id,
                        "changeId": change_id,
                        "result": json.dumps(result),
                        "createdAt": now,
                    }
                    for change_id, result in new_results.items()
                ],
            )
        stored.update(new_results)
        job_id = merger.journal(device.id, actor)
        cursor = _cursor_after_push(conn, user_id, device.last_cursor, merger.known)
        if cursor is not None:
            record_cursor(conn, device, cursor.position)
    last = device.last_cursor or 0
    return PushResult(
        [stored[c.change_id] for c in changes],
        cursor or changelog.Cursor(last, last),
        job_id,
        0.0,
    )


def _cursor_after_push(
    conn: sa.Connection, user_id: str, last: int | None, known: dict[tuple[str, str], int | None]
) -> changelog.Cursor | None:
    """The cursor the device may move to: the high-water mark, when every change of the
    user after its last pull is one this push answered with the row; else None (its next
    pull starts where the last ended)."""
    if last is None:
        return None
    entries = changelog.log_entries(conn, user_id, last, 10_001, tombstones_too=True)
    if len(entries) > 10_000:
        return None
    for seq, table, row_id, _op in entries:
        if known.get((table, row_id)) != seq:
            return None
    hwm = changelog.high_water_mark(conn)
    return changelog.Cursor(hwm, hwm)


class _RetryWithSavepoints(Exception):
    """The database refused a write: run the push again, each change in a savepoint."""


Key = tuple[str, str]


class _Merger:
    def __init__(self, conn: sa.Connection, user_id: str, policy: str, savepoints: bool):
        self.conn, self.user_id, self.policy, self.savepoints = conn, user_id, policy, savepoints
        self.validator = RowValidator()
        self.before: dict[Key, dict | None] = {}  # first touch: the row before the push
        self.known: dict[Key, int | None] = {}  # rows the device got back, at that version
        # what the push reads, read up front and kept up to date as it writes
        self.rows: dict[Key, dict | None] = {}  # the user's row, None for none
        self.foreign: set[Key] = set()  # ids of other users' rows
        self.versions: dict[Key, int | None] = {}
        self.dirty: set[Key] = set()  # written by this push: version not yet read
        self.tombstones: dict[Key, int] = {}
        self.images: dict[tuple[str, str, int], str] = {}
        self.owned: dict[str, set[str]] = {}  # ids of the user's rows, per table, as known
        self.pending: list[tuple[dict, Key]] = []  # results whose version is read at the end

    # ------------------------------------------------------------ reading up front

    def prefetch(self, changes: list[PushedChange]) -> None:
        by_table: dict[str, list[str]] = {}
        for change in changes:
            if change.table in SYNC_TABLES:
                by_table.setdefault(change.table, []).append(change.id)
        history = schema.sync_row_history
        tombstones = changelog.tombstones
        wanted_refs: dict[str, set[str]] = {}
        for name, ids in by_table.items():
            ids = list(dict.fromkeys(ids))
            table = app_table(name)
            owner = schema.owner_column(name)
            for row_id in ids:
                self.rows[(name, row_id)] = None
            for clause in in_ids(self.conn, table.c.id, ids):
                for row in self.conn.execute(sa.select(table).where(clause)).mappings():
                    if row[owner] != self.user_id:
                        self.foreign.add((name, row["id"]))
                    else:
                        self.rows[(name, row["id"])] = stored_row(row)
                        self.owned.setdefault(name, set()).add(row["id"])
            for clause in in_ids(self.conn, changelog.changes.c.rowId, ids):
                query = sa.select(changelog.changes.c.rowId, changelog.changes.c.seq).where(
                    changelog.changes.c.tableName == name, clause
                )
                for row_id, seq in self.conn.execute(query):
                    self.versions[(name, row_id)] = seq
            for clause in in_ids(self.conn, tombstones.c.rowId, ids):
                query = (
                    sa.select(tombstones.c.rowId, sa.func.max(tombstones.c.seq))
                    .where(
                        tombstones.c.tableName == name,
                        tombstones.c.userId == self.user_id,  # another's deletes stay theirs
                        clause,
                    )
                    .group_by(tombstones.c.rowId)
                )
                for row_id, seq in self.conn.execute(query):
                    self.tombstones[(name, row_id)] = seq
            bases = {c.base_version for c in changes if c.table == name and c.base_version}
            if bases:
                for row_id, version, image in self.conn.execute(
                    sa.select(history.c.rowId, history.c.version, history.c.image).where(
                        history.c.tableName == name,
                        history.c.userId == self.user_id,
                        history.c.rowId.in_(ids),
                        history.c.version.in_(sorted(bases)),
                    )
                ):
                    self.images[(name, row_id, version)] = image
        for change in changes:
            if change.table not in SYNC_TABLES:
                continue
            current = self.rows.get((change.table, change.id)) or {}
            for ref in REFERENCES_FROM.get(change.table, ()):
                for value in (change.fields.get(ref.column), current.get(ref.column)):
                    if isinstance(value, str):
                        wanted_refs.setdefault(ref.target, set()).add(value)
        for target, ids_wanted in wanted_refs.items():
            table = app_table(target)
            known = self.owned.setdefault(target, set())
            for clause in in_ids(self.conn, table.c.id, sorted(ids_wanted)):
                known.update(
                    self.conn.scalars(
                        sa.select(table.c.id).where(clause, table.c.userId == self.user_id)
                    )
                )

    def _owns(self, table: str, row_id: str) -> bool:
        return row_id in self.owned.get(table, set())

    def version(self, key: Key) -> int | None:
        if key in self.dirty:
            self.versions[key] = changelog.row_version(self.conn, *key)
            self.dirty.discard(key)
        return self.versions.get(key)

    def fill_versions(self) -> None:
        """The versions of the rows this push wrote, read once, into their results."""
        keys = [key for key in self.dirty]
        by_table: dict[str, list[str]] = {}
        for table, row_id in keys:
            by_table.setdefault(table, []).append(row_id)
        for table, ids in by_table.items():
            found: dict[str, int] = {}
            for clause in in_ids(self.conn, changelog.changes.c.rowId, ids):
                found.update(
                    self.conn.execute(
                        sa.select(changelog.changes.c.rowId, changelog.changes.c.seq).where(
                            changelog.changes.c.tableName == table, clause
                        )
                    ).all()
                )
            for row_id in ids:
                self.versions[(table, row_id)] = found.get(row_id)
                if found.get(row_id) is None:
                    self.tombstones[(table, row_id)] = (
                        changelog.deleted_version(self.conn, self.user_id, table, row_id) or 0
                    )
        self.dirty.clear()
        for result, key in self.pending:
            version = self.versions.get(key)
            if version is None:
                version = self.tombstones.get(key)
            result["version"] = version
            if key in self.known:
                self.known[key] = self.versions.get(key)
        self.pending.clear()

    # ------------------------------------------------------------ one change

    def apply(self, change: PushedChange) -> dict[str, Any]:
        if not self.savepoints:
            try:
                return self._refusing(change)
            except sa.exc.IntegrityError as exc:
                raise _RetryWithSavepoints() from exc
        saved = self._state()
        savepoint = self.conn.begin_nested()
        try:
            result = self._refusing(change)
        except sa.exc.IntegrityError as exc:
            savepoint.rollback()
            self._restore(saved)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "refused"
            refused = _Refused("database", None, f"the database refused it: {reason}")
            return self._rejected(change, refused)
        savepoint.commit()
        return result

    def _refusing(self, change: PushedChange) -> dict[str, Any]:
        saved = self._state() if self.savepoints else None
        try:
            return self._apply(change)
        except (_Refused, RowRefusedError, FieldError) as exc:
            if saved is not None:
                self._restore(saved)
            return self._rejected(change, exc)

    def _state(self) -> tuple:
        return (
            dict(self.before),
            dict(self.known),
            dict(self.rows),
            dict(self.versions),
            set(self.dirty),
            {k: set(v) for k, v in self.owned.items()},
            list(self.pending),
        )

    def _restore(self, saved: tuple) -> None:
        (self.before, self.known, self.rows, self.versions, self.dirty, self.owned,
         self.pending) = copy.copy(saved)  # fmt: skip

    def _rejected(self, change: PushedChange, exc) -> dict[str, Any]:
        """The refusal, with the server's row as it stays (null: there is none of the
        user's), so that the device can put its copy back."""
        error = {"rule": exc.rule, "field": exc.field, "message": exc.message}
        key = (change.table, change.id)
        row = self.rows.get(key) if change.table in SYNC_TABLES else None
        if row is None:
            return _result(change, "rejected", error=error, row=None)
        result = _result(change, "rejected", error=error, row=encode_row(row))
        self._answer(result, key)
        return result

    def _answer(self, result: dict, key: Key) -> None:
        """The device gets the row back: its version is filled in at the end."""
        self.known[key] = None
        if key in self.dirty:
            self.pending.append((result, key))
        else:
            result["version"] = self.versions.get(key)
            self.known[key] = self.versions.get(key)

    def _apply(self, change: PushedChange) -> dict[str, Any]:
        if change.table not in SYNC_TABLES:
            raise _Refused("unknown_table", "table", f"no table {change.table[:60]!r} syncs")
        if change.op not in ("upsert", "delete"):
            raise _Refused("unknown_op", "op", "op is upsert or delete")
        table = app_table(change.table)
        owner = schema.owner_column(change.table)
        if change.table == "User" and (change.id != self.user_id or change.op == "delete"):
            raise _Refused("own_user_row", "id", "a device may only update its user's own row")
        fields = parse_fields(table, change.fields) if change.op == "upsert" else {}
        if fields.get("id", change.id) != change.id:
            raise _Refused("id_matches", "id", "fields.id differs from the change's id")
        if fields.get(owner, self.user_id) != self.user_id:
            raise _Refused(f"{owner}_is_caller", owner, "rows belong to the calling user")
        fields.pop("id", None)
        fields.pop(owner, None)
        key = (change.table, change.id)
        if key in self.foreign:
            raise _Refused("id_unique", "id", "this id is taken by another row")
        current = self.rows.get(key)
        if change.op == "delete":
            return self._delete(change, current)
        if current is None:
            return self._create(change, fields)
        return self._update(change, current, fields)

    def _create(self, change: PushedChange, fields: dict) -> dict[str, Any]:
        key = (change.table, change.id)
        deleted = self.tombstones.get(key)
        if change.base_version is not None or deleted is not None:
            return _result(change, "conflict", reason="deleted", version=deleted, row=None)
        table = app_table(change.table)
        row: dict[str, Any] = {c.name: None for c in table.columns}
        row.update(fields)
        row.update({"id": change.id, schema.owner_column(change.table): self.user_id})
        self.validator.check(self.conn, change.table, row, self._owns, fields)
        self._touch(key, None)
        self.conn.execute(table.insert().values(**row))
        self._wrote(key, row)
        self.owned.setdefault(change.table, set()).add(change.id)
        return self._written(change, "applied")

    def _update(self, change: PushedChange, current: dict, fields: dict):
        key = (change.table, change.id)
        version = self.version(key)
        if change.base_version is not None and change.base_version == version:
            return self._write(change, current, fields, "applied")
        base = self._image(change)
        device_changed = {f for f in fields if base is None or fields[f] != base[f]}
        server_changed = {f for f in fields if base is None or current[f] != base[f]}
        both = {f for f in device_changed & server_changed if fields[f] != current[f]}
        take = {f: fields[f] for f in device_changed - both}
        losing: dict[str, Any] = {}
        if both:
            if self.policy == "fail":
                result = _result(
                    change, "conflict", reason="changed", fields=sorted(both),
                    row=encode_row(current),
                )  # fmt: skip
                self._answer(result, key)
                return result
            if self._incoming_wins(fields, current):
                take.update({f: fields[f] for f in both})
                losing = {f: encode_value(current[f]) for f in sorted(both)}
            else:
                losing = {f: encode_value(fields[f]) for f in sorted(both)}
        return self._write(change, current, take, "merged", losing=losing or None)

    def _delete(self, change: PushedChange, current: dict | None) -> dict[str, Any]:
        key = (change.table, change.id)
        if current is None:
            result = _result(change, "applied", version=self.tombstones.get(key))
            return result
        # a deletion wins over an edit, either way round: the rows below it are gone on the
        # device already, and the editing side learns of it from the tombstone
        same = change.base_version is not None and change.base_version == self.version(key)
        gone, nulled = self._touch_cascade(change.table, [change.id])
        table = app_table(change.table)
        self.conn.execute(table.delete().where(table.c.id == change.id))
        for gone_key in gone:
            self._wrote(gone_key, None)
            self.owned.get(gone_key[0], set()).discard(gone_key[1])
        for nulled_key, row in nulled.items():
            self._wrote(nulled_key, row)
        result = _result(change, "applied" if same else "merged")
        self.pending.append((result, key))
        return result

    # ------------------------------------------------------------ helpers

    def _incoming_wins(self, fields: dict, current: dict) -> bool:
        if self.policy == "take-incoming":
            return True
        if self.policy == "newest-wins":
            mine, theirs = fields.get("updatedAt"), current.get("updatedAt")
            return mine is not None and theirs is not None and mine > theirs
        return False

    def _image(self, change: PushedChange) -> dict | None:
        if change.base_version is None:
            return None
        found = self.images.get((change.table, change.id, change.base_version))
        if found is None:  # a version this push made, or one not read up front
            history = schema.sync_row_history
            found = self.conn.execute(
                sa.select(history.c.image).where(
                    history.c.tableName == change.table,
                    history.c.rowId == change.id,
                    history.c.version == change.base_version,
                    history.c.userId == self.user_id,
                )
            ).scalar()
        return image_values(app_table(change.table), found) if found else None

    def _write(self, change, current: dict, take: dict, status: str, **extra) -> dict:
        new = {**current, **take}
        if new != current:
            self.validator.check(self.conn, change.table, new, self._owns, take)
            key = (change.table, change.id)
            self._touch(key, current)
            table = app_table(change.table)
            changed = {k: v for k, v in take.items() if current[k] != v}
            self.conn.execute(table.update().where(table.c.id == change.id).values(**changed))
            self._wrote(key, new)
        return self._written(change, status, **extra)

    def _wrote(self, key: Key, row: dict | None) -> None:
        self.rows[key] = row
        self.dirty.add(key)

    def _written(self, change: PushedChange, status: str, **extra) -> dict[str, Any]:
        key = (change.table, change.id)
        row = self.rows[key]
        result = _result(change, status, row=encode_row(row) if row else None, **extra)
        self._answer(result, key)
        return result

    def _touch(self, key: Key, before: dict | None) -> None:
        self.before.setdefault(key, before)

    def _touch_cascade(self, table: str, ids: list[str]) -> tuple[set[Key], dict[Key, dict]]:
        """The rows a delete takes with it (CASCADE) and those it changes (SET NULL),
        remembered as they were: (keys deleted, rows after)."""
        gone: set[Key] = set()
        nulled: dict[Key, dict] = {}
        for row_id, row in changelog.read_rows(self.conn, table, ids, self.user_id).items():
            self._touch((table, row_id), row)
            gone.add((table, row_id))
        for ref in REFERENCES_TO.get(table, ()):
            child = app_table(ref.table)
            hits = list(
                self.conn.scalars(
                    sa.select(child.c.id).where(
                        child.c[ref.column].in_(ids), child.c.userId == self.user_id
                    )
                )
            )
            if not hits:
                continue
            if ref.on_delete.upper() == "CASCADE":
                more_gone, more_nulled = self._touch_cascade(ref.table, hits)
                gone |= more_gone
                nulled.update(more_nulled)
            else:
                rows = changelog.read_rows(self.conn, ref.table, hits, self.user_id)
                for row_id, row in rows.items():
                    self._touch((ref.table, row_id), row)
                    nulled[(ref.table, row_id)] = {**row, ref.column: None}
        for key in gone:
            nulled.pop(key, None)
        return gone, nulled

    def journal(self, device_row_id: str, actor: str | None) -> str | None:
        """Every row this push wrote, journalled as an import's changes; the job's id."""
        texts = _rows_json(
            {key: (before, self.rows.get(key)) for key, before in self.before.items()}
        )
        entries = []
        for (name, row_id), before in self.before.items():
            before_json, after_json = texts[(name, row_id)]
            if before_json == after_json:
                continue
            after = self.rows.get((name, row_id))
            action = "create" if before is None else "delete" if after is None else "update"
            entries.append((name, row_id, action, before_json, after_json))
        if not entries:
            return None
        job_id = new_id("imp_sync_")
        record_applied_job(
            self.conn,
            job_id=job_id,
            user_id=self.user_id,
            source_app=SYNC_SOURCE,
            file_name=f"sync push from device {device_row_id}",
            conflict_policy=self.policy,
            records=len(entries),
            requested_by=actor,
        )
        record_row_changes(self.conn, job_id, self.user_id, entries)
        record_audit(
            self.conn,
            user_id=self.user_id,
            operation="sync-push",
            operation_type="sync",
            data_types=sorted({e[0] for e in entries}),
            record_count=len(entries),
            actor=actor,
            details={"jobId": job_id, "device": device_row_id},
        )
        return job_id


def _rows_json(pairs: dict[Key, tuple[dict | None, dict | None]]) -> dict[Key, list]:
    """(before, after) of each row as the import journal's JSON (None for no row), written
    one table at a time."""
    texts: dict[Key, list] = {key: [None, None] for key in pairs}
    for side in (0, 1):
        by_table: dict[str, list[tuple[Key, dict]]] = {}
        for key, rows in pairs.items():
            row = rows[side]
            if row is not None:
                by_table.setdefault(key[0], []).append((key, row))
        for name, keyed in by_table.items():
            table = app_table(name)
            arrow = schema.rows_to_arrow(
                table, [tuple(row[c.name] for c in table.columns) for _, row in keyed]
            )
            for (key, _), text in zip(keyed, rows_as_json(arrow), strict=True):
                texts[key][side] = text
    return texts


def _result(change: PushedChange, status: str, **extra) -> dict[str, Any]:
    result: dict[str, Any] = {"changeId": change.change_id, "status": status}
    result.update({k: v for k, v in extra.items() if v is not None or k == "row"})
    return result
