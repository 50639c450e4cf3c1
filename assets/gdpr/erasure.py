"""Erasure (GDPR Art. 17): a request, a grace period, then every trace of a user removed and
proven gone. Dagster-free: the erasure job, its sensor and the CLI all call this.

A request (`ErasureRequest` row, `pending`) waits until `notBefore` (the grace period, in
which it can be cancelled). Executing it:

1. in ONE transaction: the erasure tombstone (`resources.erasure_fence`: from its commit on,
   no writer records the user again, and runs in flight delete what they write), every row of the user in every app table and in goalport's own tables
   (export/import jobs, import history, external refs, backup settings, notifications, API
   tokens and their rate-limit counters, the wrapped key: crypto-shredding every backup
   encrypted to it), private templates they
   authored deleted and public ones made anonymous; their audit-log entries keep only the
   pseudonym (`subjectRef`), with every personal value taken out of `actor` and `details`.
   The request moves to `erasing`, remembering (in `receipt`) the backup destinations
   it still has to clean, so that a crash after the commit can be resumed;
2. their files deleted: every folder of theirs in the main storage
   (`resources.storage_layout.user_prefixes`: exports, backups, GDPR bundles, the import
   inbox and stored import plans), every recorded `FileLocation` (`--out` copies, the bulk
   job's out_url, backup destinations, GDPR bundles), and the user's folders below each
   of those other storages and their backup destinations (a destination of the user's own
   is opened with their stored credentials, `resources.destinations`, which are kept by
   pseudonym until the erasure completes and deleted then);
3. the orchestrator's own records (Dagster's runs and their events, `assets.gdpr.defs`):
   every run that mentions the user is deleted, when a `run_history` is given (the erasure
   job and the CLI give it). The user's runs are found through rows step 1 deletes, so
   they are looked up before it and kept in the `erasing` state (`dagsterRunIds`): a
   resumed erasure sweeps them too. The receipt's `dagsterRecords` says what was searched
   and deleted there (None: no run history was given);
4. verification (`assets.gdpr.erasure_verify`, for a batch of requests at once): every
   text column of every table in the database (found by reflection, so tables added later
   are covered) is searched for the user id, every storage prefix is listed (in the main
   storage and every other place recorded), and the run history searched again; all must
   find nothing;
5. the request becomes `completed`, its `userId` is cleared, and a receipt with no personal
   data (pseudonym, times, tables and prefixes touched, counts, what was searched and the
   verification's result) goes into the audit log. Or it becomes `failed`, saying where
   something was found or which step raised, keeping what a retry needs: the sensor runs
   it again after a back-off that doubles with each failure (`retry_delay`).

Every step can be repeated: a request is accepted for a user no row names any more (their
files may remain), and erasing twice sweeps every place again and reports what it found.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from assets.exports.notifications import ERASURE_COMPLETED, queue_event
from assets.gdpr.erasure_verify import (
    RunHistory,
    Subject,
    contains,
    other_storages,
    verify_erased_many,
)
from resources import schema
from resources.audit import new_id, record_audit, subject_ref, utc_now
from resources.database import transaction
from resources.destinations.credentials import forget_subject_credentials
from resources.destinations.storage import place_opener
from resources.erasure_fence import (
    erased_users,
    file_locations,
    forget_file_locations,
    lock_subject_exclusively,
    place_tombstone,
)
from resources.schema import as_utc, owner_column
from resources.settings import erasure_grace_period, erasure_retry_base
from resources.storage import ObjectStorage
from resources.storage_layout import user_prefixes

PENDING, ERASING, COMPLETED, FAILED, CANCELLED = (
    "pending",
    "erasing",
    "completed",
    "failed",
    "cancelled",
)
# An erasure still `erasing` this long after its rows were deleted was interrupted: it is
# due again (steps 2-4 are safe to repeat).
RESUME_AFTER = dt.timedelta(minutes=15)
# A failed erasure is retried after erasure_retry_base() * 2**(failures - 1), at most this.
MAX_RETRY_DELAY = dt.timedelta(days=1)
ERASED = "[erased]"

# What an audit entry of an erased user may keep in `details`: what was done, never about
# whom or with what (file URLs, settings, filters and checksums are dropped).
AUDIT_DETAIL_KEYS_KEPT = frozenset(
    {
        "requestId",
        "notBefore",
        "jobId",
        "batchId",
        "runId",
        "format",
        "exportType",
        "sourceApp",
        "mode",
        "totals",
        "changed",
        "fileSizeBytes",
        "encrypted",
        "complete",
        "verifiedRecords",
        "templateId",
        "templateKey",
        "stars",
    }
)

requests_table = schema.erasure_request
audit_table = schema.data_audit_log


class ErasureError(ValueError):
    """The request cannot be made, cancelled or executed; the message says why."""


@dataclass(frozen=True)
class ErasureRequest:
    id: str
    user_id: str | None
    subject_ref: str
    status: str
    requested_at: dt.datetime
    not_before: dt.datetime
    completed_at: dt.datetime | None
    receipt: dict | None
    error_message: str | None
    attempts: int = 0

    @classmethod
    def from_row(cls, row) -> ErasureRequest:
        return cls(
            id=row.id,
            user_id=row.userId,
            subject_ref=row.subjectRef,
            status=row.status,
            requested_at=as_utc(row.requestedAt),
            not_before=as_utc(row.notBefore),
            completed_at=as_utc(row.completedAt),
            receipt=json.loads(row.receipt) if row.receipt else None,
            error_message=row.errorMessage,
            attempts=row.attempts or 0,
        )


# ---------------------------------------------------------------- requests


def holds_data(conn: sa.Connection, user_id: str) -> bool:
    """Whether any table row names the user (a request is accepted either way: files and
    Dagster records can outlive the rows)."""
    if conn.execute(sa.select(schema.user.c.id).where(schema.user.c.id == user_id)).first():
        return True
    for table in schema.OWN_TABLES_WITH_USER:
        if conn.execute(sa.select(sa.literal(1)).where(table.c.userId == user_id).limit(1)).first():
            return True
    template = schema.goal_template
    return (
        conn.execute(sa.select(template.c.id).where(template.c.authorId == user_id)).first()
        is not None
    )


def request_erasure(
    engine: sa.Engine | sa.Connection,
    user_id: str,
    *,
    grace: dt.timedelta | None = None,
    now: dt.datetime | None = None,
    requested_by: str = "the user",
) -> ErasureRequest:
    """A pending request to erase `user_id` after the grace period (None: the configured one).

    A user already pending keeps their request; asking again with a shorter grace brings
    it forward (`--now`), never later; a failed one is brought forward the same way. A
    request is accepted even when no row names the user (erasing twice, or files left by
    an earlier erasure): the execution sweeps every place anyway and its receipt says
    what it found. Each request (and each bringing forward) is in the audit log with who
    asked (`requested_by`: the user, or an operator), which the erasure keeps under the
    pseudonym.
    """
    now = now or utc_now()
    grace = erasure_grace_period() if grace is None else grace
    not_before = now + grace
    with transaction(engine) as conn:
        existing = conn.execute(
            sa.select(requests_table).where(
                requests_table.c.userId == user_id,
                requests_table.c.status.in_([PENDING, ERASING, FAILED]),
            )
        ).first()
        if existing is not None:
            if existing.status in (PENDING, FAILED) and as_utc(existing.notBefore) > not_before:
                conn.execute(
                    requests_table.update()
                    .where(requests_table.c.id == existing.id)
                    .values(notBefore=not_before)
                )
                _audit_request(conn, user_id, existing.id, "erasure-brought-forward", requested_by)
            return _load(conn, existing.id)
        request_id = new_id("era_")
        conn.execute(
            requests_table.insert().values(
                id=request_id,
                userId=user_id,
                subjectRef=subject_ref(user_id),
                status=PENDING,
                requestedAt=now,
                notBefore=not_before,
            )
        )
        _audit_request(conn, user_id, request_id, "erasure-request", requested_by)
        return _load(conn, request_id)


def _audit_request(
    conn: sa.Connection, user_id: str, request_id: str, operation: str, actor: str
) -> None:
    request = _load(conn, request_id)
    erased_before = bool(erased_users(conn, [user_id]))  # an audit row never names them again
    record_audit(
        conn,
        user_id=None if erased_before else user_id,
        subject=request.subject_ref,
        operation=operation,
        operation_type="gdpr",
        actor=actor,
        details={"requestId": request_id, "notBefore": request.not_before.isoformat()},
    )


def _load(conn: sa.Connection, request_id: str) -> ErasureRequest:
    row = conn.execute(sa.select(requests_table).where(requests_table.c.id == request_id)).first()
    if row is None:
        raise ErasureError(f"no erasure request {request_id!r}")
    return ErasureRequest.from_row(row)


def get_erasure_request(engine: sa.Engine, request_id: str) -> ErasureRequest:
    with engine.connect() as conn:
        return _load(conn, request_id)


def cancel_erasure(
    engine: sa.Engine | sa.Connection, user_id: str, *, cancelled_by: str = "the user"
) -> ErasureRequest:
    """Cancel the user's pending request (only possible before it starts); the audit log
    says who cancelled it."""
    with transaction(engine) as conn:
        row = conn.execute(
            sa.select(requests_table).where(
                requests_table.c.userId == user_id, requests_table.c.status == PENDING
            )
        ).first()
        if row is None:
            raise ErasureError(f"user {user_id!r} has no pending erasure request to cancel")
        conn.execute(
            requests_table.update()
            .where(requests_table.c.id == row.id, requests_table.c.status == PENDING)
            .values(status=CANCELLED, completedAt=utc_now())
        )
        _audit_request(conn, user_id, row.id, "erasure-cancel", cancelled_by)
        return _load(conn, row.id)


def erasure_requests(engine: sa.Engine, user_id: str) -> list[ErasureRequest]:
    """Every request about the user, oldest first: by id while they exist, by pseudonym after."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(requests_table)
            .where(
                sa.or_(
                    requests_table.c.userId == user_id,
                    requests_table.c.subjectRef == subject_ref(user_id),
                )
            )
            .order_by(requests_table.c.requestedAt, requests_table.c.id)
        )
        return [ErasureRequest.from_row(r) for r in rows]


