"""The caller's own audit trail and the GDPR erasure request over HTTP, against a real
uvicorn: each user sees only their own entries, with the address and agent of each call;
an erasure is requested with its grace period, found again, cancelled, and its status read."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from assets.gdpr.erasure import erasure_requests
from resources import schema

EXPORT = {"exportType": "full", "format": "json"}
SERVICE_TOKEN = "svc-" + "7" * 60  # what conftest's api_config sets


def test_own_audit_trail_newest_first_in_pages(api, user_ids, make_token):
    alice, bob = user_ids[0], user_ids[1]
    with api.client(
        make_token(alice, scopes=("exports", "audit")), **{"User-Agent": "phone/2"}
    ) as client:
        made = [client.post("/api/v1/data/export", json=EXPORT).json()["jobId"] for _ in range(3)]
        first = client.get("/api/v1/data/audit", params={"limit": 2}).json()
        second = client.get(
            "/api/v1/data/audit", params={"limit": 2, "cursor": first["nextCursor"]}
        ).json()
    entries = first["items"] + second["items"]
    requests = [e for e in entries if e["operation"] == "export-request"]
    assert [e["details"]["jobId"] for e in requests] == made[::-1][: len(requests)]
    assert all(e["ipAddress"] == "127.0.0.1" and e["userAgent"] == "phone/2" for e in requests)
    assert requests[0]["actor"].startswith("api-token:tok_")
    assert len({e["id"] for e in entries}) == len(entries)

    with api.client(make_token(bob, scopes=("audit",))) as client:
        theirs = client.get("/api/v1/data/audit").json()["items"]
    assert all(e["operation"] != "export-request" for e in theirs)
    assert not any(job in str(theirs) for job in made)
    with api.client(make_token(alice, scopes=("exports",))) as client:
        assert client.get("/api/v1/data/audit").status_code == 403
    with api.config.database.engine.connect() as conn:
        reads = conn.execute(
            sa.select(sa.func.count()).where(
                schema.data_audit_log.c.operation == "audit-read",
                schema.data_audit_log.c.userId == alice,
            )
        ).scalar()
    assert reads == 2


def test_erasure_request_then_cancel(api, user_ids, make_token, database):
    alice = user_ids[0]
    with api.client(make_token(alice, scopes=("gdpr",))) as client:
        assert client.get("/api/v1/gdpr/erasure").status_code == 404
        asked = client.post("/api/v1/gdpr/erasure")
        assert asked.status_code == 202
        body = asked.json()
        assert body["status"] == "pending" and body["receipt"] is None
        grace = dt.datetime.fromisoformat(body["notBefore"]) - dt.datetime.fromisoformat(
            body["requestedAt"]
        )
        assert grace == dt.timedelta(days=7)
        again = client.post("/api/v1/gdpr/erasure").json()
        assert again["requestId"] == body["requestId"]
        assert client.get("/api/v1/gdpr/erasure").json()["status"] == "pending"

        cancelled = client.delete("/api/v1/gdpr/erasure")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert client.delete("/api/v1/gdpr/erasure").status_code == 404
        assert client.get("/api/v1/gdpr/erasure").json()["status"] == "cancelled"
    assert [r.status for r in erasure_requests(database.engine, alice)] == ["cancelled"]
    with database.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.data_audit_log.c.operation, schema.data_audit_log.c.ipAddress).where(
                schema.data_audit_log.c.userId == alice
            )
        ).all()
    operations = {op for op, _ in rows}
    assert {
        "erasure-request",
        "erasure-cancel",
        "gdpr-erasure-request",
        "gdpr-erasure-cancel",
    } <= operations
    assert all(ip == "127.0.0.1" for op, ip in rows if op.startswith("gdpr-erasure"))

    with api.client(make_token(user_ids[1], scopes=("gdpr",))) as client:
        assert client.get("/api/v1/gdpr/erasure").status_code == 404
        assert client.delete("/api/v1/gdpr/erasure").status_code == 404
    with api.client(make_token(alice, scopes=("exports",))) as client:
        assert client.post("/api/v1/gdpr/erasure").status_code == 403


def test_erasure_leaves_no_token_counter_address_or_agent_of_the_user(
    api, user_ids, database, storage
):
    """Alice calls the API with two tokens and a distinctive user agent, and the service
    credential acts for her; then she is erased. Her tokens no longer work and nothing of
    hers is left: no ApiToken row, no ApiRateLimit counter of her tokens, no audit entry
    with her address, agent or a token id; Bob's token, counter and entries stay."""
    from api.tokens import create_token
    from assets.gdpr.erasure import execute_erasure, request_erasure
    from tests.gdpr.scan import scan_tables

    alice, bob = user_ids[:2]
    agent = "AliceBrowser/7.3 (Kq7; rv:alice-only-agent)"
    alice_tokens = [
        create_token(database.engine, alice, ("exports", "audit"), name=f"Alice's {n}")
        for n in ("phone", "laptop")
    ]
    bob_token, bob_secret = create_token(database.engine, bob, ("exports", "audit"))
    bob_id = bob_token.id
    for _, secret in alice_tokens:
        with api.client(secret, **{"User-Agent": agent}) as client:
            assert client.post("/api/v1/data/export", json=EXPORT).status_code == 202
            assert client.get("/api/v1/data/audit").status_code == 200
    with api.client(SERVICE_TOKEN, **{"User-Agent": agent, "X-Goalport-User": alice}) as client:
        assert client.get("/api/v1/data/export").status_code == 200
    with api.client(bob_secret, **{"User-Agent": "BobAgent/1"}) as client:
        assert client.post("/api/v1/data/export", json=EXPORT).status_code == 202
    token_ids = [token.id for token, _ in alice_tokens]
    audit, limits = schema.data_audit_log, schema.api_rate_limit
    with database.engine.connect() as conn:
        counted = set(conn.scalars(sa.select(limits.c.bucket)))
        agents = conn.scalars(sa.select(audit.c.userAgent).where(audit.c.userId == alice)).all()
    assert {*token_ids, bob_id} <= counted and agent in agents  # what the erasure must remove

    request = request_erasure(database.engine, alice, grace=dt.timedelta(0))
    outcome = execute_erasure(database.engine, storage, request.id)

    assert outcome.verified, outcome.receipt["verification"]
    assert outcome.receipt["rowsDeleted"]["ApiToken"] == 2
    assert outcome.receipt["rowsDeleted"]["ApiRateLimit"] == 2
    for _, secret in alice_tokens:
        with api.client(secret) as client:
            assert client.get("/api/v1/data/audit").status_code == 401
    assert scan_tables(database.engine, [alice, agent, *token_ids]) == []
    with database.engine.connect() as conn:
        own = conn.execute(
            sa.select(audit.c.ipAddress, audit.c.userAgent, audit.c.actor).where(
                audit.c.subjectRef == request.subject_ref
            )
        ).all()
        assert own and all(ip is None and ua is None for ip, ua, _ in own)
        assert bob_id in set(conn.scalars(sa.select(limits.c.bucket)))
        bobs = conn.execute(
            sa.select(audit.c.userAgent, audit.c.actor).where(audit.c.userId == bob)
        ).all()
    assert ("BobAgent/1", f"api-token:{bob_id}") in bobs
    with api.client(bob_secret) as client:
        assert client.get("/api/v1/data/audit").status_code == 200
