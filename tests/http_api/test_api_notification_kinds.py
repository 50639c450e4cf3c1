"""The notification kinds beyond "export ready", through the same outbox and the same
signed delivery, to a real receiver on loopback, each signature checked by the independent
`standardwebhooks` package: an import previewed and applied (over HTTP), a backup that
failed, and an erasure completed, which names no one; and nothing about a user is sent
once they are erased, though it was queued before."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from assets.backups.due import claim_requested_backups, request_backup
from assets.backups.runner import BackupKeyUnavailableError, run_backup_batch
from assets.exports.notifications import (
    BACKUP_FAILED,
    ERASURE_COMPLETED,
    IMPORT_APPLIED,
    IMPORT_PREVIEWED,
    deliver_notifications,
)
from assets.gdpr.erasure import execute_erasure, request_erasure
from assets.imports.apply import apply_import
from assets.imports.preview import preview_job_file
from resources import keys, schema
from resources.audit import subject_ref, utc_now
from resources.keys import KeyVault
from tests.http_api.test_api_webhooks import SECRET, Receiver
from tests.imports.import_support import export_user


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


def _delivered(receiver) -> list[dict]:
    """Every body the receiver got, each signature verified independently."""
    verifier = Webhook(SECRET)
    return [verifier.verify(body, headers) for _, headers, body in receiver.received]


def _identifying(database, user_id: str) -> list[str]:
    user = schema.user
    with database.engine.connect() as conn:
        row = conn.execute(sa.select(user).where(user.c.id == user_id)).mappings().one()
    return [user_id, row["email"], subject_ref(user_id)] + [
        v for v in (row["firstName"], row["lastName"]) if v
    ]


def test_import_backup_and_erasure_notifications(
    api, user_ids, make_token, database, storage, pg_url, receiver, monkeypatch
):
    alice, bob, carol = user_ids

    # An import over HTTP: previewed, then applied.
    with api.client(make_token(alice, scopes=("imports",))) as client:
        job_id = client.post(
            "/api/v1/data/import",
            files={"file": ("export.json", export_user(database, alice, "json"), "text/json")},
        ).json()["jobId"]
        preview_job_file(database, storage, job_id)
        assert client.post(f"/api/v1/data/import/{job_id}/confirm").status_code == 200
    apply_import(database, storage, job_id, actor="dagster")

    # A backup that cannot run (encrypted, and no master key): backup.failed.
    monkeypatch.delenv(keys.MASTER_KEY_ENV, raising=False)
    backup_id, _ = request_backup(database.engine, bob, requested_by="test")
    (batch,) = claim_requested_backups(database.engine, utc_now()).batches
    vault = KeyVault(database_url=pg_url)
    try:
        run_backup_batch(database, storage, vault, batch.job_ids, batch.batch_id)
    except BackupKeyUnavailableError:
        pass
    vault.close()

    # Carol's import is previewed, then she is erased before anything is delivered.
    with api.client(make_token(carol, scopes=("imports",))) as client:
        carol_job = client.post(
            "/api/v1/data/import",
            files={"file": ("export.json", export_user(database, carol, "json"), "text/json")},
        ).json()["jobId"]
    preview_job_file(database, storage, carol_job)
    carol_names = _identifying(database, carol)
    outbox = schema.notification_outbox
    with database.engine.connect() as conn:
        queued = conn.scalars(sa.select(outbox.c.kind).where(outbox.c.userId == carol)).all()
    assert queued == [IMPORT_PREVIEWED]
    request = request_erasure(database.engine, carol)
    outcome = execute_erasure(database.engine, storage, request.id, force=True)
    assert outcome.request.status == "completed"

    delivery = deliver_notifications(database.engine, url=receiver.url, secret=SECRET, timeout=5)
    assert delivery.sent and not delivery.failed
    bodies = _delivered(receiver)
    by_kind: dict[str, list[dict]] = {}
    for body in bodies:
        by_kind.setdefault(body["event"], []).append(body)

    (previewed,) = by_kind[IMPORT_PREVIEWED]
    assert (previewed["userId"], previewed["jobId"]) == (alice, job_id)
    assert previewed["sourceApp"] == "goalport" and previewed["unresolvedConflicts"] == 0
    assert set(previewed["totals"]) >= {"create", "update", "delete"}
    (applied,) = by_kind[IMPORT_APPLIED]
    assert (applied["userId"], applied["jobId"]) == (alice, job_id)
    assert applied["recordsImported"] >= 0 and applied["totals"] == previewed["totals"]

    (failed,) = by_kind[BACKUP_FAILED]
    assert (failed["userId"], failed["jobId"]) == (bob, backup_id)
    assert "GOALPORT_MASTER_KEY" in failed["error"]

    (erased,) = by_kind[ERASURE_COMPLETED]
    assert erased["requestId"] == request.id and "userId" not in erased
    # Nothing about carol went out: not her preview (queued before the erasure, deleted by
    # it), and the erasure's own notification names her in no way.
    for body in bodies:
        text = json.dumps(body)
        assert not any(value in text for value in carol_names), body["event"]
    assert all(b["userId"] in (alice, bob) for b in bodies if b["event"] != ERASURE_COMPLETED)

    # Each user sees only their own deliveries.
    with api.client(make_token(alice, scopes=("exports",))) as client:
        own = client.get("/api/v1/webhooks/deliveries")
        assert own.status_code == 200, own.text
        kinds = sorted(d["event"] for d in own.json()["items"])
        assert kinds == [IMPORT_APPLIED, IMPORT_PREVIEWED]