def due_erasure_requests(
    engine: sa.Engine, *, now: dt.datetime | None = None, limit: int = 100
) -> list[ErasureRequest]:
    """Pending requests past their grace period, interrupted ones (`erasing` for longer
    than RESUME_AFTER: while erasing, `notBefore` says when it may be resumed) and failed
    ones whose back-off is over (`notBefore` again), oldest first."""
    now = now or utc_now()
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(requests_table)
            .where(
                requests_table.c.status.in_([PENDING, ERASING, FAILED]),
                requests_table.c.userId.is_not(None),
                requests_table.c.notBefore <= now,
            )
            .order_by(requests_table.c.notBefore, requests_table.c.id)
            .limit(limit)
        )
        return [ErasureRequest.from_row(r) for r in rows]


# ---------------------------------------------------------------- execution


@dataclass(frozen=True)
class ErasureOutcome:
    request: ErasureRequest
    receipt: dict

    @property
    def verified(self) -> bool:
        return bool(self.receipt["verification"]["passed"])


def execute_erasure(
    engine: sa.Engine,
    storage: ObjectStorage,
    request_id: str,
    *,
    force: bool = False,
    now: dt.datetime | None = None,
    run_history: RunHistory | None = None,
) -> ErasureOutcome:
    """Carry out one request (see the module docstring); `force` skips the grace period
    (and a failed request's back-off). A step that raises fails the request with the
    reason; it is retried after its back-off."""
    (outcome,) = _execute(
        engine, storage, [request_id], force=force, now=now, run_history=run_history, strict=True
    )
    return outcome


