"""Rate limits per credential, counted in the database so that every replica of the API
shares them: one fixed-window counter row per credential, moved on by one UPSERT a request.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from resources import schema
from resources.schema import as_utc

limits_table = schema.api_rate_limit


@dataclass(frozen=True)
class RateLimit:
    requests: int
    window_seconds: int


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    count: int
    retry_after: int  # seconds until the window ends


def window_start(now: dt.datetime, window_seconds: int) -> dt.datetime:
    stamp = int(now.timestamp()) // window_seconds * window_seconds
    return dt.datetime.fromtimestamp(stamp, dt.UTC)


def count_request(
    conn: sa.Connection, bucket: str, limit: RateLimit, now: dt.datetime
) -> RateDecision:
    """Count one request of `bucket` in the current window; allowed while within the limit."""
    start = window_start(now, limit.window_seconds)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(limits_table).values(bucket=bucket, windowStart=start, count=1)
    current = limits_table.c
    # A late request from a past window counts in the newer one rather than resetting it.
    same_or_newer = current.windowStart >= statement.excluded.windowStart
    upsert = statement.on_conflict_do_update(
        index_elements=[current.bucket],
        set_={
            "count": sa.case((same_or_newer, current.count + 1), else_=1),
            "windowStart": sa.case(
                (same_or_newer, current.windowStart), else_=statement.excluded.windowStart
            ),
        },
    ).returning(current.count, current.windowStart)
    count, started = conn.execute(upsert).one()
    ends = as_utc(started) + dt.timedelta(seconds=limit.window_seconds)
    retry_after = max(1, math.ceil((ends - now).total_seconds()))
    return RateDecision(count <= limit.requests, count, retry_after)
