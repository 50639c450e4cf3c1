"""Operators' alerts: a signed JSON POST to GOALPORT_ALERT_WEBHOOK_URL when a run fails or
a notification is dead-lettered (given up after its last delivery attempt).

An alert names jobs, runs, batches and notifications by their ids, never a user: it goes
to an operators' channel, not to the user. A run's failure message is Dagster's own
("Execution of run for ... failed. Steps failed: [...]"), never a step's error (which may
quote users' rows), and even that is left out when any word of it is a user's id.
"""

from __future__ import annotations

import json
import re
import uuid

import sqlalchemy as sa

from resources import schema, settings
from resources.audit import utc_now
from resources.webhooks import post_signed_json

RUN_FAILED, NOTIFICATION_DEAD_LETTERED = "run.failed", "notification.dead_lettered"
ALERT_TIMEOUT_SECONDS = 5.0
_WORDS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{3,}")


def message_without_users(engine: sa.Engine, message: str | None) -> str | None:
    """`message` if no word of it is the id of a user in the app database, else None."""
    if not message:
        return None
    words = {word.strip(".:") for word in _WORDS.findall(message)}
    with engine.connect() as conn:
        named = conn.execute(
            sa.select(schema.user.c.id).where(schema.user.c.id.in_(words)).limit(1)
        ).first()
    return None if named else message


def run_failed_alert(
    *, job: str, run_id: str, kind: str | None, batch_id: str | None, message: str | None
) -> dict:
    return {
        "event": RUN_FAILED,
        "job": job,
        "runId": run_id,
        "kind": kind,
        "batchId": batch_id,
        "message": message,
    }


def dead_letter_alert(*, notification_id: str, kind: str, job_id: str | None, attempts: int):
    return {
        "event": NOTIFICATION_DEAD_LETTERED,
        "notificationId": notification_id,
        "notificationKind": kind,
        "jobId": job_id,
        "attempts": attempts,
    }


def send_alert(
    alert: dict,
    *,
    url: str | None = None,
    secret: str | None = None,
    timeout: float = ALERT_TIMEOUT_SECONDS,
) -> str | None:
    """POST `alert` (with an id and a time) signed per Standard Webhooks like the users'
    notifications (`webhook-id` is the alert id); None when sent or when no alert URL is
    configured, otherwise why it was not sent."""
    url = url if url is not None else settings.alert_webhook_url()
    secret = secret if secret is not None else settings.alert_webhook_secret()
    if not url:
        return None
    if not secret:
        return "no GOALPORT_ALERT_WEBHOOK_SECRET (nor GOALPORT_WEBHOOK_SECRET): alert not sent"
    alert_id = f"alr_{uuid.uuid4().hex}"
    body = json.dumps(
        {**alert, "alertId": alert_id, "at": utc_now().isoformat()}, sort_keys=True
    ).encode()
    headers = {"X-Goalport-Event": alert["event"]}
    return post_signed_json(url, secret, alert_id, body, headers, timeout)