def execute_due_erasures(
    engine: sa.Engine,
    storage: ObjectStorage,
    request_ids: Sequence[str] = (),
    *,
    limit: int = 100,
    run_history: RunHistory | None = None,
) -> list[ErasureOutcome]:
    """Execute the named requests, or every due one; one failing does not stop the others.
    They are verified together (one search of the database for all of them)."""
    ids = list(request_ids) or [r.id for r in due_erasure_requests(engine, limit=limit)]
    return _execute(engine, storage, ids, run_history=run_history)


def _execute(
    engine: sa.Engine,
    storage: ObjectStorage,
    request_ids: Sequence[str],
    *,
    force: bool = False,
    now: dt.datetime | None = None,
    run_history: RunHistory | None = None,
    strict: bool = False,
) -> list[ErasureOutcome]:
    """Steps 1-3 request by request, step 4 for all of them at once, then step 5 each.
    `strict`: a request that cannot run raises ErasureError (else it is skipped)."""
    now = now or utc_now()
    outcomes: dict[str, ErasureOutcome] = {}
    swept: list[tuple[ErasureRequest, dict]] = []
    for request_id in request_ids:
        try:
            request = _runnable(engine, request_id, now, force)
        except ErasureError:
            if strict:
                raise
            continue
        # the user's runs are found through rows step 1 deletes: remembered first, and kept
        # in the request's state so that a resumed erasure (a new process) sweeps them too
        earlier_runs = (request.receipt or {}).get("dagsterRunIds", [])
        run_ids = run_history.remember(request.user_id or "", earlier_runs) if run_history else []
        state = _delete_rows(engine, request, now, run_ids)
        if state is None:  # another process finished it meanwhile
            request = get_erasure_request(engine, request_id)
            outcomes[request_id] = ErasureOutcome(request, request.receipt or {})
            continue
        try:
            state["storageObjectsDeleted"] = _delete_files(engine, storage, request, state)
            user_id = request.user_id or ""
            state["dagsterRecords"] = (
                run_history.sweep(user_id).as_receipt() if run_history else None
            )
        except Exception as exc:  # the request must say why, and be retried
            state.setdefault("storageObjectsDeleted", {})
            failure = {"passed": False, "error": _scrubbed_error(exc, request, state)}
            outcomes[request_id] = _finish(engine, request, state, failure)
            continue
        swept.append((request, state))
    subjects = [Subject(r.user_id or "", tuple(s["destinations"]), r.id) for r, s in swept]
    try:
        checks = verify_erased_many(engine, storage, subjects, run_history=run_history)
    except Exception as exc:
        checks = [{"passed": False, "error": _scrubbed_error(exc, r, s)} for r, s in swept]
    for (request, state), verification in zip(swept, checks, strict=True):
        outcomes[request.id] = _finish(engine, request, state, verification)
    return [outcomes[i] for i in request_ids if i in outcomes]


