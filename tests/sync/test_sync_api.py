"""Sync over HTTP against a real uvicorn and PostgreSQL: initial sync, incremental pulls
that see the app's own writes, pushes applied, merged, in conflict or rejected (with the
rule and field), the journal that undoes a push, a retried push that applies once, a
revoked device, and a device offline past the horizon that recovers by a full resync."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
import uuid

import sqlalchemy as sa

from assets.imports.change_journal import import_changes
from assets.imports.undo import undo_import
from assets.sync.changelog import compact_change_log
from assets.sync.devices import list_devices, revoke_device
from resources import schema
from tests.sync.conftest import SimDevice


def _goal(user_id: str, **fields) -> dict:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    row = {
        "id": "g" + uuid.uuid4().hex[:20],
        "userId": user_id,
        "moduleId": None,
        "parentGoalId": None,
        "title": "Run a marathon",
        "description": None,
        "priority": 3,
        "difficulty": None,
        "targetDate": None,
        "isCompleted": False,
        "completedAt": None,
        "createdAt": now,
        "updatedAt": now,
    }
    return row | fields


def _app_update(world, table: str, row_id: str, **values) -> None:
    """A write by the app itself, straight into its table."""
    t = schema.metadata.tables[table]
    with world.database.engine.begin() as conn:
        conn.execute(t.update().where(t.c.id == row_id).values(**values))


def test_initial_and_incremental_pull_parents_first(sync_world):
    alice = sync_world.user_ids[0]
    with sync_world.client(sync_world.token(alice)) as client:
        phone = SimDevice(client, "phone-" + uuid.uuid4().hex[:6])
        pages = phone.pull(limit=40)
        server = sync_world.server_rows(alice)
        assert pages > 2 and phone.rows == server
        assert all(
            user == alice
            for (t, _), row in phone.rows.items()
            for user in [row.get("userId", row["id"])]
        )
        # every page: a row's parent came before it (or in an earlier page)
        seen: set[tuple[str, str]] = set()
        cursor = None
        while True:
            params = {"limit": 25} | ({"since": cursor} if cursor else {})
            body = client.get("/api/v1/sync/changes", params=params).json()
            for change in body["changes"]:
                row = change["row"]
                if change["table"] == "Goal" and row["parentGoalId"]:
                    assert ("Goal", row["parentGoalId"]) in seen
                if change["table"] == "Progress":
                    assert ("Goal", row["goalId"]) in seen
                seen.add((change["table"], change["id"]))
            cursor = body["cursor"]
            if not body["hasMore"]:
                break
        # an app write is seen by the next pull, with a new version
        goal_id = next(i for (t, i) in server if t == "Goal")
        old_version = phone.versions[("Goal", goal_id)]
        _app_update(sync_world, "Goal", goal_id, title="Renamed by the app")
        phone.pull()
        assert phone.rows[("Goal", goal_id)]["title"] == "Renamed by the app"
        assert phone.versions[("Goal", goal_id)] > old_version
        # nothing changed: an empty page, hasMore false
        body = client.get("/api/v1/sync/changes", params={"since": phone.cursor}).json()
        assert body == {"changes": [], "cursor": body["cursor"], "hasMore": False}
        # another user's token sees none of alice's rows
        bob = sync_world.user_ids[1]
    with sync_world.client(sync_world.token(bob)) as client:
        laptop = SimDevice(client, "laptop")
        laptop.pull()
        assert laptop.rows == sync_world.server_rows(bob)
        assert not set(laptop.rows) & set(phone.rows)


def test_push_applied_merged_conflict_and_rejected(sync_world):
    alice = sync_world.user_ids[0]
    with sync_world.client(sync_world.token(alice)) as client:
        phone = SimDevice(client, "phone-" + uuid.uuid4().hex[:6])
        phone.pull()
        goal = _goal(alice)
        phone.create("Goal", goal)
        answer = phone.push()
        assert answer["results"][0]["status"] == "applied"
        assert answer["results"][0]["row"]["title"] == "Run a marathon"
        # the app edits the description; the phone edits the title from the older version
        _app_update(sync_world, "Goal", goal["id"], description="from the web app")
        phone.edit("Goal", goal["id"], title="Run two marathons")
        result = phone.push()["results"][0]
        assert result["status"] == "merged"
        assert result["row"]["title"] == "Run two marathons"
        assert result["row"]["description"] == "from the web app"
        # the same field on both sides, default policy fail: nothing applied, server's row back
        _app_update(sync_world, "Goal", goal["id"], priority=5)
        phone.edit("Goal", goal["id"], priority=1, title="Three marathons")
        result = phone.push()["results"][0]
        assert result["status"] == "conflict" and result["fields"] == ["priority"]
        assert result["row"]["priority"] == 5 and result["row"]["title"] == "Run two marathons"
        # the user's policy take-incoming: merged, the losing value listed
        with sync_world.database.engine.begin() as conn:
            conn.execute(
                schema.user_setting.insert().values(
                    id="set_" + uuid.uuid4().hex[:10],
                    userId=alice,
                    key="syncConflictPolicy",
                    value=json.dumps("take-incoming"),
                    updatedAt=dt.datetime.now(dt.UTC),
                )
            )
        _app_update(sync_world, "Goal", goal["id"], priority=4)
        phone.edit("Goal", goal["id"], priority=2)
        result = phone.push()["results"][0]
        assert result["status"] == "merged" and result["losing"] == {"priority": 4}
        assert result["row"]["priority"] == 2
        # rejected: a quality rule (with rule and field), a reference to bob's goal, a bad type
        bob_goal = next(
            i for (t, i) in sync_world.server_rows(sync_world.user_ids[1]) if t == "Goal"
        )
        phone.edit("Goal", goal["id"], priority=9)
        phone.create(
            "Progress",
            {
                "id": "p" + uuid.uuid4().hex[:12],
                "goalId": bob_goal,
                "value": "1.00",
                "recordedAt": "2026-01-02T03:04:05Z",
            },
        )
        phone.create("Goal", _goal(alice, title=""))
        results = phone.push()["results"]
        phone.edit("Goal", goal["id"], targetDate="next week")
        results += phone.push()["results"]
        assert [r["status"] for r in results] == ["rejected"] * 4
        assert results[0]["error"]["rule"] == "priority_in_range"
        assert results[0]["error"]["field"] == "priority"
        assert results[0]["row"]["priority"] == 2  # the server's row, to put back
        assert results[1]["error"] == {
            "rule": "goalId_resolves",
            "field": "goalId",
            "message": f"refers to Goal {bob_goal}, which is not one of your rows",
        }
        assert results[1]["row"] is None
        assert results[2]["error"]["field"] == "title"
        assert results[2]["error"]["rule"] == "text_within_limits"
        assert results[3]["error"]["field"] == "targetDate"
        with sync_world.database.engine.connect() as conn:
            stored = conn.execute(
                sa.select(schema.goal).where(schema.goal.c.id == goal["id"])
            ).one()
        assert stored.priority == 2 and stored.targetDate is None


def test_push_is_journalled_and_undone(sync_world):
    alice = sync_world.user_ids[0]
    with sync_world.client(sync_world.token(alice)) as client:
        phone = SimDevice(client, "tablet-" + uuid.uuid4().hex[:6])
        phone.pull()
        parent = _goal(alice, title="Parent")
        child = _goal(alice, title="Child", parentGoalId=parent["id"])
        phone.create("Goal", parent)
        phone.create("Goal", child)
        assert [r["status"] for r in phone.push()["results"]] == ["applied", "applied"]
        phone.delete("Goal", parent["id"])  # takes the child with it (CASCADE)
        answer = phone.push()
        assert answer["results"][0]["status"] == "applied"
        job_id = answer["journal"]
        assert job_id.startswith("imp_sync_")
        with sync_world.database.engine.connect() as conn:
            recorded = [(c.row_id, c.action) for c in import_changes(conn, job_id)]
        assert sorted(recorded) == sorted([(parent["id"], "delete"), (child["id"], "delete")])
        undo_import(sync_world.database, job_id, actor="test")
        server = sync_world.server_rows(alice)
        assert server[("Goal", child["id"])]["parentGoalId"] == parent["id"]
        phone.pull()
        assert phone.rows == server


def test_retried_push_after_dropped_connection_applies_once(sync_world):
    alice = sync_world.user_ids[0]
    token = sync_world.token(alice)
    goal = _goal(alice)
    body = json.dumps(
        {
            "deviceId": "flaky-phone",
            "changes": [
                {
                    "changeId": "c-1",
                    "table": "Goal",
                    "id": goal["id"],
                    "op": "upsert",
                    "baseVersion": None,
                    "fields": goal,
                },
            ],
        }
    ).encode()
    host, port = sync_world.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(
            b"POST /api/v1/sync/push HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    # the connection is gone before any answer was read; the server finishes the push
    deadline = time.monotonic() + 20
    receipts = schema.sync_push_receipt
    while time.monotonic() < deadline:
        with sync_world.database.engine.connect() as conn:
            if conn.execute(sa.select(receipts.c.id).where(receipts.c.changeId == "c-1")).first():
                break
        time.sleep(0.05)
    with sync_world.client(token) as client:
        retried = client.post(
            "/api/v1/sync/push", content=body, headers={"Content-Type": "application/json"}
        )
        again = client.post(
            "/api/v1/sync/push", content=body, headers={"Content-Type": "application/json"}
        )
    assert retried.status_code == 200, retried.text
    first = retried.json()["results"][0]
    assert first["status"] == "applied" and again.json()["results"] == [first]
    assert again.json()["journal"] is None  # nothing written the second time
    with sync_world.database.engine.connect() as conn:
        journals = conn.execute(sa.select(schema.import_change.c.importJobId).distinct())
        jobs = sum(
            1
            for job_id in journals.scalars().all()
            for change in import_changes(conn, job_id)
            if change.row_id == goal["id"]
        )
        version = conn.execute(
            sa.select(schema.sync_change.c.seq).where(schema.sync_change.c.rowId == goal["id"])
        ).scalar()
    assert jobs == 1 and version == first["version"]


def test_revoked_device_and_scope(sync_world, monkeypatch):
    from click.testing import CliRunner

    from pipelines.cli.main import main as goalport

    monkeypatch.setenv("GOALPORT_DATABASE_URL", sync_world.database.url)
    alice = sync_world.user_ids[0]
    made = CliRunner().invoke(goalport, ["tokens", "create", alice, "--scope", "sync"])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    with sync_world.client(token) as client:
        phone = SimDevice(client, "lost-phone")
        phone.pull()
        devices = {d.device_id: d for d in list_devices(sync_world.database.engine, alice)}
        assert devices["lost-phone"].last_cursor is not None
        listed = CliRunner().invoke(goalport, ["sync", "devices", alice])
        assert listed.exit_code == 0 and "lost-phone\tactive" in listed.output, listed.output
        revoked = CliRunner().invoke(goalport, ["sync", "revoke", alice, "lost-phone"])
        assert revoked.exit_code == 0 and "lost-phone\trevoked" in revoked.output
        unknown = CliRunner().invoke(goalport, ["sync", "revoke", alice, "no-such-phone"])
        assert unknown.exit_code == 1 and "no sync device 'no-such-phone'" in unknown.output
        again = revoke_device(sync_world.database.engine, alice, "lost-phone")  # twice is fine
        assert again.revoked_at is not None
        pulled = client.get("/api/v1/sync/changes", params={"deviceId": "lost-phone"})
        pushed = client.post("/api/v1/sync/push", json={"deviceId": "lost-phone", "changes": []})
        assert pulled.status_code == pushed.status_code == 403
        assert pushed.json()["error"]["code"] == "device_revoked"
    with sync_world.client(sync_world.token(alice, scopes=("exports",))) as client:
        assert client.get("/api/v1/sync/changes").status_code == 403
    with sync_world.client(sync_world.token(alice)) as client:
        assert (
            client.get("/api/v1/sync/changes", params={"since": "bm90LWEtY3Vyc29y"}).status_code
            == 400
        )


def test_offline_past_the_horizon_gets_410_and_resyncs(sync_world):
    carol = sync_world.user_ids[2]
    with sync_world.client(sync_world.token(carol)) as client:
        phone, laptop = SimDevice(client, "old-phone"), SimDevice(client, "laptop")
        phone.pull()
        laptop.pull()
        stale_cursor = phone.cursor
        victim = next(i for (t, i) in phone.rows if t == "Progress")
        laptop.delete("Progress", victim)
        assert laptop.push()["results"][0]["status"] == "applied"
        # a month later the log is compacted: the tombstone is gone
        compacted = compact_change_log(
            sync_world.database.engine,
            dt.timedelta(days=30),
            dt.datetime.now(dt.UTC) + dt.timedelta(days=31),
        )
        assert compacted.tombstones_deleted >= 1
        gone = client.get("/api/v1/sync/changes", params={"since": stale_cursor})
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "cursor_expired"
        phone.pull()  # 410 -> full resync
        assert ("Progress", victim) not in phone.rows
        assert phone.rows == sync_world.server_rows(carol)


def test_erasure_leaves_nothing_of_the_users_sync(sync_world, tmp_path):
    """The erasure's own deletes leave tombstones; they go with the user's log, row images,
    devices, push receipts and journal: a scan of every table finds nothing of them, while
    another user's sync state stays."""
    from assets.gdpr import erasure
    from resources.storage import ObjectStorage
    from tests.gdpr.scan import scan_everywhere
    from tests.sync.conftest import new_user

    victim, other = new_user(sync_world.database), new_user(sync_world.database)
    marker = "Marker-" + uuid.uuid4().hex[:8]
    for user_id in (victim, other):
        with sync_world.client(sync_world.token(user_id)) as client:
            phone, laptop = SimDevice(client, f"phone {marker}"), SimDevice(client, "laptop")
            phone.pull()
            laptop.pull()
            goal = _goal(user_id, title=f"{marker} goal")
            phone.create("Goal", goal)
            phone.push()
            laptop.pull()
            laptop.edit("Goal", goal["id"], description=f"{marker} notes")  # a row image
            laptop.push()
            phone.delete("Goal", f"{user_id}-g2")  # a tombstone
            phone.push()
    engine = sync_world.database.engine
    with engine.connect() as conn:
        email = conn.execute(
            sa.select(schema.user.c.email).where(schema.user.c.id == victim)
        ).scalar_one()
        assert (
            conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.sync_row_history)
                .where(schema.sync_row_history.c.userId == victim)
            ).scalar()
            > 0
        )
    storage = ObjectStorage(url=str(tmp_path / "storage"))
    request = erasure.request_erasure(engine, victim, grace=dt.timedelta(0))
    outcome = erasure.execute_erasure(engine, storage, request.id)
    assert outcome.verified, outcome.receipt["verification"]
    found = scan_everywhere(engine, [storage], [victim, email])
    assert found == []
    with engine.connect() as conn:
        for table in (
            schema.sync_change,
            schema.sync_tombstone,
            schema.sync_row_history,
            schema.sync_device,
            schema.sync_push_receipt,
        ):
            counts = dict(
                conn.execute(
                    sa.select(table.c.userId, sa.func.count())
                    .where(table.c.userId.in_([victim, other]))
                    .group_by(table.c.userId)
                ).all()
            )
            assert victim not in counts and counts.get(other), table.name
        # the marker the victim wrote is gone; the other user's copy of it stays
        images = [
            i for i in conn.scalars(sa.select(schema.sync_row_history.c.image)) if marker in i
        ]
        assert images and all(other in i for i in images)


def test_another_users_deleted_row_tells_nothing(sync_world):
    """A push naming a row id another user deleted learns nothing of that deletion: it is
    applied as a new row of the pusher's, not answered with the other user's tombstone."""
    alice, bob = sync_world.user_ids[0], sync_world.user_ids[1]
    goal = _goal(alice, title="Deleted later")
    with sync_world.client(sync_world.token(alice)) as client:
        phone = SimDevice(client, "alice-" + uuid.uuid4().hex[:6])
        phone.pull()
        phone.create("Goal", goal)
        assert phone.push()["results"][0]["status"] == "applied"
        phone.delete("Goal", goal["id"])
        assert phone.push()["results"][0]["status"] == "applied"
    with sync_world.client(sync_world.token(bob)) as client:
        laptop = SimDevice(client, "bob-" + uuid.uuid4().hex[:6])
        laptop.pull()
        laptop.create("Goal", {**goal, "userId": bob, "title": "Mine"})
        result = laptop.push()["results"][0]
    assert result["status"] == "applied", result
    assert sync_world.server_rows(bob)[("Goal", goal["id"])]["title"] == "Mine"
