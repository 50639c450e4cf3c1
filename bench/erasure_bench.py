"""Erasure of many users of the seeded population, against deleting their rows alone.

Runs on a COPY of the bench database (CREATE DATABASE ... TEMPLATE), never on it: erasure
deletes rows. The copy is migrated (this branch's tables), GOALPORT_BENCH_ERASURE_USERS
users (default 1,000) are erased one by one through `assets.gdpr.erasure` (request,
tombstone, rows, storage sweep, verification), and as many other users have their rows
deleted by plain DELETEs (the baseline: the least an erasure must do). Prints users/s of
each, the ratio, and the share of the erasure spent verifying (the scan of every text
column). The copy is dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
import uuid

import sqlalchemy as sa


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(
        sa.make_url(url).set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
    )


def _copy_database(url: str) -> str:
    source = sa.make_url(url).database
    name = f"goalport_bench_erasure_{uuid.uuid4().hex[:8]}"
    admin = _admin(url)
    for attempt in range(30):  # the template must have no other session for a moment
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{source}"'))
            break
        except sa.exc.OperationalError:
            if attempt == 29:
                raise
            time.sleep(2)
    admin.dispose()
    return sa.make_url(url).set(database=name).render_as_string(hide_password=False)


def _drop_database(url: str) -> None:
    admin = _admin(url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def _delete_rows_only(engine: sa.Engine, user_id: str) -> None:
    from resources import schema
    from resources.schema import owner_column

    with engine.begin() as conn:
        for table in reversed(schema.APP_TABLES):
            conn.execute(table.delete().where(table.c[owner_column(table.name)] == user_id))


def run(database_url: str) -> dict:
    from assets.gdpr import erasure, erasure_verify
    from migrations import upgrade
    from resources.storage import ObjectStorage

    count = int(os.environ.get("GOALPORT_BENCH_ERASURE_USERS", "1000"))
    copy = _copy_database(database_url)
    try:
        upgrade(copy)
        engine = sa.create_engine(copy)
        with engine.connect() as conn:
            users = list(
                conn.execute(
                    sa.text('SELECT id FROM "User" ORDER BY id LIMIT :n'), {"n": 2 * count}
                ).scalars()
            )
        erased, baseline = users[:count], users[count:]
        storage = ObjectStorage(url=tempfile.mkdtemp(prefix="goalport-erasure-bench-"))
        verifying = 0.0
        started = time.perf_counter()
        for user_id in erased:
            request = erasure.request_erasure(engine, user_id, grace=dt.timedelta(0))
            outcome = erasure.execute_erasure(engine, storage, request.id)
            assert outcome.verified, outcome.request.error_message
        erasing = time.perf_counter() - started
        # the verification alone, once more per user, to tell its share
        started = time.perf_counter()
        for user_id in erased[: max(1, count // 10)]:
            erasure_verify.verify_erased(engine, storage, user_id)
        verifying = (time.perf_counter() - started) * count / max(1, count // 10)
        started = time.perf_counter()
        for user_id in baseline:
            _delete_rows_only(engine, user_id)
        deleting = time.perf_counter() - started
        engine.dispose()
    finally:
        _drop_database(copy)
    result = {
        "users": count,
        "erasure_users_per_second": round(count / erasing, 2),
        "rows_only_users_per_second": round(len(baseline) / deleting, 2) if baseline else None,
        "verification_share": round(min(1.0, verifying / erasing), 3),
    }
    print(
        f"   erasure: {count} users in {erasing:.1f} s = {result['erasure_users_per_second']} "
        f"users/s; rows only: {result['rows_only_users_per_second']} users/s "
        f"(x{erasing / deleting * len(baseline) / count:.1f} slower); "
        f"verification ~{result['verification_share']:.0%} of the erasure"
    )
    return result
