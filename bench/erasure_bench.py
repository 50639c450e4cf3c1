"""Erasure of many users of the seeded population, against deleting their rows alone.

Runs on a COPY of the bench database (CREATE DATABASE ... TEMPLATE), never on it: erasure
deletes rows. (`bench/run.py` migrates the bench database it is given first: on a branch
that adds a migration, give it a copy, GOALPORT_BENCH_DB=goalport_bench_<branch>.) The copy is migrated (this branch's tables), GOALPORT_BENCH_ERASURE_USERS
users (default 1,000) are erased through `assets.gdpr.erasure` (request, tombstone, rows,
storage sweep, verification) in runs of MAX_ERASURES_PER_RUN, as the sensor launches them;
a few more one request at a time, as `goalport gdpr erase --now` does; and as many other
users have their rows deleted by plain DELETEs (the baseline: the least an erasure must do).
Prints users/s of each, the ratios, and the share of the erasure spent verifying (the
search of every text column of every table). The copy is dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
import uuid

import sqlalchemy as sa

SINGLE_SAMPLE = 20  # users erased one request at a time, for the comparison


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
    from assets.gdpr.defs import MAX_ERASURES_PER_RUN
    from migrations import upgrade
    from resources.storage import ObjectStorage

    count = int(os.environ.get("GOALPORT_BENCH_ERASURE_USERS", "1000"))
    single = max(1, min(SINGLE_SAMPLE, count // 10))
    copy = _copy_database(database_url)
    try:
        upgrade(copy)
        engine = sa.create_engine(copy)
        with engine.connect() as conn:
            users = list(
                conn.execute(
                    sa.text('SELECT id FROM "User" ORDER BY id LIMIT :n'), {"n": 2 * count + single}
                ).scalars()
            )
        erased, alone, baseline = (
            users[:count],
            users[count : count + single],
            users[count + single :],
        )
        storage = ObjectStorage(url=tempfile.mkdtemp(prefix="goalport-erasure-bench-"))
        started = time.perf_counter()
        for i in range(0, len(erased), MAX_ERASURES_PER_RUN):  # what one erasure_job run does
            ids = [
                erasure.request_erasure(engine, u, grace=dt.timedelta(0)).id
                for u in erased[i : i + MAX_ERASURES_PER_RUN]
            ]
            outcomes = erasure.execute_due_erasures(engine, storage, ids)
            assert all(o.verified for o in outcomes), [o.request.error_message for o in outcomes]
        erasing = time.perf_counter() - started
        # one batch's verification again, to tell the share of the search
        started = time.perf_counter()
        subjects = [erasure_verify.Subject(u) for u in erased[:MAX_ERASURES_PER_RUN]]
        erasure_verify.verify_erased_many(engine, storage, subjects)
        verifying = (time.perf_counter() - started) * len(erased) / len(subjects)
        started = time.perf_counter()
        for user_id in alone:  # `goalport gdpr erase --now`: one request, verified alone
            request = erasure.request_erasure(engine, user_id, grace=dt.timedelta(0))
            assert erasure.execute_erasure(engine, storage, request.id).verified
        one_by_one = time.perf_counter() - started
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
        "one_at_a_time_users_per_second": round(single / one_by_one, 2),
        "rows_only_users_per_second": round(len(baseline) / deleting, 2),
        "verification_share": round(min(1.0, verifying / erasing), 3),
    }
    print(
        f"   erasure ({MAX_ERASURES_PER_RUN} per run, as the sensor launches them): {count} "
        f"users in {erasing:.1f} s = {result['erasure_users_per_second']} users/s, "
        f"verification ~{result['verification_share']:.0%} of it"
    )
    print(
        f"   one request at a time (the CLI): {result['one_at_a_time_users_per_second']} users/s "
        f"({single} users); rows only, no fence/sweep/verification (baseline): "
        f"{result['rows_only_users_per_second']} users/s; erasure / baseline = "
        f"{result['erasure_users_per_second'] / result['rows_only_users_per_second']:.2f}"
    )
    return result