def _runnable(engine: sa.Engine, request_id: str, now: dt.datetime, force: bool) -> ErasureRequest:
    request = get_erasure_request(engine, request_id)
    if request.status not in (PENDING, ERASING, FAILED) or request.user_id is None:
        raise ErasureError(f"erasure request {request_id} is {request.status}, not pending")
    if request.status != ERASING and request.not_before > now and not force:
        raise ErasureError(
            f"erasure request {request_id} is in its grace period until "
            f"{request.not_before:%Y-%m-%d %H:%M} UTC (it can still be cancelled)"
        )
    return request


def _scrubbed_error(exc: Exception, request: ErasureRequest, state: dict) -> str:
    """Why a step failed, without the user's id or places: the message goes into logs and
    Dagster's records."""
    personal = _longest_first([request.user_id, *state["destinations"]])
    return _scrub_text(f"{type(exc).__name__}: {exc}", personal, ERASED)


def _delete_rows(
    engine: sa.Engine, request: ErasureRequest, now: dt.datetime, run_ids: Sequence[str] = ()
) -> dict | None:
    """Step 1, in one transaction; returns the state that steps 2-4 need.

    The tombstone goes in first, under the fence's exclusive lock (resources/erasure_fence):
    from its commit on, no writer records anything about the user, and runs in flight
    delete the files they write. Their job rows go with the rest: that is how an in-flight
    run is cancelled (it finds its rows gone and the tombstone). Repeating this step (a
    resumed, retried or second erasure) deletes what has appeared since, adding to the
    counts of the earlier attempts.
    """
    with engine.begin() as conn:
        locked = conn.execute(
            sa.select(requests_table).where(requests_table.c.id == request.id).with_for_update()
        ).first()
        if locked is None or locked.status not in (PENDING, ERASING, FAILED):
            return None
        user_id = locked.userId
        earlier = json.loads(locked.receipt) if locked.status != PENDING and locked.receipt else {}
        lock_subject_exclusively(conn, request.subject_ref)
        place_tombstone(conn, request.subject_ref, now)
        destinations = [
            url
            for url in conn.execute(
                sa.select(schema.backup_config.c.destinationUrl).where(
                    schema.backup_config.c.userId == user_id
                )
            ).scalars()
            if url
        ]
        destinations = list(dict.fromkeys([*earlier.get("destinations", []), *destinations]))
        in_flight = _jobs_in_flight(conn, user_id)
        identifying = _identifying_values(conn, user_id)
        token_ids = _api_token_ids(conn, user_id)
        deleted: dict[str, int] = {}
        for table in reversed(schema.APP_TABLES):
            owner = table.c[owner_column(table.name)]
            deleted[table.name] = conn.execute(table.delete().where(owner == user_id)).rowcount
        key_destroyed = False
        for table in schema.OWN_TABLES_WITH_USER:
            if table is audit_table:
                continue
            count = conn.execute(table.delete().where(table.c.userId == user_id)).rowcount
            deleted[table.name] = count
            if table is schema.user_key:
                key_destroyed = count > 0
        template = schema.goal_template
        templates_deleted = conn.execute(
            template.delete().where(
                template.c.authorId == user_id, template.c.visibility != "public"
            )
        ).rowcount
        templates_anonymised = conn.execute(
            template.update().where(template.c.authorId == user_id).values(authorId=None)
        ).rowcount
        deleted["GoalTemplate"] = templates_deleted
        limits = schema.api_rate_limit  # one request counter per API token of theirs
        deleted[limits.name] = conn.execute(
            limits.delete().where(limits.c.bucket.in_(token_ids))
        ).rowcount
        conn.execute(
            requests_table.update()
            .where(requests_table.c.userId == user_id, requests_table.c.id != request.id)
            .values(userId=None)
        )
        pseudonymised = _pseudonymise_audit(
            conn, user_id, request.subject_ref, identifying, [*destinations, *token_ids]
        )
        before = earlier.get("rowsDeleted", {})
        state = {
            "notBefore": earlier.get("notBefore", as_utc(locked.notBefore).isoformat()),
            "startedAt": earlier.get("startedAt", now.isoformat()),
            "rowsDeletedAt": utc_now().isoformat(),
            "rowsDeleted": {
                name: before.get(name, 0) + deleted.get(name, 0) for name in {*before, *deleted}
            },
            "jobsInFlightCancelled": earlier.get("jobsInFlightCancelled", 0) + in_flight,
            "auditEntriesPseudonymised": earlier.get("auditEntriesPseudonymised", 0)
            + pseudonymised,
            "templatesDeleted": earlier.get("templatesDeleted", 0) + templates_deleted,
            "templatesAnonymised": earlier.get("templatesAnonymised", 0) + templates_anonymised,
            "keyDestroyed": bool(earlier.get("keyDestroyed")) or key_destroyed,
            # personal (URLs of the user's), kept only until the erasure completes
            "destinations": destinations,
            # the user's Dagster runs, found through the rows deleted here
            "dagsterRunIds": sorted({*earlier.get("dagsterRunIds", []), *run_ids}),
        }
        conn.execute(
            requests_table.update()
            .where(requests_table.c.id == request.id)
            .values(status=ERASING, receipt=json.dumps(state), notBefore=now + RESUME_AFTER)
        )
        return state


