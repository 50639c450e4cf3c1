"""Rate limits on what comes without a valid credential, against a real uvicorn and
PostgreSQL: a download link is limited per link and per client address; requests with no
token or a wrong one are limited per address (429 with Retry-After), while a valid token
keeps its own limit; X-Forwarded-For counts only from a configured trusted proxy, and
then names the client in the limits and the audit rows; the counters hold neither a link
nor an address."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import sqlalchemy as sa

from api.rate_limit import RateLimit, client_address, parse_networks
from assets.exports.downloads import make_download_token
from resources import schema
from tests.http_api.conftest import DOWNLOAD_SECRET


def _link(storage, name: str) -> str:
    key = f"exports/rate-test/{name}.json"
    storage.write_bytes(key, b'{"goals": []}')
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    token = make_download_token(key, expires, secret=DOWNLOAD_SECRET)
    return f"/api/v1/data/download/{token}"


def _refused_for_a_while(response) -> bool:
    retry = int(response.headers["Retry-After"])
    return response.status_code == 429 and 1 <= retry <= 60


def test_a_download_link_is_limited_per_link_and_per_address(start_api, api_config, storage):
    api = start_api(
        replace(api_config, link_limit=RateLimit(3, 60), address_limit=RateLimit(6, 60))
    )
    first, second = _link(storage, "first"), _link(storage, "second")
    with api.client() as client:
        assert [client.get(first).status_code for _ in range(3)] == [200] * 3
        refused = client.get(first)
        assert _refused_for_a_while(refused)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert client.head(first).status_code == 429
        # another link from the same address: its own count, until the address's is spent
        assert client.get(second).status_code == 200
        assert _refused_for_a_while(client.get(second))
    with api.config.database.engine.connect() as conn:
        buckets = conn.execute(sa.select(schema.api_rate_limit.c.bucket)).scalars().all()
    assert buckets and all(b.startswith(("link:", "addr:")) for b in buckets)
    assert not any("127.0.0.1" in b or "." in b for b in buckets)  # keyed hashes only


def test_requests_without_a_valid_token_are_limited_per_address(
    start_api, api_config, user_ids, make_token
):
    api = start_api(replace(api_config, address_limit=RateLimit(3, 60)))
    valid = make_token(user_ids[0], scopes=("exports",))
    with api.client() as anonymous, api.client("gp_not-a-real-token") as guessing:
        statuses = [anonymous.get("/api/v1/data/export").status_code for _ in range(2)]
        statuses.append(guessing.get("/api/v1/data/export").status_code)
        assert statuses == [401, 401, 401]
        assert _refused_for_a_while(guessing.get("/api/v1/data/export"))
        assert _refused_for_a_while(anonymous.get("/api/v1/data/export"))
    with api.client(valid) as client:  # a valid token is counted by its own limit
        assert [client.get("/api/v1/data/export").status_code for _ in range(5)] == [200] * 5


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    start_api, api_config, storage, user_ids, make_token
):
    link = _link(storage, "proxied")
    limits = {"link_limit": RateLimit(100, 60), "address_limit": RateLimit(2, 60)}
    direct = start_api(replace(api_config, **limits))
    with (
        direct.client(**{"X-Forwarded-For": "203.0.113.5"}) as one,
        direct.client(**{"X-Forwarded-For": "203.0.113.6"}) as other,
    ):
        assert one.get(link).status_code == 200 and other.get(link).status_code == 200
        assert other.get(link).status_code == 429  # ignored: both are 127.0.0.1

    proxied = start_api(
        replace(api_config, **limits, trusted_proxies=parse_networks(["127.0.0.0/8"]))
    )
    alice = user_ids[0]
    # the client's own spoofed entry (left) is not believed: the proxy's (right) is
    spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.5"}
    with (
        proxied.client(**spoofed) as one,
        proxied.client(**{"X-Forwarded-For": "203.0.113.6"}) as other,
    ):
        assert [one.get(link).status_code for _ in range(3)] == [200, 200, 429]
        assert other.get(link).status_code == 200
    with proxied.client(make_token(alice, scopes=("exports",)), **spoofed) as client:
        job = client.post("/api/v1/data/export", json={"exportType": "full", "format": "json"})
        assert job.status_code == 202
    audit = schema.data_audit_log
    with proxied.config.database.engine.connect() as conn:
        address = conn.execute(
            sa.select(audit.c.ipAddress).where(
                audit.c.userId == alice, audit.c.operation == "export-request"
            )
        ).scalar_one()
    assert address == "203.0.113.5"


def test_client_address_walks_forwarded_for_from_the_right():
    proxies = parse_networks(["10.0.0.0/8", "192.0.2.7"])
    assert client_address("10.1.1.1", "203.0.113.9, 192.0.2.7", proxies) == "203.0.113.9"
    assert client_address("10.1.1.1", "1.1.1.1, 203.0.113.9", proxies) == "203.0.113.9"
    assert client_address("203.0.113.9", "1.1.1.1", proxies) == "203.0.113.9"  # untrusted peer
    assert client_address("10.1.1.1", "junk, 10.2.2.2", proxies) == "10.2.2.2"
    assert client_address("10.1.1.1", "10.3.3.3", proxies) == "10.3.3.3"  # all trusted
    assert client_address("10.1.1.1", None, proxies) == "10.1.1.1"
    assert client_address("10.1.1.1", "203.0.113.9", ()) == "10.1.1.1"  # none configured
    assert client_address("10.1.1.1", "2001:db8::1", proxies) == "2001:db8::1"


def test_counters_of_links_and_addresses_are_swept_once_past(start_api, api_config):
    api = start_api(replace(api_config, sweep_every=1))  # every such request sweeps
    limits = schema.api_rate_limit
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with api.config.database.engine.begin() as conn:
        for bucket in ("addr:old", "link:old", "tok_kept"):
            conn.execute(limits.insert().values(bucket=bucket, windowStart=long_ago, count=5))
    with api.client() as client:
        assert client.get("/api/v1/data/export").status_code == 401
    with api.config.database.engine.connect() as conn:
        left = set(conn.execute(sa.select(limits.c.bucket)).scalars())
    assert "addr:old" not in left and "link:old" not in left
    assert "tok_kept" in left  # a credential's counter is erasure's to delete
    assert any(b.startswith("addr:") for b in left)  # this request's own
