"""Operators' alerts against a real HTTP receiver on a loopback port: a failed run is
alerted by the one run-failure sensor, signed, naming the job, run, kind and batch and no
user; a dead-lettered notification is alerted too; redirects are not followed and a receiver
that does not answer is given up on after the timeout."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from assets.alerts.defs import run_failure_alert_sensor
from assets.exports.claims import claim_pending_exports
from assets.exports.defs import ExportConfig, export_run_request
from assets.exports.notifications import Backoff, deliver_notifications
from assets.exports.queue import fail_exports, request_export
from pipelines.definitions import defs
from resources.alerts import message_without_users, send_alert
from synthetic.seed import seed_database

SECRET = "whsec_" + base64.b64encode(b"alert key for the tests, 32 bytes").decode()


class Receiver:
    """Records every request: path, headers and body. `/redirect` answers 307 to
    `/elsewhere`, `/broken` answers 500, `/slow` waits 3 s before answering."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, dict(self.headers), body))
                if self.path == "/slow":
                    time.sleep(3)
                if self.path == "/redirect":
                    self.send_response(307)
                    self.send_header("Location", "/elsewhere")
                elif self.path == "/broken":
                    self.send_response(500)
                else:
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posts_to(self, path: str) -> list[tuple[dict, dict]]:
        return [(h, json.loads(b)) for p, h, b in self.requests if p == path]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def pg_url(pg_url):
    seed_database(pg_url, 3, seed=41, heavy_every=0)
    return pg_url


@pytest.fixture
def alerting(monkeypatch, receiver):
    monkeypatch.setenv("GOALPORT_ALERT_WEBHOOK_URL", receiver.url + "/alerts")
    monkeypatch.setenv("GOALPORT_ALERT_WEBHOOK_SECRET", SECRET)


def signed_correctly(headers: dict, raw: bytes) -> bool:
    """Verified by the independent `standardwebhooks` package (Standard Webhooks, like the
    users' notifications); the old `X-Goalport-Signature` header is gone."""
    lowered = {k.lower(): v for k, v in headers.items()}
    assert "x-goalport-signature" not in lowered
    Webhook(SECRET).verify(raw, lowered)  # raises if the signature does not verify
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(raw.replace(b'"event"', b'"Event"'), lowered)
    return True


@pytest.mark.slow
def test_a_failed_run_is_alerted_signed_and_naming_no_user(alerting, receiver, database, storage):
    users = sorted(database.all_user_ids())
    for user_id in users:
        request_export(database.engine, user_id, "json")
    (batch,) = claim_pending_exports(database.engine, claimant="sensor")
    run_request = export_run_request(batch)
    config = run_request.run_config["ops"]["extracted_batch"]["config"]
    # the run names its users too (as one launched by hand does), and its step fails
    broken = ExportConfig(**{**config, "user_ids": users, "formats": ["pdf"]})
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("export_job").execute_in_process(
            run_config=dg.RunConfig(ops={"extracted_batch": broken}),
            instance=instance,
            tags=run_request.tags,
            resources={"database": database, "storage": storage},
            raise_on_error=False,
        )
        assert not result.success
        with dg.build_run_status_sensor_context(
            sensor_name=run_failure_alert_sensor.name,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            resources={"database": database},
        ) as context:
            run_failure_alert_sensor(context.for_run_failure())

    ((path, headers, raw),) = receiver.requests
    alert = json.loads(raw)
    assert path == "/alerts" and signed_correctly(headers, raw)
    assert headers["X-Goalport-Event"] == "run.failed"
    assert {k.lower(): v for k, v in headers.items()}["webhook-id"] == alert["alertId"]
    assert alert["job"] == "export_job" and alert["runId"] == result.run_id
    assert alert["kind"] == "exports" and alert["batchId"] == batch.batch_id
    assert "extracted_batch" in alert["message"]  # Dagster's message: the failed step
    assert "pdf" not in raw.decode()  # not the step's error, which may quote user data
    assert not any(user_id in raw.decode() for user_id in users)


def test_a_failure_message_naming_a_user_is_left_out(database):
    user_id = database.all_user_ids()[0]
    kept = "Execution of run for \"export_job\" failed. Steps failed: ['export_files']."
    assert message_without_users(database.engine, kept) == kept
    assert message_without_users(database.engine, f"could not export {user_id}.") is None
    assert message_without_users(database.engine, f"user_ids=['{user_id}']") is None


def test_without_a_secret_no_alert_is_sent_and_the_tick_says_why(monkeypatch, receiver):
    monkeypatch.setenv("GOALPORT_ALERT_WEBHOOK_URL", receiver.url + "/alerts")
    monkeypatch.delenv("GOALPORT_ALERT_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("GOALPORT_WEBHOOK_SECRET", raising=False)
    error = send_alert({"event": "run.failed"})
    assert error is not None and "GOALPORT_ALERT_WEBHOOK_SECRET" in error
    monkeypatch.delenv("GOALPORT_ALERT_WEBHOOK_URL")
    assert send_alert({"event": "run.failed"}) is None  # not configured: nothing to do
    assert receiver.requests == []


def test_a_secret_that_is_not_a_standard_webhooks_one_sends_nothing(receiver):
    error = send_alert({"event": "run.failed"}, url=receiver.url + "/alerts", secret="hunter2")
    assert error is not None and "whsec_" in error and "hunter2" not in error
    assert receiver.requests == []


def test_redirects_are_not_followed_and_a_silent_receiver_is_given_up(receiver):
    error = send_alert({"event": "run.failed"}, url=receiver.url + "/redirect", secret=SECRET)
    assert error is not None and "307" in error
    assert "/redirect" not in error  # a webhook's path is often its credential: never logged
    assert [p for p, _, _ in receiver.requests] == ["/redirect"]  # never /elsewhere

    started = time.monotonic()
    error = send_alert(
        {"event": "run.failed"}, url=receiver.url + "/slow", secret=SECRET, timeout=0.5
    )
    assert error is not None and "unreachable" in error
    assert time.monotonic() - started < 2.5


def test_a_dead_lettered_notification_is_alerted_by_job_id(alerting, receiver, database):
    user_id = database.all_user_ids()[0]
    job_id = request_export(database.engine, user_id, "json")
    claim_pending_exports(database.engine)
    fail_exports(database.engine, "the batch failed", job_ids=[job_id])

    at_once = Backoff(base=dt.timedelta(0), max_attempts=2)
    app_secret = "whsec_" + base64.b64encode(b"app-secret").decode()
    first = deliver_notifications(
        database.engine, url=receiver.url + "/broken", secret=app_secret, backoff=at_once
    )
    assert first.failed and receiver.posts_to("/alerts") == []  # one more try to come
    last = deliver_notifications(
        database.engine, url=receiver.url + "/broken", secret=app_secret, backoff=at_once
    )
    (notification_id,) = last.failed
    ((path, headers, raw),) = [r for r in receiver.requests if r[0] == "/alerts"]
    alert = json.loads(raw)
    assert headers["X-Goalport-Event"] == "notification.dead_lettered"
    assert alert["notificationId"] == notification_id and alert["jobId"] == job_id
    assert alert["attempts"] == 2 and alert["notificationKind"] == "export.failed"
    assert user_id not in raw.decode() and signed_correctly(headers, raw)
