"""Imports over HTTP, against a real uvicorn, PostgreSQL and storage: a Todoist CSV and a
goalport JSON export uploaded, previewed by the same function the CLI and the staging run
use (never inside the request), their changes read page by page, confirmed, applied by
the confirmed-imports path, undone; another user gets 404 for all of it."""

from __future__ import annotations

import http.client
from pathlib import Path

import sqlalchemy as sa

from assets.imports.apply import apply_import
from assets.imports.preview import preview_job_file
from resources import schema
from resources.storage_layout import UPLOADS_PREFIX
from tests.imports.import_support import export_user

TODOIST = Path(__file__).parents[1] / "imports" / "fixtures" / "todoist" / "Home [2203306141].csv"


def _titles(database, user_id: str) -> set[str]:
    goal = schema.goal
    with database.engine.connect() as conn:
        return set(conn.scalars(sa.select(goal.c.title).where(goal.c.userId == user_id)))


def _all_changes(client, job_id: str, limit: int) -> tuple[list[dict], int]:
    items: list[dict] = []
    cursor, pages = None, 0
    while True:
        params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = client.get(f"/api/v1/data/import/{job_id}/changes", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        cursor = body["nextCursor"]
        if cursor is None:
            return items, pages


def test_todoist_csv_upload_preview_changes_confirm_undo(
    api, user_ids, make_token, database, storage
):
    alice, bob = user_ids[0], user_ids[1]
    before = _titles(database, alice)
    with api.client(make_token(alice, scopes=("imports",))) as client:
        uploaded = client.post(
            "/api/v1/data/import",
            files={"file": ("../../" + TODOIST.name, TODOIST.read_bytes(), "text/csv")},
            data={"mode": "merge", "onConflict": "fail"},
        )
        assert uploaded.status_code == 202, uploaded.text
        job_id = uploaded.json()["jobId"]
        pending = client.get(f"/api/v1/data/import/{job_id}").json()
        assert pending["status"] == "pending" and pending["detectedSource"] is None
        # The upload sits in alice's uploads folder, its hostile name made plain inside it.
        keys = storage.list(f"{UPLOADS_PREFIX}/{alice}")
        assert keys == [f"{UPLOADS_PREFIX}/{alice}/{job_id}/Home _2203306141_.csv"]

        preview_job_file(database, storage, job_id)  # what the staging run does
        status = client.get(f"/api/v1/data/import/{job_id}").json()
        assert status["status"] == "previewed", status
        assert status["detectedSource"]["app"] == "todoist"
        flattened = [e for e in status["mappingReport"] if e["action"] == "flattened"]
        assert any("Check the machine works" in e["source"] for e in flattened)
        assert status["mapping"]["flattened"] >= 1
        creates = status["totals"]["create"]
        assert creates >= 5 and _titles(database, alice) == before  # nothing written yet

        changes, pages = _all_changes(client, job_id, limit=3)
        assert len(changes) == creates and pages == -(-creates // 3)
        assert len({(c["table"], c["id"]) for c in changes}) == creates
        assert {c["action"] for c in changes} == {"create"}
        titles = {c["row"]["title"] for c in changes if c["table"] == "Goal"}
        assert "Renew passport" in titles
        assert (
            client.get(
                f"/api/v1/data/import/{job_id}/changes", params={"cursor": "not-a-cursor"}
            ).status_code
            == 400
        )

        with api.client(make_token(bob, scopes=("imports",))) as intruder:
            for path in ("", "/changes"):
                missing = intruder.get(f"/api/v1/data/import/{job_id}{path}")
                assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
            for action in ("confirm", "undo"):
                assert intruder.post(f"/api/v1/data/import/{job_id}/{action}").status_code == 404

        confirmed = client.post(f"/api/v1/data/import/{job_id}/confirm")
        assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"
        assert client.post(f"/api/v1/data/import/{job_id}/confirm").status_code == 409
        apply_import(database, storage, job_id, actor="dagster")  # confirmed_imports_sensor's run
        assert "Renew passport" in _titles(database, alice)
        applied = client.get(f"/api/v1/data/import/{job_id}").json()
        assert applied["status"] == "applied" and applied["recordsImported"] >= creates

        undone = client.post(f"/api/v1/data/import/{job_id}/undo")
        assert undone.status_code == 200 and undone.json()["status"] == "undone"
        assert _titles(database, alice) == before
        assert client.post(f"/api/v1/data/import/{job_id}/undo").status_code == 409
    with api.client(make_token(bob, scopes=("exports",))) as wrong_scope:
        assert wrong_scope.get(f"/api/v1/data/import/{job_id}").status_code == 403


def test_goalport_json_export_round_trip_shows_field_changes(
    api, user_ids, make_token, database, storage
):
    alice = user_ids[0]
    exported = export_user(database, alice, "json")
    goal = schema.goal
    with database.engine.begin() as conn:
        goal_id, title = conn.execute(
            sa.select(goal.c.id, goal.c.title).where(goal.c.userId == alice).order_by(goal.c.id)
        ).first()
        conn.execute(goal.update().where(goal.c.id == goal_id).values(title="Renamed since"))
    with api.client(make_token(alice, scopes=("imports",))) as client:
        job_id = client.post(
            "/api/v1/data/import",
            files={"file": ("export.json", exported, "application/json")},
            data={"onConflict": "take-incoming"},
        ).json()["jobId"]
        preview_job_file(database, storage, job_id)
        status = client.get(f"/api/v1/data/import/{job_id}").json()
        assert status["detectedSource"] == {"app": "goalport", "format": "json", "encrypted": False}
        assert status["totals"]["update"] >= 1 and status["totals"]["create"] == 0
        changes, _ = _all_changes(client, job_id, limit=2)
        renamed = [c for c in changes if c["id"] == goal_id]
        assert renamed and renamed[0]["action"] == "update"
        assert renamed[0]["fields"]["title"] == ["Renamed since", title]

        assert client.post(f"/api/v1/data/import/{job_id}/confirm").status_code == 200
        apply_import(database, storage, job_id, actor="dagster")
        assert title in _titles(database, alice) and "Renamed since" not in _titles(database, alice)
        assert client.post(f"/api/v1/data/import/{job_id}/undo").json()["status"] == "undone"
        assert "Renamed since" in _titles(database, alice)


def test_refused_uploads(api, user_ids, make_token, database, storage):
    alice = user_ids[0]
    with api.client(make_token(alice, scopes=("imports",))) as client:
        bad_mode = client.post(
            "/api/v1/data/import", files={"file": ("a.csv", b"x")}, data={"mode": "overwrite"}
        )
        assert bad_mode.status_code == 422 and bad_mode.json()["error"]["field"] == "mode"
        empty = client.post("/api/v1/data/import", files={"file": ("a.csv", b"")})
        assert empty.status_code == 422 and empty.json()["error"]["field"] == "file"
        no_file = client.post("/api/v1/data/import", data={"mode": "merge"})
        assert no_file.status_code == 422
        garbage = client.post("/api/v1/data/import", files={"file": ("x.bin", b"\x00\xff" * 50)})
        job_id = garbage.json()["jobId"]
    try:
        preview_job_file(database, storage, job_id)
    except Exception:  # noqa: BLE001 (the reason is asserted on the job below)
        pass
    with api.client(make_token(alice, scopes=("imports",))) as client:
        failed = client.get(f"/api/v1/data/import/{job_id}").json()
        assert failed["status"] == "failed" and failed["errorMessage"]
        assert client.post(f"/api/v1/data/import/{job_id}/confirm").status_code == 409
    # A body declared larger than the CLI's limit is refused before it is read.
    host, port = api.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.putrequest("POST", "/api/v1/data/import")
    connection.putheader("Content-Type", "multipart/form-data; boundary=x")
    connection.putheader("Content-Length", str(300 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"too_large" in response.read()
    connection.close()


def test_the_sensor_asks_one_staging_run_per_uploaded_job(api, user_ids, make_token, database):
    import dagster as dg

    from assets.imports import defs as import_assets

    alice = user_ids[0]
    with api.client(make_token(alice, scopes=("imports",))) as client:
        job_id = client.post(
            "/api/v1/data/import", files={"file": ("t.csv", TODOIST.read_bytes())}
        ).json()["jobId"]
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance, resources={"database": database}) as context:
        (request,) = list(import_assets.uploaded_imports_sensor(context))
    assert request.run_key == job_id and request.tags[import_assets.IMPORT_JOB_TAG] == job_id
    assert alice not in repr(request.run_config) + repr(request.tags)