IN_FLIGHT = ("pending", "processing", "staged", "previewed")


def _jobs_in_flight(conn: sa.Connection, user_id: str) -> int:
    """The user's export, backup and import jobs not yet finished (their runs are cancelled
    by deleting these rows under the tombstone)."""
    return sum(
        conn.execute(
            sa.select(sa.func.count()).where(
                table.c.userId == user_id, table.c.status.in_(IN_FLIGHT)
            )
        ).scalar_one()
        for table in (schema.data_export_job, schema.data_import_job)
    )


def _api_token_ids(conn: sa.Connection, user_id: str) -> list[str]:
    """The ids of the user's API tokens: the rate limiter's counters and the `actor` of
    their audit entries (`api-token:<id>`) name them."""
    token = schema.api_token
    return list(conn.scalars(sa.select(token.c.id).where(token.c.userId == user_id)))


def _identifying_values(conn: sa.Connection, user_id: str) -> list[str]:
    """What names the user anywhere: their id and e-mail address."""
    email = conn.execute(
        sa.select(schema.user.c.email).where(schema.user.c.id == user_id)
    ).scalar_one_or_none()
    return _longest_first([user_id, email])


def _longest_first(values) -> list[str]:
    return sorted({v for v in values if v}, key=len, reverse=True)


def _scrub_text(text: str, personal: list[str], replacement: str) -> str:
    for value in personal:
        text = text.replace(value, replacement)
    return text


