"""Who may call what, against a real uvicorn: personal tokens (hashed, scoped, expiring,
revocable), the service credential (only with X-Goalport-User), isolation between users
(404 whether missing or not yours), rate limits (429 + Retry-After), and no token in any
response body or log line. Tokens are made and revoked with the `goalport tokens` CLI."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from api.rate_limit import RateLimit
from api.tokens import create_token, hash_token, list_tokens
from assets.gdpr.erasure import execute_erasure, request_erasure
from pipelines.cli.main import main as goalport_main
from resources import schema

EXPORT = {"exportType": "full", "format": "json"}
SERVICE_TOKEN = "svc-" + "7" * 60  # what conftest's api_config sets


def _error(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


def test_no_or_malformed_credentials_get_401_with_a_challenge(api):
    with api.client() as client:
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
            response = client.get("/api/v1/data/export", headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert _error(response)["code"] == "unauthenticated"
        unknown = client.get(
            "/api/v1/data/export", headers={"Authorization": "Bearer gp_" + "A" * 43}
        )
        assert unknown.status_code == 401
        assert 'error="invalid_token"' in unknown.headers["www-authenticate"]


def test_tokens_cli_create_list_revoke(api, user_ids, database, monkeypatch):
    monkeypatch.setenv("GOALPORT_DATABASE_URL", database.url)
    runner = CliRunner()
    made = runner.invoke(
        goalport_main,
        ["tokens", "create", user_ids[0], "--scope", "exports,audit", "--expires", "2"],
    )
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("gp_") and len(secret) == 46
    with database.engine.connect() as conn:
        row = conn.execute(sa.select(schema.api_token)).one()
    assert row.tokenHash == hash_token(secret) and secret not in str(tuple(row))
    assert row.scopes == "exports,audit"
    expires_in = row.expiresAt - row.createdAt
    assert dt.timedelta(days=2) - dt.timedelta(seconds=1) < expires_in <= dt.timedelta(days=2)

    with api.client(secret) as client:
        assert client.get("/api/v1/data/export").status_code == 200
    listing = runner.invoke(goalport_main, ["tokens", "list", user_ids[0]])
    assert listing.exit_code == 0 and secret not in listing.output
    token_id, state, scopes, *_ = listing.output.splitlines()[0].split("\t")
    assert (token_id, state, scopes) == (row.id, "active", "exports,audit")
    assert "used -" not in listing.output  # the request above set last use

    revoked = runner.invoke(goalport_main, ["tokens", "revoke", token_id])
    assert revoked.exit_code == 0, revoked.output
    with api.client(secret) as client:
        refused = client.get("/api/v1/data/export")
    assert (
        refused.status_code == 401
        and 'error="invalid_token"' in refused.headers["www-authenticate"]
    )
    assert "revoked" in runner.invoke(goalport_main, ["tokens", "list", user_ids[0]]).output

    bad_scope = runner.invoke(goalport_main, ["tokens", "create", user_ids[0], "--scope", "root"])
    assert bad_scope.exit_code == 1 and "unknown scope root" in bad_scope.output
    nobody = runner.invoke(goalport_main, ["tokens", "create", "nobody", "--scope", "exports"])
    assert nobody.exit_code == 1 and "unknown user id" in nobody.output


def test_expired_and_wrong_scope_tokens(api, user_ids, database, make_token):
    expiring, secret = create_token(
        database.engine, user_ids[0], ["exports"], expires_in=dt.timedelta(hours=1)
    )
    with database.engine.begin() as conn:
        conn.execute(
            schema.api_token.update()
            .where(schema.api_token.c.id == expiring.id)
            .values(expiresAt=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    with api.client(secret) as client:
        assert client.get("/api/v1/data/export").status_code == 401
    with api.client(make_token(user_ids[0], scopes=("imports",))) as client:
        response = client.post("/api/v1/data/export", json=EXPORT)
        assert response.status_code == 403
        assert _error(response)["code"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    with database.engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.data_export_job)).scalar()
            == 0
        )


def test_another_users_jobs_and_files_are_404(api, user_ids, make_token):
    from assets.exports.progress import process_pending_exports

    alice, bob = user_ids[0], user_ids[1]
    with api.client(make_token(alice)) as client:
        job_id = client.post("/api/v1/data/export", json=EXPORT).json()["jobId"]
        process_pending_exports(api.config.database, api.config.storage, workers=1)
        assert client.get("/api/v1/data/export", params={"jobId": job_id}).status_code == 200
    with api.client(make_token(bob)) as client:
        theirs = client.get("/api/v1/data/export", params={"jobId": job_id})
        missing = client.get("/api/v1/data/export", params={"jobId": "exp_does_not_exist"})
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()
        assert client.get("/api/v1/data/export").json()["items"] == []
        # Bob cannot act for Alice by naming her.
        acting = client.get("/api/v1/data/export", headers={"X-Goalport-User": alice})
        assert acting.status_code == 403


def test_service_credential_acts_for_the_named_user_only(api, user_ids):
    alice = user_ids[0]
    with api.client(SERVICE_TOKEN) as service:
        without_user = service.post("/api/v1/data/export", json=EXPORT)
        assert without_user.status_code == 401
        assert "X-Goalport-User" in _error(without_user)["message"]
        made = service.post("/api/v1/data/export", json=EXPORT, headers={"X-Goalport-User": alice})
        assert made.status_code == 202
        job_id = made.json()["jobId"]
        own = service.get(
            "/api/v1/data/export", params={"jobId": job_id}, headers={"X-Goalport-User": alice}
        )
        assert own.status_code == 200
        other = service.get(
            "/api/v1/data/export",
            params={"jobId": job_id},
            headers={"X-Goalport-User": user_ids[1]},
        )
        assert other.status_code == 404
        unknown = service.get("/api/v1/data/export", headers={"X-Goalport-User": "nobody"})
        assert unknown.status_code == 404
    with api.client(SERVICE_TOKEN[:-1] + "8", **{"X-Goalport-User": alice}) as near_miss:
        assert near_miss.get("/api/v1/data/export").status_code == 401


def test_service_credential_off_when_not_configured(start_api, api_config, user_ids):
    live = start_api(replace(api_config, service_token=None))
    with live.client(SERVICE_TOKEN, **{"X-Goalport-User": user_ids[0]}) as client:
        assert client.get("/api/v1/data/export").status_code == 401


def test_rate_limit_per_token_with_retry_after(start_api, api_config, user_ids, make_token):
    live = start_api(replace(api_config, token_limit=RateLimit(3, 3600)))
    first, second = make_token(user_ids[0]), make_token(user_ids[0])
    with live.client(first) as client:
        assert [client.get("/api/v1/data/export").status_code for _ in range(3)] == [200] * 3
        limited = client.get("/api/v1/data/export")
        assert limited.status_code == 429
        assert _error(limited)["code"] == "rate_limited"
        assert 0 < int(limited.headers["retry-after"]) <= 3600
    with live.client(second) as client:  # another token has its own window
        assert client.get("/api/v1/data/export").status_code == 200
    with live.config.database.engine.connect() as conn:
        counters = dict(
            conn.execute(
                sa.select(schema.api_rate_limit.c.bucket, schema.api_rate_limit.c.count)
            ).all()
        )
    assert sorted(counters.values()) == [1, 4]


def test_no_token_in_any_response_or_log_line(api, user_ids, make_token, caplog):
    from assets.exports.progress import process_pending_exports

    caplog.set_level(logging.DEBUG)
    secret = make_token(user_ids[0])
    seen = []
    with api.client(secret, **{"X-Goalport-User": user_ids[0]}) as client:
        job_id = client.post("/api/v1/data/export", json=EXPORT).json()["jobId"]
        process_pending_exports(api.config.database, api.config.storage, workers=1)
        url = client.get("/api/v1/data/export", params={"jobId": job_id}).json()["fileUrl"]
        download_token = url.rsplit("/", 1)[1]
        for response in (
            client.get("/api/v1/data/export"),
            client.get(url),
            client.get(url + "x"),
            client.post("/api/v1/data/export", json={"exportType": "full", "format": secret}),
            client.get("/api/v1/data/export", params={"jobId": secret}),
        ):
            seen.append(response.text + str(response.headers))
    with api.client(SERVICE_TOKEN) as service:
        seen.append(service.get("/api/v1/data/export").text)
    with api.client("gp_wrong" + secret[8:]) as wrong:
        seen.append(wrong.get("/api/v1/data/export").text)
    assert not any(secret in text or SERVICE_TOKEN in text for text in seen)
    assert "goalport.api.access" in {r.name for r in caplog.records}
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    for record in server_side:
        line = record.getMessage() + (record.exc_text or "")
        assert secret not in line and SERVICE_TOKEN not in line and download_token not in line
    assert any("/api/v1/data/download/{token}" in r.getMessage() for r in caplog.records)


def test_erasure_deletes_tokens_and_the_addresses_on_audit_rows(
    api, user_ids, make_token, database, storage
):
    alice = user_ids[0]
    with api.client(make_token(alice)) as client:
        assert client.post("/api/v1/data/export", json=EXPORT).status_code == 202
    with database.engine.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).where(schema.data_audit_log.c.ipAddress == "127.0.0.1")
            ).scalar()
            > 0
        )
    request = request_erasure(database.engine, alice, grace=dt.timedelta(0))
    outcome = execute_erasure(database.engine, storage, request.id)
    assert outcome.verified
    assert list_tokens(database.engine, alice) == []
    with database.engine.connect() as conn:
        addresses = conn.execute(
            sa.select(schema.data_audit_log.c.ipAddress, schema.data_audit_log.c.userAgent).where(
                schema.data_audit_log.c.subjectRef == request.subject_ref
            )
        ).all()
    assert addresses and all(a == (None, None) for a in addresses)


@pytest.mark.parametrize("scopes", [(), ("exports", "everything")])
def test_tokens_need_known_scopes(database, user_ids, scopes):
    from api.tokens import TokenError

    with pytest.raises(TokenError, match="scope"):
        create_token(database.engine, user_ids[0], scopes)
