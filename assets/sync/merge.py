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
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from assets.imports.apply import record_row_changes
from assets.imports.jobs import record_applied_job
from assets.imports.plan import POLICIES
from assets.imports.row_json import rows_as_json
from assets.imports.staging import REFERENCES_TO
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
        merger = _Merger(conn, user_id, sync_policy(conn, user_id))
        results = []
        for change in changes:
            if change.change_id in stored:
                results.append(stored[change.change_id])
                continue
            result = merger.apply(change)
            stored[change.change_id] = result
            conn.execute(
                receipts.insert().values(
                    id=new_id("spr_"),
                    userId=user_id,
                    deviceId=device_id,
                    changeId=change.change_id,
                    result=json.dumps(result),
                    createdAt=utc_now(),
                )
            )
            results.append(result)
        job_id = merger.journal(device.id, actor)
        cursor = _cursor_after_push(conn, user_id, device.last_cursor, merger.known)
        if cursor is not None:
            record_cursor(conn, device, cursor.position)
    return PushResult(
        results,
        cursor or changelog.Cursor(device.last_cursor or 0, device.last_cursor or 0),
        job_id,
        time.perf_counter() - started,
    )


def _cursor_after_push(
    conn: sa.Connection, user_id: str, last: int | None, known: dict[tuple[str, str], int | None]
) -> changelog.Cursor | None:
    """The cursor the device may move to: the high-water mark, when every change of the
    user after its last pull is one this push answered with the row; else None (its next
    pull starts where the last ended)."""
    if last is None:
        return None
    entries = changelog._entries(conn, user_id, last, 10_001, tombstones_too=True)
    if len(entries) > 10_000:
        return None
    for seq, table, row_id, _op in entries:
        if known.get((table, row_id)) != seq:
            return None
    hwm = changelog.high_water_mark(conn)
    return changelog.Cursor(hwm, hwm)