def _scrub_value(value, personal: list[str], replacement: str):
    if isinstance(value, str):
        return _scrub_text(value, personal, replacement)
    if isinstance(value, list):
        return [_scrub_value(v, personal, replacement) for v in value]
    if isinstance(value, dict):
        return {
            _scrub_text(str(k), personal, replacement): _scrub_value(v, personal, replacement)
            for k, v in value.items()
        }
    return value


def scrub_audit_details(details: str | None, personal: list[str], *, own_entry: bool) -> str:
    """An audit entry's details without personal values. The erased user's own entries keep
    only the keys that say what was done (AUDIT_DETAIL_KEYS_KEPT); other users' entries that
    mention them keep everything but those values."""
    try:
        value = json.loads(details) if details else {}
    except json.JSONDecodeError:
        value = details
    if own_entry:
        if isinstance(value, dict):
            dropped = sorted(k for k in value if k not in AUDIT_DETAIL_KEYS_KEPT)
            value = {k: v for k, v in value.items() if k in AUDIT_DETAIL_KEYS_KEPT}
            if dropped:
                value["erasedKeys"] = dropped
        else:
            value = {"erasedKeys": ["(not an object)"]}
    return json.dumps(_scrub_value(value, personal, ERASED), sort_keys=True, default=str)


def _pseudonymise_audit(
    conn: sa.Connection,
    user_id: str,
    subject: str,
    identifying: list[str],
    destinations: list[str],
) -> int:
    """The user's audit entries keep their pseudonym and lose everything personal (also
    `destinations`: their backup destinations and API token ids; and the client's address
    and user agent); entries of others that name the user (id or e-mail) lose those
    mentions, and nothing else. Returns the number of entries changed."""
    mentions = [
        audit_table.c.userId == user_id,
        *(contains(conn, audit_table.c.actor, v) for v in identifying),
        *(contains(conn, audit_table.c.details, v) for v in identifying),
    ]
    rows = conn.execute(
        sa.select(
            audit_table.c.id, audit_table.c.userId, audit_table.c.actor, audit_table.c.details
        ).where(sa.or_(*mentions))
    ).all()
    updates = []
    for row in rows:
        own = row.userId == user_id
        personal = _longest_first([*identifying, *destinations]) if own else identifying
        actor = row.actor
        if actor is not None and any(v in actor for v in personal):
            actor = subject if own else _scrub_text(actor, personal, ERASED)
        updates.append(
            {
                "audit_id": row.id,
                "new_user": None if own else row.userId,
                "new_actor": actor,
                "new_details": scrub_audit_details(row.details, personal, own_entry=own),
                "own": own,
            }
        )
    for own in (True, False):
        batch = [u for u in updates if u["own"] is own]
        if not batch:
            continue
        statement = (
            audit_table.update()
            .where(audit_table.c.id == sa.bindparam("audit_id"))
            .values(
                userId=sa.bindparam("new_user"),
                actor=sa.bindparam("new_actor"),
                details=sa.bindparam("new_details"),
            )
        )
        if own:
            statement = statement.values(subjectRef=subject, ipAddress=None, userAgent=None)
        conn.execute(statement, [{k: v for k, v in u.items() if k != "own"} for u in batch])
    return len(updates)


def _delete_files(
    engine: sa.Engine, storage: ObjectStorage, request: ErasureRequest, state: dict
) -> dict:
    """Step 2: the user's folders in the main storage, every recorded file location, and
    the user's folders below each backup destination and recorded storage root. A location
    whose file is gone is forgotten; the roots stay in `state["destinations"]` until the
    erasure completes, so that a retry and the verification look there again."""
    user_id = request.user_id
    assert user_id is not None
    deleted = {area: storage.delete_prefix(p) for area, p in user_prefixes(user_id).items()}
    with engine.connect() as conn:
        located = file_locations(conn, request.subject_ref)
    state["destinations"] = list(
        dict.fromkeys([*state["destinations"], *(loc.storage_url for loc in located)])
    )
    # a user's own destination opens with their stored credentials (kept, by pseudonym,
    # until the erasure completes)
    open_place = place_opener(engine, request.subject_ref)
    recorded, gone = 0, []
    for location in located:
        place = open_place(location.storage_url)
        recorded += place.delete_prefix(location.key)  # a file, or a folder (backups)
        if not place.list_including_unfinished(location.key):
            gone.append(location.id)
    deleted["recordedLocations"] = recorded
    deleted["otherStorages"] = sum(
        place.delete_prefix(p)
        for place in other_storages(storage, state["destinations"], open_place)
        for p in user_prefixes(user_id).values()
    )
    with engine.begin() as conn:
        forget_file_locations(conn, gone)
    return deleted


