"""Notifications to the app: export ready or failed, import previewed or applied, backup
failed, erasure completed (`KINDS` says what each carries). Each is an outbox row written
in the same transaction as the status change it announces; a webhook client delivers the
outbox, signed per Standard Webhooks.

Receiver and contents: the app's backend (GOALPORT_WEBHOOK_URL) receives every kind and
tells the user. A payload names the user by id (what the app needs to route it) and carries
ids, counts and statuses, never the user's data; an error message is the user's own job's.
The erasure's notification names no one: the user's rows, their pending notifications
included, are deleted in the erasure's transaction, so nothing about them is sent after it,
and the "erasure completed" row carries only the request id and time (the app keeps the
request id from `POST /api/v1/gdpr/erasure` to finish its own side: close the account).

Writing the notification with the row change means none is lost if the process dies before
it is sent, and none is sent for a change that rolled back. Delivery happens after commit,
in the background (`webhook_delivery_sensor` starts a delivery run when one is due):
without a webhook URL the outbox stays for the app to read; without a secret nothing is
sent, because a receiver cannot trust an unsigned webhook.

Signing is Standard Webhooks' (`resources.webhooks`), with the notification id as
`webhook-id`, the same on every attempt (receivers de-duplicate on it). A notification is
due when queued; a failed attempt is tried again after an exponential back-off counted from
that attempt (`base`, `2 base`, `4 base` ..., at most `cap`), stored in `nextAttemptAt`,
which the delivery sensor's query reads through an index; after `max_attempts` the
notification is `dead` (a dead letter, listed by `goalport notifications list --dead` and
`GET /api/v1/webhooks/deliveries?status=dead`). Redirects are not followed.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from assets.exports.job_rows import ExportJob
from resources import schema, settings
from resources.alerts import dead_letter_alert, send_alert
from resources.audit import new_id, utc_now
from resources.webhooks import post_signed_json

log = logging.getLogger(__name__)
outbox_table = schema.notification_outbox
EXPORT_COMPLETED, EXPORT_FAILED = "export.completed", "export.failed"
IMPORT_PREVIEWED, IMPORT_APPLIED = "import.previewed", "import.applied"
BACKUP_FAILED = "backup.failed"
ERASURE_COMPLETED = "erasure.completed"
# what each kind carries besides `event` and `notificationId` (and `userId`, except the
# erasure's): ids, counts, statuses and the user's own error messages, never their data
KINDS = {
    EXPORT_COMPLETED: "jobId, exportType, format, recordsTotal, fileSizeBytes, checksum, "
    "completedAt, expiresAt",
    EXPORT_FAILED: "jobId, exportType, format, error",
    IMPORT_PREVIEWED: "jobId, sourceApp, totals (rows to create, update, delete...), "
    "unresolvedConflicts",
    IMPORT_APPLIED: "jobId, sourceApp, recordsImported, totals",
    BACKUP_FAILED: "jobId, format, error",
    ERASURE_COMPLETED: "requestId, completedAt (no user id: the user is gone; the app knows "
    "the request id from POST /api/v1/gdpr/erasure)",
}


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"  # every attempt failed: a dead letter


@dataclass(frozen=True)
class Backoff:
    """When failed deliveries are tried again (settings: GOALPORT_WEBHOOK_BACKOFF_SECONDS,
    GOALPORT_WEBHOOK_MAX_ATTEMPTS; tests keep them short)."""

    base: dt.timedelta = dt.timedelta(seconds=30)
    cap: dt.timedelta = dt.timedelta(hours=6)
    max_attempts: int = 8

    @classmethod
    def from_settings(cls) -> Backoff:
        return cls(
            base=dt.timedelta(seconds=settings.webhook_backoff_seconds()),
            max_attempts=settings.webhook_max_attempts(),
        )

    def delay_after(self, attempts: int) -> dt.timedelta:
        """How long after failed attempt number `attempts` (1, 2, ...) the next one is due:
        base, 2 base, 4 base ..., at most `cap`."""
        return min(self.base * (2 ** max(attempts - 1, 0)), self.cap)


def queue_event(conn: sa.Connection, user_id: str | None, kind: str, fields: dict) -> str:
    """An outbox row of `kind` about `user_id`, inside the caller's transaction (so it is
    sent only if the change it announces commits); returns its id. `user_id` None: an event
    that must name no one (an erasure's), kept by no user's row."""
    notification_id = new_id("ntf_")
    payload = {"event": kind, "notificationId": notification_id, **fields}
    if user_id is not None:
        payload["userId"] = user_id
    now = utc_now()
    conn.execute(
        outbox_table.insert().values(
            id=notification_id,
            userId=user_id,
            kind=kind,
            payload=json.dumps(payload, sort_keys=True),
            status=OutboxStatus.PENDING.value,
            attempts=0,
            createdAt=now,
            nextAttemptAt=now,
        )
    )
    return notification_id


def queue_notification(conn: sa.Connection, job: ExportJob, kind: str, extra: dict) -> str:
    """An outbox row about `job`, inside the caller's transaction; returns its id."""
    fields = {"jobId": job.id, "exportType": job.export_type, "format": job.format, **extra}
    return queue_event(conn, job.user_id, kind, fields)


def queue_failure_notification(conn: sa.Connection, job: ExportJob, message: str) -> str:
    """`backup.failed` for a backup's row, else `export.failed`."""
    kind = BACKUP_FAILED if job.export_type == "backup" else EXPORT_FAILED
    return queue_notification(conn, job, kind, {"error": message})


@dataclass
class DeliveryOutcome:
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_configured: bool = False


def _due(engine: sa.Engine, now: dt.datetime, ids, limit: int | None = None):
    """Pending notifications whose next attempt is due, the longest waiting first (by the
    index on status and nextAttemptAt)."""
    outbox = outbox_table.c
    query = sa.select(outbox_table).where(
        outbox.status == OutboxStatus.PENDING.value, outbox.nextAttemptAt <= now
    )
    if ids is not None:
        query = query.where(outbox.id.in_(list(ids)))
    query = query.order_by(outbox.nextAttemptAt, outbox.id).limit(limit)
    with engine.connect() as conn:
        return conn.execute(query).mappings().all()


def due_notifications(
    engine: sa.Engine, now: dt.datetime | None = None, limit: int | None = None
) -> list[tuple[str, int]]:
    """(id, attempts) of the pending notifications whose next attempt is due."""
    return [(r["id"], r["attempts"]) for r in _due(engine, now or utc_now(), None, limit)]


def deliver_notifications(
    engine: sa.Engine,
    *,
    ids: Sequence[str] | None = None,
    url: str | None = None,
    secret: str | None = None,
    timeout: float | None = None,
    backoff: Backoff | None = None,
) -> DeliveryOutcome:
    """POST the pending outbox notifications that are due to the webhook
    (GOALPORT_WEBHOOK_URL), signed under GOALPORT_WEBHOOK_SECRET; a failure is tried again
    after the back-off, and is a dead letter after the last attempt.

    `ids` limits delivery to those notifications. Receivers de-duplicate on `webhook-id`:
    a delivery whose response was lost is sent again.
    """
    url = url if url is not None else settings.webhook_url()
    secret = secret if secret is not None else settings.webhook_secret()
    timeout = timeout if timeout is not None else settings.webhook_timeout_seconds()
    backoff = backoff or Backoff.from_settings()
    outcome = DeliveryOutcome()
    if not url:
        outcome.not_configured = True
        return outcome
    if ids is not None and not ids:
        return outcome
    for row in _due(engine, utc_now(), ids):
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
            gave_up = attempts >= backoff.max_attempts
            values["status"] = (OutboxStatus.DEAD if gave_up else OutboxStatus.PENDING).value
            values["nextAttemptAt"] = utc_now() + backoff.delay_after(attempts)
            outcome.failed[row["id"]] = error
        with engine.begin() as conn:
            conn.execute(
                outbox_table.update()
                .where(
                    outbox_table.c.id == row["id"],
                    outbox_table.c.attempts == row["attempts"],  # not if another run sent it
                )
                .values(values)
            )
        if values["status"] == OutboxStatus.DEAD.value:
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


def list_notifications(
    engine: sa.Engine,
    *,
    status: str | None = None,
    user_id: str | None = None,
    limit: int = 100,
) -> list[dict]:
    """Outbox rows, newest first, of one status and/or one user."""
    query = sa.select(outbox_table)
    if status:
        query = query.where(outbox_table.c.status == status)
    if user_id:
        query = query.where(outbox_table.c.userId == user_id)
    with engine.connect() as conn:
        rows = conn.execute(
            query.order_by(outbox_table.c.createdAt.desc(), outbox_table.c.id.desc()).limit(limit)
        ).mappings()
        return [dict(r) for r in rows]


def _post_webhook(
    url: str, secret: str, message_id: str, kind: str, body: bytes, timeout: float
) -> str | None:
    return post_signed_json(url, secret, message_id, body, {"X-Goalport-Event": kind}, timeout)