class _Merger:
    def __init__(self, conn: sa.Connection, user_id: str, policy: str):
        self.conn, self.user_id, self.policy = conn, user_id, policy
        self.validator = RowValidator()
        self.before: dict[tuple[str, str], dict | None] = {}  # first touch: the row before
        self.known: dict[tuple[str, str], int | None] = {}  # rows the device got back

    # ------------------------------------------------------------ one change

    def apply(self, change: PushedChange) -> dict[str, Any]:
        touched = dict(self.before)
        savepoint = self.conn.begin_nested()
        try:
            result = self._apply(change)
        except (_Refused, RowRefusedError, FieldError) as exc:
            savepoint.rollback()
            self.before = touched
            return self._rejected(change, exc)
        except sa.exc.IntegrityError as exc:
            savepoint.rollback()
            self.before = touched
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "refused"
            refused = _Refused("database", None, f"the database refused it: {reason}")
            return self._rejected(change, refused)
        savepoint.commit()
        return result

    def _rejected(self, change: PushedChange, exc) -> dict[str, Any]:
        """The refusal, with the server's row as it stays (null: there is none of the
        user's), so that the device can put its copy back."""
        error = {"rule": exc.rule, "field": exc.field, "message": exc.message}
        if change.table not in SYNC_TABLES:
            return _result(change, "rejected", error=error, row=None)
        rows = changelog.read_rows(self.conn, change.table, [change.id], self.user_id)
        row = rows.get(change.id)
        if row is None:
            return _result(change, "rejected", error=error, row=None)
        version = changelog.row_version(self.conn, change.table, change.id)
        self.known[(change.table, change.id)] = version
        return _result(change, "rejected", error=error, row=encode_row(row), version=version)

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
        row = self.conn.execute(sa.select(table).where(table.c.id == change.id)).mappings().first()
        if row is not None and row[owner] != self.user_id:
            raise _Refused("id_unique", "id", "this id is taken by another row")
        current = stored_row(row) if row is not None else None
        version = changelog.row_version(self.conn, change.table, change.id)
        if change.op == "delete":
            return self._delete(change, current, version)
        if current is None:
            return self._create(change, fields)
        return self._update(change, current, version, fields)

    def _create(self, change: PushedChange, fields: dict) -> dict[str, Any]:
        deleted = changelog.deleted_version(self.conn, change.table, change.id)
        if change.base_version is not None or deleted is not None:
            return _result(change, "conflict", reason="deleted", version=deleted)
        table = app_table(change.table)
        row: dict[str, Any] = {c.name: None for c in table.columns}
        row.update(fields)
        row.update({"id": change.id, schema.owner_column(change.table): self.user_id})
        self.validator.check(self.conn, change.table, row, self.user_id, fields)
        self._touch(change.table, change.id, None)
        self.conn.execute(table.insert().values(**row))
        return self._written(change, "applied")

    def _update(self, change: PushedChange, current: dict, version, fields: dict):
        if change.base_version is not None and change.base_version == version:
            return self._write(change, current, fields, "applied")
        base = self._image(change, change.base_version)
        device_changed = {f for f in fields if base is None or fields[f] != base[f]}
        server_changed = {f for f in fields if base is None or current[f] != base[f]}
        both = {f for f in device_changed & server_changed if fields[f] != current[f]}
        take = {f: fields[f] for f in device_changed - both}
        losing: dict[str, Any] = {}
        if both:
            if self.policy == "fail":
                self.known[(change.table, change.id)] = version
                return _result(
                    change,
                    "conflict",
                    reason="changed",
                    fields=sorted(both),
                    row=encode_row(current),
                    version=version,
                )
            if self._incoming_wins(fields, current):
                take.update({f: fields[f] for f in both})
                losing = {f: encode_value(current[f]) for f in sorted(both)}
            else:
                losing = {f: encode_value(fields[f]) for f in sorted(both)}
        return self._write(change, current, take, "merged", losing=losing)

    def _delete(self, change: PushedChange, current: dict | None, version) -> dict[str, Any]:
        if current is None:
            deleted = changelog.deleted_version(self.conn, change.table, change.id)
            return _result(change, "applied", version=deleted)
        # a deletion wins over an edit, either way round: the rows below it are gone on the
        # device already, and the editing side learns of it from the tombstone
        same = change.base_version is not None and change.base_version == version
        self._touch_cascade(change.table, [change.id])
        table = app_table(change.table)
        self.conn.execute(table.delete().where(table.c.id == change.id))
        deleted = changelog.deleted_version(self.conn, change.table, change.id)
        return _result(change, "applied" if same else "merged", version=deleted)

    # ------------------------------------------------------------ helpers

    def _incoming_wins(self, fields: dict, current: dict) -> bool:
        if self.policy == "take-incoming":
            return True
        if self.policy == "newest-wins":
            mine, theirs = fields.get("updatedAt"), current.get("updatedAt")
            return mine is not None and theirs is not None and mine > theirs
        return False

    def _image(self, change: PushedChange, version: int | None) -> dict | None:
        if version is None:
            return None
        history = schema.sync_row_history
        image = self.conn.execute(
            sa.select(history.c.image).where(
                history.c.tableName == change.table,
                history.c.rowId == change.id,
                history.c.version == version,
                history.c.userId == self.user_id,
            )
        ).scalar()
        return image_values(app_table(change.table), image) if image else None

    def _write(self, change, current: dict, take: dict, status: str, **extra) -> dict:
        new = {**current, **take}
        if new != current:
            self.validator.check(self.conn, change.table, new, self.user_id, take)
            self._touch(change.table, change.id, current)
            table = app_table(change.table)
            changed = {k: v for k, v in take.items() if current[k] != v}
            self.conn.execute(table.update().where(table.c.id == change.id).values(**changed))
        return self._written(change, status, **extra)

    def _written(self, change: PushedChange, status: str, **extra) -> dict[str, Any]:
        table = app_table(change.table)
        row = self.conn.execute(sa.select(table).where(table.c.id == change.id)).mappings().one()
        version = changelog.row_version(self.conn, change.table, change.id)
        self.known[(change.table, change.id)] = version
        return _result(change, status, row=encode_row(stored_row(row)), version=version, **extra)

    def _touch(self, table: str, row_id: str, before: dict | None) -> None:
        self.before.setdefault((table, row_id), before)

    def _touch_cascade(self, table: str, ids: list[str]) -> None:
        """Remember the rows a delete takes with it (CASCADE) or changes (SET NULL)."""
        for row_id, row in changelog.read_rows(self.conn, table, ids, self.user_id).items():
            self._touch(table, row_id, row)
        for ref in REFERENCES_TO.get(table, ()):
            child = app_table(ref.table)
            hits = [
                r.id
                for r in self.conn.execute(
                    sa.select(child.c.id).where(
                        child.c[ref.column].in_(ids), child.c.userId == self.user_id
                    )
                )
            ]
            if not hits:
                continue
            if ref.on_delete.upper() == "CASCADE":
                self._touch_cascade(ref.table, hits)
            else:
                for row_id, row in changelog.read_rows(
                    self.conn, ref.table, hits, self.user_id
                ).items():
                    self._touch(ref.table, row_id, row)

    def journal(self, device_row_id: str, actor: str | None) -> str | None:
        """Every row this push wrote, journalled as an import's changes; the job's id."""
        if not self.before:
            return None
        entries = []
        for (name, row_id), before in self.before.items():
            table = app_table(name)
            after_rows = changelog.read_rows(self.conn, name, [row_id], self.user_id)
            after = after_rows.get(row_id)
            before_json = _row_json(table, before)
            after_json = _row_json(table, after)
            if before_json == after_json:
                continue
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


def _row_json(table: sa.Table, row: dict | None) -> str | None:
    if row is None:
        return None
    return rows_as_json(schema.rows_to_arrow(table, [tuple(row[c.name] for c in table.columns)]))[0]


def _result(change: PushedChange, status: str, **extra) -> dict[str, Any]:
    result: dict[str, Any] = {"changeId": change.change_id, "status": status}
    result.update({k: v for k, v in extra.items() if v is not None or k == "row"})
    return result
