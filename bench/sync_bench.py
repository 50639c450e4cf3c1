"""Sync benchmark, in a scratch PostgreSQL database of its own (dropped afterwards):

- initial sync of a heavy user (50,000 rows): every page of `pull_changes` (5,000 rows a
  page) serialised as the API sends it, rows/s as a ratio to `AppDatabase.extract` of the
  same user in the same run (ADBC binary COPY into Arrow: the export path);
- incremental pull after 10 edits by the app: `GET /api/v1/sync/changes?since=` over HTTP
  against uvicorn on loopback, p50 and p95 of 30 rounds (target p50 < 50 ms);
- a push of 1,000 changes (updates of progress notes) through `POST /api/v1/sync/push`;
- the triggers' cost on the app's own writes: a bulk INSERT of 100,000 Progress rows with
  the triggers and with them disabled, interleaved, best of 3 each (target < 30% slower).

`run(database_url)` takes the URL of a PostgreSQL server (any database on it); nothing here
asserts. Wall times on a shared machine are noisy: the ratios are measured in one run.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
import uuid

import sqlalchemy as sa

ROWS = 50_000
PROGRESS_ROWS = 100_000
ROUNDS = 30


def run(database_url: str) -> dict:
    from bench.import_bench import heavy_user_tables, scratch_database
    from migrations import upgrade
    from synthetic.load import load_population

    with scratch_database(database_url) as database:
        upgrade(database.url)
        user_id, tables = heavy_user_tables(ROWS)
        load_population(database.engine, tables)
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
        result = {"rows": sum(t.num_rows for t in tables.values())}
        result |= _initial_sync(database, user_id)
        result |= _over_http(database, user_id)
        result |= _trigger_overhead(database, user_id)
    _print(result)
    return result


def _initial_sync(database, user_id: str) -> dict:
    from assets.sync.changelog import pull_changes

    best_pull, best_extract = float("inf"), float("inf")
    for _ in range(3):
        started = time.perf_counter()
        cursor, rows, pages = None, 0, 0
        while True:
            page = pull_changes(database.engine, user_id, cursor, limit=5000)
            body = json.dumps(
                {
                    "changes": [c.as_dict() for c in page.changes],
                    "cursor": page.cursor.encode(),
                    "hasMore": page.has_more,
                }
            )
            rows += len(page.changes)
            pages += 1
            cursor = page.cursor
            if not page.has_more:
                break
        best_pull = min(best_pull, time.perf_counter() - started)
        started = time.perf_counter()
        extracted = database.extract([user_id])
        best_extract = min(best_extract, time.perf_counter() - started)
    extracted_rows = sum(t.num_rows for t in extracted.tables.values())
    assert body  # the last page was serialised
    return {
        "initial_sync_rows": rows,
        "initial_sync_pages": pages,
        "initial_sync_seconds": round(best_pull, 3),
        "initial_sync_rows_per_s": round(rows / best_pull),
        "extract_rows": extracted_rows,
        "extract_seconds": round(best_extract, 3),
        "extract_rows_per_s": round(extracted_rows / best_extract),
        "initial_sync_vs_extract": round((rows / best_pull) / (extracted_rows / best_extract), 3),
    }


def _over_http(database, user_id: str) -> dict:
    import httpx
    import uvicorn

    from api.app import create_app
    from api.config import ApiConfig
    from api.rate_limit import RateLimit
    from api.tokens import create_token
    from resources import schema
    from resources.storage import ObjectStorage

    config = ApiConfig(
        database=database,
        storage=ObjectStorage(url="/tmp/goalport-sync-bench"),
        download_secret=b"sync-bench-download-secret-0123456789",
        token_limit=RateLimit(10**6, 60),
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
        )  # fmt: skip
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    token = create_token(database.engine, user_id, ["sync"])[1]
    goal, progress = schema.goal, schema.progress
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        ) as client:
            cursor = None
            while True:  # the device's initial sync
                params = {"limit": 5000, "deviceId": "bench"} | (
                    {"since": cursor} if cursor else {}
                )
                body = client.get("/api/v1/sync/changes", params=params).json()
                cursor = body["cursor"]
                if not body["hasMore"]:
                    break
            with database.engine.connect() as conn:
                goal_ids = list(conn.scalars(sa.select(goal.c.id).where(goal.c.userId == user_id)))
            latencies = []
            for n in range(ROUNDS):
                with database.engine.begin() as conn:
                    for i in range(10):
                        conn.execute(
                            goal.update()
                            .where(goal.c.id == goal_ids[(n * 10 + i) % len(goal_ids)])
                            .values(description=f"edit {n}.{i}")
                        )
                started = time.perf_counter()
                body = client.get(
                    "/api/v1/sync/changes", params={"since": cursor, "deviceId": "bench"}
                ).json()
                latencies.append(time.perf_counter() - started)
                assert len(body["changes"]) == 10, body
                cursor = body["cursor"]
            # a push of 1,000 changes: new notes on progress rows, at their current versions
            with database.engine.connect() as conn:
                rows = conn.execute(
                    sa.select(progress.c.id, schema.sync_change.c.seq)
                    .join(
                        schema.sync_change,
                        sa.and_(
                            schema.sync_change.c.tableName == "Progress",
                            schema.sync_change.c.rowId == progress.c.id,
                        ),
                    )
                    .where(progress.c.userId == user_id)
                    .limit(1000)
                ).all()
            changes = [
                {"changeId": uuid.uuid4().hex, "table": "Progress", "id": row_id, "op": "upsert",
                 "baseVersion": version, "fields": {"notes": f"pushed note {i}"}}
                for i, (row_id, version) in enumerate(rows)
            ]  # fmt: skip
            started = time.perf_counter()
            pushed = client.post(
                "/api/v1/sync/push", json={"deviceId": "bench", "changes": changes}
            )
            push_seconds = time.perf_counter() - started
            statuses = [r["status"] for r in pushed.json()["results"]]
            assert statuses.count("applied") == len(changes), set(statuses)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    latencies.sort()
    trips = []
    for _ in range(ROUNDS):  # the load of the machine: a bare round trip, measured alike
        with database.engine.connect() as conn:
            started = time.perf_counter()
            conn.execute(sa.text("SELECT 1")).scalar()
            trips.append(time.perf_counter() - started)
    return {
        "round_trip_p50_ms": round(statistics.median(trips) * 1000, 2),
        "incremental_pull_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "incremental_pull_p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))] * 1000, 1),
        "push_1000_seconds": round(push_seconds, 3),
        "push_changes_per_s": round(len(changes) / push_seconds),
    }


def _trigger_overhead(database, user_id: str) -> dict:
    from resources import schema

    goal = schema.goal
    with database.engine.connect() as conn:
        goal_ids = list(conn.scalars(sa.select(goal.c.id).where(goal.c.userId == user_id)))
    insert = sa.text(
        'INSERT INTO "Progress" (id, "userId", "goalId", value, "recordedAt") '
        "SELECT :tag || g, :user, (CAST(:goals AS text[]))[1 + g % :n], g % 100, now() "
        "FROM generate_series(1, :rows) g"
    )
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):
        for with_triggers in (False, True):
            tag = f"bench{uuid.uuid4().hex[:6]}_"
            with database.engine.begin() as conn:
                if not with_triggers:
                    conn.execute(sa.text('ALTER TABLE "Progress" DISABLE TRIGGER USER'))
                started = time.perf_counter()
                conn.execute(
                    insert,
                    {"tag": tag, "user": user_id, "goals": goal_ids, "n": len(goal_ids),
                     "rows": PROGRESS_ROWS},
                )  # fmt: skip
                times[with_triggers].append(time.perf_counter() - started)
                if not with_triggers:
                    conn.execute(sa.text('ALTER TABLE "Progress" ENABLE TRIGGER USER'))
            with database.engine.begin() as conn:
                conn.execute(sa.text('ALTER TABLE "Progress" DISABLE TRIGGER USER'))
                conn.execute(sa.text('DELETE FROM "Progress" WHERE id LIKE :t'), {"t": tag + "%"})
                conn.execute(sa.text('ALTER TABLE "Progress" ENABLE TRIGGER USER'))
                conn.execute(
                    sa.text('DELETE FROM "SyncChange" WHERE "rowId" LIKE :t'), {"t": tag + "%"}
                )
            with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(sa.text('VACUUM "Progress", "SyncChange"'))
    without, with_ = min(times[False]), min(times[True])
    return {
        "insert_100k_progress_without_triggers_s": round(without, 3),
        "insert_100k_progress_with_triggers_s": round(with_, 3),
        "trigger_overhead": round(with_ / without - 1, 3),
        "insert_runs": {
            k and "with" or "without": [round(t, 3) for t in v] for k, v in times.items()
        },
    }


def _print(result: dict) -> None:
    print(
        f"   initial sync of {result['initial_sync_rows']:,} rows in "
        f"{result['initial_sync_pages']} pages: {result['initial_sync_seconds']} s "
        f"({result['initial_sync_rows_per_s']:,} rows/s); extraction of the same user "
        f"{result['extract_seconds']} s ({result['extract_rows_per_s']:,} rows/s): "
        f"ratio {result['initial_sync_vs_extract']}"
    )
    print(
        f"   incremental pull after 10 edits: p50 {result['incremental_pull_p50_ms']} ms, "
        f"p95 {result['incremental_pull_p95_ms']} ms (target p50 < 50 ms; a bare database "
        f"round trip meanwhile: p50 {result['round_trip_p50_ms']} ms)"
    )
    print(
        f"   push of 1,000 changes: {result['push_1000_seconds']} s "
        f"({result['push_changes_per_s']:,} changes/s)"
    )
    print(
        f"   bulk insert of {PROGRESS_ROWS:,} Progress rows: "
        f"{result['insert_100k_progress_without_triggers_s']} s without the triggers, "
        f"{result['insert_100k_progress_with_triggers_s']} s with: "
        f"{result['trigger_overhead']:+.0%} (target < +30%)"
    )


if __name__ == "__main__":
    from bench.run import server_url

    print(json.dumps(run(server_url()), indent=2))
