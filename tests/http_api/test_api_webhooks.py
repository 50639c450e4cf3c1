"""Webhooks: an export requested over HTTP ends in a notification that the delivery path
(the run `webhook_delivery_sensor` starts) POSTs signed per Standard Webhooks, verified
here by the independent `standardwebhooks` package; a receiver that fails twice gets it
again after each back-off (counted from the failed attempt and stored as `nextAttemptAt`)
and exactly once more when it answers 2xx; redirects are not
followed; dead letters show in the CLI and the API."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from standardwebhooks.webhooks import Webhook

from assets.exports import defs as export_assets
from assets.exports.notifications import Backoff, deliver_notifications, due_notifications
from assets.exports.progress import process_pending_exports
from pipelines.cli.main import main
from resources import schema

SECRET = "whsec_" + base64.b64encode(b"api-more webhook key, 32 bytes!!").decode()
EXPORT = {"exportType": "full", "format": "json"}


class Receiver:
    """A webhook receiver on loopback answering the given statuses in turn (then 204)."""

    def __init__(self, statuses=(), redirect_to: str | None = None):
        self.received: list[tuple[float, dict, bytes]] = []
        outer = self
        answers = list(statuses)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((time.time(), dict(self.headers), body))
                status = answers.pop(0) if answers else 204
                self.send_response(302 if redirect_to else status)
                if redirect_to:
                    self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(*args, **kwargs) -> Receiver:
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def _export_notification(api, token: str) -> str:
    with api.client(token) as client:
        job_id = client.post("/api/v1/data/export", json=EXPORT).json()["jobId"]
    process_pending_exports(api.config.database, api.config.storage, workers=1)
    return job_id


def test_signed_delivery_retried_with_backoff_then_exactly_once(
    api, user_ids, make_token, database, receivers, monkeypatch
):
    alice = user_ids[0]
    token = make_token(alice, scopes=("exports",))
    receiver = receivers(statuses=(500, 503))
    monkeypatch.setenv("GOALPORT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("GOALPORT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GOALPORT_WEBHOOK_BACKOFF_SECONDS", "0.4")
    job_id = _export_notification(api, token)
    assert receiver.received == []  # not sent inline by the export step

    # The sensor asks for a delivery run when one is due, and for none when none is.
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance, resources={"database": database}) as context:
        request = export_assets.webhook_delivery_sensor(context)
    assert isinstance(request, dg.RunRequest) and alice not in (request.run_key or "")

    deliver_notifications(database.engine)  # the first attempt: the receiver answers 500
    (first,) = receiver.received
    outbox = schema.notification_outbox
    with database.engine.connect() as conn:
        due = conn.execute(sa.select(outbox.c.nextAttemptAt, outbox.c.attempts)).one()
    # the next attempt is stored, 0.4 s after the failed one, and nothing is due before it
    # (stored to the millisecond: 1 ms of slack)
    assert due.attempts == 1 and 0.399 <= due.nextAttemptAt.timestamp() - first[0] < 2
    assert (
        due_notifications(database.engine, now=due.nextAttemptAt - dt.timedelta(milliseconds=1))
        == []
    )
    with dg.build_sensor_context(instance=instance, resources={"database": database}) as context:
        assert isinstance(export_assets.webhook_delivery_sensor(context), dg.SkipReason)
    with api.client(token) as client:
        (pending,) = client.get("/api/v1/webhooks/deliveries").json()["items"]
    assert dt.datetime.fromisoformat(pending["nextAttemptAt"]) == due.nextAttemptAt

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(receiver.received) < 3:
        deliver_notifications(database.engine)  # what the delivery run does
        time.sleep(0.05)
    for _ in range(5):  # more runs after success send nothing
        deliver_notifications(database.engine)
    assert len(receiver.received) == 3
    sent_at = [t for t, _, _ in receiver.received]
    # each retry waits its back-off after the failed attempt: 0.4 s, then 0.8 s
    assert sent_at[1] - sent_at[0] >= 0.4 and sent_at[2] - sent_at[1] >= 0.8

    wh = Webhook(SECRET)
    ids = set()
    for _, headers, body in receiver.received:
        lowered = {k.lower(): v for k, v in headers.items()}
        payload = wh.verify(body, lowered)  # raises if the signature does not verify
        assert payload["jobId"] == job_id and payload["event"] == "export.completed"
        ids.add(lowered["webhook-id"])
        tampered = body.replace(b"export.completed", b"export.failed")
        with pytest.raises(Exception):  # noqa: B017 (the library's own verification error)
            wh.verify(tampered, lowered)
    assert len(ids) == 1  # the same webhook-id on every attempt: receivers de-duplicate

    with dg.build_sensor_context(instance=instance, resources={"database": database}) as context:
        assert isinstance(export_assets.webhook_delivery_sensor(context), dg.SkipReason)
    with api.client(token) as client:
        (sent,) = client.get("/api/v1/webhooks/deliveries").json()["items"]
    assert sent["status"] == "sent" and sent["attempts"] == 3 and sent["nextAttemptAt"] is None


def test_redirects_not_followed_and_dead_letters_listed(
    api, user_ids, make_token, database, receivers, monkeypatch, pg_url
):
    alice, bob = user_ids[0], user_ids[1]
    elsewhere = receivers()
    redirecting = receivers(redirect_to=elsewhere.url)
    token = make_token(alice, scopes=("exports",))
    _export_notification(api, token)
    quick = Backoff(base=dt.timedelta(0), max_attempts=2)
    for _ in range(3):
        deliver_notifications(database.engine, url=redirecting.url, secret=SECRET, backoff=quick)
    assert len(redirecting.received) == 2 and elsewhere.received == []

    with api.client(token) as client:
        dead = client.get("/api/v1/webhooks/deliveries", params={"status": "dead"}).json()
        (letter,) = dead["items"]
        assert letter["attempts"] == 2 and "302" in letter["lastError"]
        assert (
            elsewhere.url not in letter["lastError"] and redirecting.url not in letter["lastError"]
        )
        assert client.get("/api/v1/webhooks/deliveries", params={"status": "pending"}).json() == {
            "items": []
        }
    with api.client(make_token(bob, scopes=("exports",))) as client:
        assert client.get("/api/v1/webhooks/deliveries").json() == {"items": []}

    monkeypatch.setenv("GOALPORT_DATABASE_URL", pg_url)
    listed = CliRunner().invoke(main, ["notifications", "list", "--dead"])
    assert listed.exit_code == 0, listed.output
    assert letter["id"] in listed.output and "dead" in listed.output and "302" in listed.output
    empty = CliRunner().invoke(main, ["notifications", "list", "--status", "pending"])
    assert empty.exit_code == 0 and "no notifications" in empty.output
