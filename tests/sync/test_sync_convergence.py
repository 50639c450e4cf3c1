"""Convergence, proven by a hypothesis state machine: two devices of one user and the app
itself write the user's goals and progress at random (edits with messy text, new goals and
sub-goals, deletions, progress), and devices sync (push then pull) at random. After every
device has synced, the three copies are identical and pass the quality rules; no update
was lost except by the conflict policy (`fail`), and each one that was, was reported to
the device whose change lost. Plus: deleting a goal on one device while another edits its
sub-goal ends in a state both agree on."""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from assets.imports.change_journal import import_changes
from resources import schema
from tests.sync.conftest import SimDevice, new_user, quality_failures

MESSY_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
)
EDITABLE = {
    "title": MESSY_TEXT,
    "description": st.one_of(st.none(), MESSY_TEXT),
    "priority": st.integers(1, 5),
}


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def goal_row(user_id: str, parent: str | None, title: str) -> dict:
    return {
        "id": "g" + uuid.uuid4().hex[:20],
        "userId": user_id,
        "parentGoalId": parent,
        "title": title,
        "priority": 2,
        "isCompleted": False,
        "createdAt": _now(),
        "updatedAt": _now(),
    }


def check_push_reports(device: SimDevice, bases: dict) -> None:
    """Every value a device changed is on the server after the push, or its loss was
    reported to it (conflict, or merged with the value listed as losing)."""
    for change, result in device.pushed:
        base = bases.get((change["table"], change["id"]), {})
        status = result["status"]
        if status == "rejected":  # only a row whose parent was deleted meanwhile
            assert result["error"]["rule"].endswith("_resolves"), result
            continue
        if change["op"] == "delete" or status == "conflict":
            if status == "conflict":
                assert result.get("reason") == "deleted" or result["fields"], result
                assert change["op"] == "upsert"
            continue
        for field, value in change["fields"].items():
            if field in result.get("losing", {}):
                continue
            if field in EDITABLE and (field not in base or base[field] != value):
                assert result["row"][field] == value, (field, change, result)
    device.pushed.clear()


def check_journal_lost_nothing(world, job_ids: list[str], bases: dict) -> None:
    """No push overwrote a value the server had changed since the device's base: in every
    journalled update, a field the push changed had the device's base value before it."""
    with world.database.engine.connect() as conn:
        rows = [
            (job_id, change.row_id, change.before or {}, change.after or {})
            for job_id in job_ids
            for change in import_changes(conn, job_id)
            if change.action == "update"
        ]
    for job_id, row_id, before, after in rows:
        base = bases.get((job_id, row_id))
        if base is None:
            continue
        for field in EDITABLE:
            if before.get(field) != after.get(field) and field in base:
                assert str(before.get(field)) == str(base[field]), (field, before, base)