def retry_delay(failures: int) -> dt.timedelta:
    """The back-off after the `failures`-th failure: doubling from erasure_retry_base()."""
    return min(erasure_retry_base() * 2 ** max(0, failures - 1), MAX_RETRY_DELAY)


def _finish(
    engine: sa.Engine, request: ErasureRequest, state: dict, verification: dict
) -> ErasureOutcome:
    """Step 5. Completed: the request forgets the user id and the backup destinations. Failed:
    it keeps both (and the state, to resume from) and is due again after its back-off."""
    completed_at = utc_now()
    receipt = {
        "requestId": request.id,
        "subjectRef": request.subject_ref,
        "requestedAt": request.requested_at.isoformat(),
        "notBefore": state["notBefore"],
        "startedAt": state["startedAt"],
        "rowsDeletedAt": state["rowsDeletedAt"],
        "completedAt": completed_at.isoformat(),
        "rowsDeleted": {k: v for k, v in state["rowsDeleted"].items() if v},
        "tablesTouched": sorted(k for k, v in state["rowsDeleted"].items() if v),
        "jobsInFlightCancelled": state.get("jobsInFlightCancelled", 0),
        "auditEntriesPseudonymised": state["auditEntriesPseudonymised"],
        "templatesDeleted": state["templatesDeleted"],
        "templatesAnonymised": state["templatesAnonymised"],
        "keyDestroyed": state["keyDestroyed"],
        "storageObjectsDeleted": state["storageObjectsDeleted"],
        "dagsterRecords": state.get("dagsterRecords"),
        "attempts": request.attempts + 1,
        "verification": verification,
    }
    receipt["nothingWasHeld"] = not receipt["rowsDeleted"] and not any(
        receipt["storageObjectsDeleted"].values()
    )
    passed = verification["passed"]
    error = None if passed else _where_found(verification)
    values: dict = {
        "status": COMPLETED if passed else FAILED,
        "completedAt": completed_at,
        "errorMessage": error,
        "attempts": request.attempts + (0 if passed else 1),
    }
    if passed:
        values.update(userId=None, receipt=json.dumps(receipt, sort_keys=True))
    else:
        values.update(
            notBefore=completed_at + retry_delay(request.attempts + 1),
            receipt=json.dumps(
                {
                    **receipt,
                    "destinations": state["destinations"],
                    "dagsterRunIds": state.get("dagsterRunIds", []),
                }
            ),
        )
    with engine.begin() as conn:
        done = conn.execute(
            requests_table.update()
            .where(requests_table.c.id == request.id, requests_table.c.status == ERASING)
            .values(**values)
        )
        if done.rowcount == 1 and passed:  # nothing is left where they were: no way in
            forget_subject_credentials(conn, request.subject_ref)
        if done.rowcount == 1:
            record_audit(
                conn,
                user_id=None,
                subject=request.subject_ref,
                operation="erase" if passed else "erase-failed",
                operation_type="gdpr",
                data_types=receipt["tablesTouched"],
                record_count=sum(receipt["rowsDeleted"].values()),
                actor="goalport",
                # an error message may quote a path naming the user
                details=_scrub_value(
                    receipt, _longest_first([request.user_id, *state["destinations"]]), ERASED
                ),
            )
            if passed:  # names no one: the request id is what the app knows it by
                queue_event(
                    conn,
                    None,
                    ERASURE_COMPLETED,
                    {"requestId": request.id, "completedAt": completed_at.isoformat()},
                )
        final = _load(conn, request.id)
    shown = dict(final.receipt or receipt)
    shown.pop("destinations", None)
    shown.pop("dagsterRunIds", None)
    return ErasureOutcome(final, shown)


def _where_found(verification: dict) -> str:
    if "error" in verification:
        return f"the erasure stopped: {verification['error']} (it is retried)"
    places = [f"{f['table']}.{f['column']} ({f['rows']} rows)" for f in verification["rowsFound"]]
    if verification["objectsFound"]:
        places.append(f"{verification['objectsFound']} objects in storage")
    if verification.get("runsFound"):
        places.append(f"{verification['runsFound']} Dagster runs")
    return "verification found the user in " + ", ".join(places) + " (it is retried)"
