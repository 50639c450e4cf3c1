"""Export notifications: an outbox row written in the same transaction as the status change
it announces, and a webhook client that delivers the outbox, signed.

Writing the notification with the row change means none is lost if the process dies before
it is sent, and none is sent for a change that rolled back. Delivery happens after commit
(the run right after its batch, the daily clean-up for what failed): without a webhook URL
the outbox stays for the app to read; without a secret nothing is sent, because a receiver
cannot trust an unsigned webhook.
"""

from __future__ import annotations

import enum
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.exports.job_rows import ExportJob
from resources import schema, settings
from resources.alerts import dead_letter_alert, send_alert
from resources.audit import new_id, utc_now
from resources.webhooks import sign_webhook_body

log = logging.getLogger(__name__)
outbox_table = schema.notification_outbox
EXPORT_COMPLETED, EXPORT_FAILED = "export.completed", "export.failed"


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


def queue_notification(conn: sa.Connection, job: ExportJob, kind: str, extra: dict) -> str:
    """An outbox row about `job`, inside the caller's transaction; returns its id."""
    notification_id = new_id("ntf_")
    payload = {
        "event": kind,
        "notificationId": notification_id,
        "jobId": job.id,
        "userId": job.user_id,
        "exportType": job.export_type,
        "format": job.format,
        **extra,
    }
    conn.execute(
        outbox_table.insert().values(
            id=notification_id,
            userId=job.user_id,
            kind=kind,
            payload=json.dumps(payload, sort_keys=True),
            status=OutboxStatus.PENDING.value,
            attempts=0,
            createdAt=utc_now(),
        )
    )
    return notification_id


def queue_failure_notification(conn: sa.Connection, job: ExportJob, message: str) -> str:
    return queue_notification(conn, job, EXPORT_FAILED, {"error": message})


@dataclass
class DeliveryOutcome:
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_configured: bool = False


def deliver_notifications(
    engine: sa.Engine,
    *,
    ids: Sequence[str] | None = None,
    url: str | None = None,
    secret: str | None = None,
    timeout: float = 10.0,
    max_attempts: int = 5,
) -> DeliveryOutcome:
    """POST pending outbox notifications to the webhook (GOALPORT_WEBHOOK_URL), signed
    under GOALPORT_WEBHOOK_SECRET.

    `ids` limits delivery to those notifications; otherwise every pending one is tried.
    Receivers should de-duplicate on `X-Goalport-Delivery`: a delivery whose response was
    lost is sent again.
    """
    url = url if url is not None else settings.webhook_url()
    secret = secret if secret is not None else settings.webhook_secret()
    outcome = DeliveryOutcome()
    if not url:
        outcome.not_configured = True
        return outcome
    if ids is not None and not ids:
        return outcome
    query = sa.select(outbox_table).where(
        outbox_table.c.status == OutboxStatus.PENDING.value,
        outbox_table.c.attempts < max_attempts,
    )
    if ids is not None:
        query = query.where(outbox_table.c.id.in_(list(ids)))
    with engine.connect() as conn:
        pending = conn.execute(query.order_by(outbox_table.c.createdAt)).mappings().all()
    for row in pending:
        error = (
            _post_webhook(url, secret, row["id"], row["kind"], row["payload"].encode(), timeout)
            if secret
            else "GOALPORT_WEBHOOK_SECRET is not set: refusing to send an unsigned webhook"
        )
        attempts = row["attempts"] + 1
        values = {"attempts": attempts, "lastError": error}
        if error is None:
            values.update(status=OutboxStatus.SENT.value, sentAt=utc_now())
            outcome.sent.append(row["id"])
        else:
            gave_up = attempts >= max_attempts
            values["status"] = (OutboxStatus.FAILED if gave_up else OutboxStatus.PENDING).value
            outcome.failed[row["id"]] = error
        with engine.begin() as conn:
            conn.execute(outbox_table.update().where(outbox_table.c.id == row["id"]).values(values))
        if values["status"] == OutboxStatus.FAILED.value:
            _alert_dead_letter(row, attempts)
    return outcome


def _alert_dead_letter(row: sa.RowMapping, attempts: int) -> None:
    """Tell the operators that a notification was given up (its job by id, no user)."""
    job_id = json.loads(row["payload"]).get("jobId")
    alert = dead_letter_alert(
        notification_id=row["id"], kind=row["kind"], job_id=job_id, attempts=attempts
    )
    error = send_alert(alert)
    if error:
        log.warning("dead-letter alert for notification %s not sent: %s", row["id"], error)


def _post_webhook(
    url: str, secret: str, delivery_id: str, kind: str, body: bytes, timeout: float
) -> str | None:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "goalport-webhook/1",
            "X-Goalport-Event": kind,
            "X-Goalport-Delivery": delivery_id,
            "X-Goalport-Signature": sign_webhook_body(body, secret),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        return f"webhook {url} answered {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError) as exc:
        return f"webhook {url} unreachable: {getattr(exc, 'reason', exc)}"
    return None
