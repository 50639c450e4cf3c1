"""Rate limits, counted in the database so that every replica of the API shares them: one
fixed-window counter row per bucket, moved on by one UPSERT a request. A bucket is a
credential (a token's id, the service), a download link, or a client address (for what
comes without a valid credential). Links and addresses are kept as keyed hashes: the
counter table holds neither a link (a credential) nor an address.

The client address is the connection's peer, unless the peer is one of the configured
trusted proxies: then it is the last address in X-Forwarded-For that is not a trusted
proxy (the entries to its left could be anything the client sent).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import math
from collections.abc import Iterable, Sequence
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


def sweep_past_windows(conn: sa.Connection, now: dt.datetime, keep: dt.timedelta) -> int:
    """Delete the counters of links and addresses whose last window began more than `keep`
    ago (they would start again from 1 anyway); returns how many. Credentials' counters
    stay (erasure deletes a token's)."""
    stale = sa.and_(
        limits_table.c.windowStart < now - keep,
        sa.or_(limits_table.c.bucket.like("link:%"), limits_table.c.bucket.like("addr:%")),
    )
    return conn.execute(limits_table.delete().where(stale)).rowcount


def limit_exceeded(decisions: Iterable[RateDecision]) -> RateDecision | None:
    """The refusing decision that lasts longest, or None when all allow."""
    refused = [d for d in decisions if not d.allowed]
    return max(refused, key=lambda d: d.retry_after) if refused else None


def hashed_bucket(kind: str, value: str, key: bytes) -> str:
    """The bucket of a link or an address: `kind:` and a keyed hash, never the value."""
    return f"{kind}:" + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e, strict=False) for e in entries)


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]
) -> str | None:
    """Who the request is from: `peer`, or through trusted proxies the right-most address
    of X-Forwarded-For that is not one of them (an entry that is not an address ends the
    walk at the last trusted hop)."""
    if peer is None or not proxies or not forwarded_for or not _trusted(peer, proxies):
        return peer
    client = peer
    for entry in reversed(forwarded_for.split(",")):
        entry = entry.strip()
        try:
            ipaddress.ip_address(entry)
        except ValueError:
            return client
        client = entry
        if not _trusted(entry, proxies):
            return entry
    return client
