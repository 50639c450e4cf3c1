"""Ids, pseudonyms and the audit trail that every goalport operation leaves behind.

`DataAuditLog` rows say what was done with a user's data (operation, type, record count,
table names, who asked): never file contents, keys or secrets. `subject_ref` is a keyed
hash of the user id, kept on every row so that records outlive an erasure without naming
the person.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable

import sqlalchemy as sa

from resources import schema
from resources.settings import pseudonym_key


def new_id(prefix: str = "") -> str:
    """A random, URL-safe text id (time-ordered prefix so ids sort by creation)."""
    stamp = format(int(dt.datetime.now(dt.UTC).timestamp() * 1000), "x")
    return f"{prefix}{stamp}{secrets.token_hex(8)}"


def utc_now() -> dt.datetime:
    """Now, UTC, at millisecond precision like every timestamp goalport stores."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def subject_ref(user_id: str) -> str:
    """A pseudonym for a user: HMAC-SHA256 of the id under the install's pseudonym key
    (`resources.settings.pseudonym_key`: GOALPORT_PSEUDONYM_KEY, else ./var/pseudonym-key)."""
    return "subj_" + hmac.new(pseudonym_key(), user_id.encode(), hashlib.sha256).hexdigest()[:32]


def record_audit(
    connection: sa.Connection,
    *,
    user_id: str | None,
    operation: str,
    operation_type: str | None = None,
    data_types: Iterable[str] = (),
    record_count: int | None = None,
    actor: str | None = None,
    details: dict | None = None,
    subject: str | None = None,
) -> str:
    """Insert one DataAuditLog row inside the caller's transaction; returns its id."""
    audit_id = new_id("aud_")
    connection.execute(
        schema.data_audit_log.insert().values(
            id=audit_id,
            userId=user_id,
            subjectRef=subject or (subject_ref(user_id) if user_id else None),
            operation=operation,
            operationType=operation_type,
            dataTypes=json.dumps(sorted(set(data_types))),
            recordCount=record_count,
            actor=actor,
            details=json.dumps(details or {}, sort_keys=True, default=str),
            createdAt=utc_now(),
        )
    )
    return audit_id