class TwoDevicesAndTheApp(RuleBasedStateMachine):
    world = None  # set by the test

    @initialize()
    def start(self):
        world = type(self).world
        self.user_id = new_user(world.database)
        self.client = world.client(world.token(self.user_id))
        self.devices = [SimDevice(self.client, f"{name}-{uuid.uuid4().hex[:6]}") for name in "AB"]
        for device in self.devices:
            device.pull()
        self.jobs: list[str] = []
        self.bases: dict = {}
        self.conflicts_seen = 0

    def teardown(self):
        if hasattr(self, "client"):
            self.client.close()

    def _goals(self, device: SimDevice) -> list[str]:
        return sorted(i for (t, i) in device.rows if t == "Goal")

    @rule(
        which=st.integers(0, 1),
        pick=st.integers(0, 50),
        field=st.sampled_from(sorted(EDITABLE)),
        data=st.data(),
    )
    def device_edits_a_goal(self, which, pick, field, data):
        device = self.devices[which]
        goals = self._goals(device)
        if goals:
            device.edit("Goal", goals[pick % len(goals)], **{field: data.draw(EDITABLE[field])})

    @rule(which=st.integers(0, 1), pick=st.integers(0, 50), title=MESSY_TEXT, top=st.booleans())
    def device_adds_a_goal(self, which, pick, title, top):
        device = self.devices[which]
        goals = self._goals(device)
        parent = None if top or not goals else goals[pick % len(goals)]
        device.create("Goal", goal_row(self.user_id, parent, title))

    @rule(which=st.integers(0, 1), pick=st.integers(0, 50))
    def device_deletes_a_goal(self, which, pick):
        device = self.devices[which]
        goals = self._goals(device)
        if goals:
            goal_id = goals[pick % len(goals)]
            doomed = {goal_id}
            while True:  # the device deletes the sub-goals and progress with it, as the app does
                more = {
                    i
                    for (t, i), row in device.rows.items()
                    if t == "Goal" and row.get("parentGoalId") in doomed
                } - doomed
                if not more:
                    break
                doomed |= more
            for (t, i), row in list(device.rows.items()):
                if t == "Progress" and row["goalId"] in doomed:
                    device.rows.pop((t, i))
            for i in doomed:
                device.rows.pop(("Goal", i), None)
            device.delete("Goal", goal_id)

    @rule(which=st.integers(0, 1), pick=st.integers(0, 50), value=st.decimals(0, 999, places=2))
    def device_records_progress(self, which, pick, value):
        device = self.devices[which]
        goals = self._goals(device)
        if goals:
            row = {
                "id": "p" + uuid.uuid4().hex[:20],
                "goalId": goals[pick % len(goals)],
                "value": str(value),
                "recordedAt": _now(),
            }
            device.create("Progress", row)

    @rule(pick=st.integers(0, 50), field=st.sampled_from(sorted(EDITABLE)), data=st.data())
    def app_edits_a_goal(self, pick, field, data):
        world = type(self).world
        goal = schema.goal
        with world.database.engine.begin() as conn:
            ids = sorted(conn.scalars(sa.select(goal.c.id).where(goal.c.userId == self.user_id)))
            if ids:
                conn.execute(
                    goal.update()
                    .where(goal.c.id == ids[pick % len(ids)])
                    .values(**{field: data.draw(EDITABLE[field])})
                )

    @rule(which=st.integers(0, 1))
    def device_syncs(self, which):
        self._sync(self.devices[which])

    def _sync(self, device: SimDevice) -> None:
        bases = dict(device.bases)
        if device.pending:
            answer = device.push()
            if answer["journal"]:
                self.jobs.append(answer["journal"])
                for (_table, row_id), values in bases.items():
                    self.bases[(answer["journal"], row_id)] = values
        check_push_reports(device, bases)
        device.pull()

    def teardown_check(self) -> None:
        world = type(self).world
        first, second = self.devices
        self._sync(first)
        self._sync(second)
        first.pull()
        server = world.server_rows(self.user_id)
        assert first.rows == server
        assert second.rows == server
        assert quality_failures(world.database, self.user_id) == []
        check_journal_lost_nothing(world, self.jobs, self.bases)


def test_two_devices_and_the_app_converge(sync_world):
    class Machine(TwoDevicesAndTheApp):
        world = sync_world

        def teardown(self):
            try:
                if hasattr(self, "devices"):
                    self.teardown_check()
            finally:
                super().teardown()

    Machine.TestCase.settings = settings(
        max_examples=8,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    Machine.TestCase().runTest()


def test_delete_goal_on_one_device_while_another_edits_its_sub_goal(sync_world):
    user_id = new_user(sync_world.database)
    with sync_world.client(sync_world.token(user_id)) as client:
        phone, laptop = SimDevice(client, "phone"), SimDevice(client, "laptop")
        phone.pull()
        laptop.pull()
        top, sub = f"{user_id}-g0", f"{user_id}-g1"
        laptop.create(
            "Progress",
            {
                "id": "p" + uuid.uuid4().hex[:12],
                "goalId": sub,
                "value": "2.50",
                "recordedAt": _now(),
            },
        )
        laptop.edit("Goal", sub, title="Edited offline on the laptop", priority=5)
        phone.delete("Goal", top)
        phone.sync()
        answer = laptop.push()
        statuses = {r["changeId"]: r for r in answer["results"]}
        edit = next(c for c in laptop.pushed if c[0]["table"] == "Goal")[1]
        assert edit["status"] == "conflict" and edit["reason"] == "deleted"
        progress = next(c for c in laptop.pushed if c[0]["table"] == "Progress")[1]
        assert progress["status"] == "rejected"
        assert progress["error"]["rule"] == "goalId_resolves"
        assert len(statuses) == 2
        laptop.pull()
        phone.pull()
        server = sync_world.server_rows(user_id)
        assert laptop.rows == phone.rows == server
        assert not [k for k in server if k[0] == "Goal" and k[1] in (top, sub)]
        assert quality_failures(sync_world.database, user_id) == []
