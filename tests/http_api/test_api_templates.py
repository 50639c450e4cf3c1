"""Goal templates over HTTP, against a real uvicorn and PostgreSQL: made from a user's goal
tree (refused with where when it holds the creator's e-mail address), private ones hidden
from others (404), found in the catalog by category, tag and words, applied with
customisation (which goals, new titles, start date), rated once."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from resources import schema

goal = schema.goal


def _tree_root(database, user_id: str) -> tuple[str, int]:
    """A goal tree of the user: a top-level goal, two sub-goals, one below the first."""
    now = dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC)
    tree = [
        ("tg_root", None, "Run a marathon", dt.date(2026, 12, 31)),
        ("tg_base", "tg_root", "Build a base", dt.date(2026, 11, 30)),
        ("tg_long", "tg_base", "Long runs", dt.date(2026, 11, 20)),
        ("tg_race", "tg_root", "Race week", dt.date(2026, 12, 28)),
    ]
    with database.engine.begin() as conn:
        for goal_id, parent, title, target in tree:
            conn.execute(
                goal.insert().values(
                    id=goal_id,
                    userId=user_id,
                    parentGoalId=parent,
                    title=title,
                    priority=3,
                    targetDate=target,
                    isCompleted=False,
                    createdAt=now,
                    updatedAt=now,
                )
            )
    return "tg_root", len(tree)


def _user_goals(database, user_id: str) -> dict[str, dict]:
    with database.engine.connect() as conn:
        rows = conn.execute(sa.select(goal).where(goal.c.userId == user_id)).mappings().all()
    return {r["id"]: dict(r) for r in rows}


def test_templates_made_found_applied_rated_and_private_ones_hidden(
    api, user_ids, make_token, database
):
    alice, bob = user_ids[0], user_ids[1]
    root, tree_size = _tree_root(database, alice)
    alice_token = make_token(alice, scopes=("templates",))
    bob_token = make_token(bob, scopes=("templates",))
    with api.client(alice_token) as client:
        private = client.post(
            "/api/v1/templates",
            json={"goalIds": [root], "name": "Quiet plan", "category": "Health"},
        )
        assert private.status_code == 201, private.text
        private_body = private.json()
        assert private_body["visibility"] == "private" and private_body["mine"] is True
        assert private_body["personalDataCheck"]["passed"] is True
        assert len(private_body["goals"]) == tree_size
        public = client.post(
            "/api/v1/templates",
            json={
                "goalIds": [root],
                "name": "Marathon in spring",
                "description": "sixteen weeks",
                "category": "Fitness",
                "tags": ["running", "Outdoor"],
                "public": True,
            },
        ).json()

        # A goal that names its creator's e-mail address is not shared.
        with database.engine.begin() as conn:
            email = conn.scalar(sa.select(schema.user.c.email).where(schema.user.c.id == alice))
            conn.execute(
                goal.update().where(goal.c.id == root).values(description=f"mail me: {email}")
            )
        personal = client.post("/api/v1/templates", json={"goalIds": [root], "name": "Mine"})
        assert personal.status_code == 422
        assert personal.json()["error"]["code"] == "personal_data"
        assert "e-mail" in personal.json()["error"]["message"]
        others = client.post("/api/v1/templates", json={"goalIds": ["nope"], "name": "X"})
        assert others.status_code == 422 and others.json()["error"]["field"] == "goalIds"

    private_id, public_id = private_body["templateId"], public["templateId"]
    with api.client(bob_token) as client:
        for method, path, body in [
            ("GET", "", None),
            ("POST", "/apply", {"start": "2027-01-04"}),
            ("POST", "/rating", {"stars": 5}),
        ]:
            answer = client.request(method, f"/api/v1/templates/{private_id}{path}", json=body)
            assert answer.status_code == 404, (path, answer.text)
        listed = client.get("/api/v1/templates").json()["items"]
        assert public_id in {t["templateId"] for t in listed}
        assert private_id not in {t["templateId"] for t in listed}
        found = client.get(
            "/api/v1/templates", params={"category": "fitness", "tag": "outdoor", "q": "sixteen"}
        ).json()["items"]
        assert [t["templateId"] for t in found] == [public_id]
        assert client.get("/api/v1/templates", params={"q": "quiet"}).json()["items"] == []

        detail = client.get(f"/api/v1/templates/{public_id}").json()
        assert detail["mine"] is False and "authorId" not in detail
        goals = detail["goals"]
        top = next(g for g in goals if g["parentKey"] is None)
        below = [g for g in goals if g["parentKey"] is not None]
        # Skip "Build a base": its sub-goal "Long runs" then hangs under the top goal.
        skipped = next(g for g in below if g["title"] == "Build a base")
        chosen = [top["key"], *[g["key"] for g in below if g is not skipped]]
        before = set(_user_goals(database, bob))
        applied = client.post(
            f"/api/v1/templates/{public_id}/apply",
            json={
                "start": "2027-01-04",
                "goals": chosen,
                "titles": {top["key"]: "Bob's spring run"},
            },
        )
        assert applied.status_code == 201, applied.text
        result = applied.json()
        created = {k: v for k, v in _user_goals(database, bob).items() if k not in before}
        assert len(created) == len(chosen) == len(result["goals"])
        by_key = {g["key"]: g for g in result["goals"]}
        new_top = created[by_key[top["key"]]["goalId"]]
        assert new_top["title"] == "Bob's spring run" and new_top["parentGoalId"] is None
        long_runs = next(g for g in goals if g["title"] == "Long runs")
        assert created[by_key[long_runs["key"]]["goalId"]]["parentGoalId"] == new_top["id"]
        for g in goals:
            if g["key"] not in chosen:
                continue
            row = created[by_key[g["key"]]["goalId"]]
            if g["parentKey"] is not None:
                assert row["parentGoalId"] in {v["goalId"] for v in by_key.values()}
            if g.get("targetOffsetDays") is not None:
                expected = dt.date(2027, 1, 4) + dt.timedelta(days=g["targetOffsetDays"])
                assert row["targetDate"] == expected
        unknown = client.post(
            f"/api/v1/templates/{public_id}/apply", json={"start": "2027-01-04", "goals": ["zz"]}
        )
        assert unknown.status_code == 422 and "zz" in unknown.json()["error"]["message"]
        preview = client.post(
            f"/api/v1/templates/{public_id}/apply", json={"start": "2027-01-04", "preview": True}
        ).json()
        assert preview["applicationId"] is None and len(preview["goals"]) == len(goals)
        assert len(_user_goals(database, bob)) == len(before) + len(chosen)

        rated = client.post(f"/api/v1/templates/{public_id}/rating", json={"stars": 4})
        assert rated.status_code == 200 and rated.json()["rating"] == 4.0
        again = client.post(f"/api/v1/templates/{public_id}/rating", json={"stars": 1})
        assert again.status_code == 409
        assert (
            client.post(f"/api/v1/templates/{public_id}/rating", json={"stars": 9}).status_code
            == 422
        )
    with api.client(alice_token) as client:
        assert client.get(f"/api/v1/templates/{private_id}").status_code == 200
        own = client.post(f"/api/v1/templates/{public_id}/rating", json={"stars": 5})
        assert own.status_code == 409
    with api.client(make_token(bob, scopes=("exports",))) as client:
        assert client.get("/api/v1/templates").status_code == 403
