"""Connecting a cloud drive with OAuth and PKCE (resources/destinations/oauth.py, the API's
api/destinations.py, the CLI's `goalport backup connect`), driven end to end: the real API
on uvicorn, the fake provider's authorisation and token endpoints on loopback
(tests/destinations/fake_clouds.py), the browser's part played by following redirects."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from api.tokens import create_token
from assets.backups.config import get_backup_config
from resources import schema, settings
from resources.destinations.credentials import load_destination_credentials
from resources.destinations.oauth import (
    OAuthStateError,
    finish_connection,
    parse_redirect,
    start_connection,
)
from resources.keys import KeyVault, new_master_key
from synthetic.seed import seed_database
from tests.destinations.fake_clouds import iter_providers

PROVIDERS = list(iter_providers())
EXPECTED_PARAMETERS = {
    "dropbox": {"token_access_type": "offline"},
    "gdrive": {"access_type": "offline", "prompt": "consent"},
    "onedrive": {"scope": "offline_access Files.ReadWrite", "response_mode": "query"},
}


@pytest.fixture
def pg_url(pg_url):
    seed_database(pg_url, 2, seed=20, heavy_every=0)
    return pg_url


@pytest.fixture
def master_key(monkeypatch):
    key = new_master_key()
    monkeypatch.setenv("GOALPORT_MASTER_KEY", key)
    return key


@pytest.fixture
def vault(pg_url, master_key):
    vault = KeyVault(database_url=pg_url)
    yield vault
    vault.close()


@pytest.fixture
def users(database) -> list[str]:
    return sorted(database.all_user_ids())


@pytest.fixture
def connect_api(start_api, monkeypatch, master_key):
    """The API on loopback, registered with the providers as its redirect URI's base."""
    api = start_api()
    monkeypatch.setenv("GOALPORT_OAUTH_REDIRECT_BASE_URL", api.base_url)
    return api


def _browser_consents(authorization_url: str) -> str:
    """The person opens the URL and answers the consent screen: where they are sent back."""
    response = httpx.get(authorization_url, follow_redirects=False)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def _pending_states(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(sa.select(schema.oauth_state)).all()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_whole_flow_through_the_api(provider, start_fake, connect_api, database, users, vault):
    fake = start_fake(provider)
    token = create_token(database.engine, users[0], ("backups",))[1]
    with connect_api.client(token) as client:
        started = client.get(
            f"/api/v1/destinations/oauth/{provider}/start", params={"folder": "My Backups"}
        )
    assert started.status_code == 200, started.text
    url = started.json()["authorizationUrl"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(fake.endpoints()["AUTHORIZE"] + "?")
    assert query["client_id"] == fake.oauth.client_id
    assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
    assert query["redirect_uri"] == (
        f"{connect_api.base_url}/api/v1/destinations/oauth/{provider}/callback"
    )
    assert EXPECTED_PARAMETERS[provider].items() <= query.items()
    assert "client_secret" not in query

    pending = _pending_states(database.engine)
    assert len(pending) == 1 and pending[0].userId == users[0]
    assert pending[0].stateHash == hashlib.sha256(query["state"].encode()).hexdigest()

    back_to = _browser_consents(url)
    assert back_to.startswith(query["redirect_uri"] + "?")
    connected = httpx.get(back_to)  # the browser lands on the callback: no API token
    assert connected.status_code == 200, connected.text
    destination = f"{provider}://My Backups"
    assert connected.json() == {"connected": True, "provider": provider, "destination": destination}

    # the code was exchanged with the verifier whose S256 challenge went out first
    exchange = fake.oauth.token_requests[0]
    assert exchange["grant_type"] == "authorization_code"
    verifier = exchange["code_verifier"]
    assert 43 <= len(verifier) <= 128
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    assert challenge.rstrip(b"=").decode() == query["code_challenge"]
    assert verifier.encode() not in pending[0].wrappedVerifier, "the verifier is kept wrapped"

    stored = load_destination_credentials(database.engine, vault, users[0], destination)
    assert stored["access_token"] in fake.oauth.access_tokens
    assert stored["refresh_token"] in fake.oauth.refresh_tokens
    assert get_backup_config(database.engine, users[0]).destination_url == destination
    assert load_destination_credentials(database.engine, vault, users[1], destination) == {}
    # the destination was tried (a small file written, read back, deleted) before saving
    assert fake.commits >= 1 and fake.files() == {}
    assert _pending_states(database.engine) == []

    replayed = httpx.get(back_to)  # the same callback again: the state was single use
    assert replayed.status_code == 400
    assert replayed.json()["error"]["code"] == "invalid_state"
    assert len(fake.oauth.token_requests) == 1, "a replay never reaches the provider"


def test_a_denied_consent_connects_nothing(start_fake, connect_api, database, users, vault):
    fake = start_fake("dropbox")
    fake.oauth.consent = "deny"
    token = create_token(database.engine, users[0], ("backups",))[1]
    with connect_api.client(token) as client:
        url = client.get("/api/v1/destinations/oauth/dropbox/start").json()["authorizationUrl"]
    back_to = _browser_consents(url)
    assert "error=access_denied" in back_to
    denied = httpx.get(back_to)
    assert denied.status_code == 403
    assert "you declined access" in denied.json()["error"]["message"]
    assert fake.oauth.token_requests == []
    assert (
        load_destination_credentials(database.engine, vault, users[0], "dropbox://goalport") == {}
    )
    assert get_backup_config(database.engine, users[0]) is None
    assert _pending_states(database.engine) == [], "a declined state is used up too"


def test_wrong_forged_and_mismatched_states_are_refused(start_fake, connect_api, database, users):
    start_fake("gdrive")
    start_fake("onedrive")
    token = create_token(database.engine, users[0], ("backups",))[1]
    with connect_api.client(token) as client:
        url = client.get("/api/v1/destinations/oauth/gdrive/start").json()["authorizationUrl"]
    back_to = _browser_consents(url)
    code = parse_qs(urlsplit(back_to).query)["code"][0]
    base = f"{connect_api.base_url}/api/v1/destinations/oauth"
    for params in ({"code": code, "state": "forged-" + "x" * 40}, {"code": code}):
        refused = httpx.get(f"{base}/gdrive/callback", params=params)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_state"
    # Google's state presented to the OneDrive callback: refused, and used up
    state = parse_qs(urlsplit(back_to).query)["state"][0]
    crossed = httpx.get(f"{base}/onedrive/callback", params={"code": code, "state": state})
    assert crossed.status_code == 400
    assert httpx.get(back_to).status_code == 400
    assert get_backup_config(database.engine, users[0]) is None


def test_a_code_injected_into_another_session_fails_pkce(start_fake, database, users, vault):
    """An attacker's own authorisation code, pasted into a victim's callback with the
    victim's state: the provider refuses it, since the victim's verifier does not match
    the challenge the attacker's code was issued for."""
    fake = start_fake("onedrive")
    engine = database.engine
    victim = start_connection(engine, vault, users[0], "onedrive")
    attacker = start_connection(engine, vault, users[1], "onedrive")
    attackers_code = parse_redirect(_browser_consents(attacker.url))["code"]
    with pytest.raises(Exception, match="refused to complete the connection .*invalid_grant"):
        finish_connection(engine, vault, "onedrive", state=victim.state, code=attackers_code)
    assert fake.oauth.token_requests[0]["code"] == attackers_code
    assert load_destination_credentials(engine, vault, users[0], "onedrive://goalport") == {}


def test_a_state_expires_and_belongs_to_its_user(start_fake, database, users, vault, monkeypatch):
    start_fake("dropbox")
    engine = database.engine
    monkeypatch.setenv("GOALPORT_OAUTH_STATE_TTL_SECONDS", "0.3")
    late = start_connection(engine, vault, users[0], "dropbox")
    code = parse_redirect(_browser_consents(late.url))["code"]
    time.sleep(0.4)
    with pytest.raises(OAuthStateError, match="took longer than"):
        finish_connection(engine, vault, "dropbox", state=late.state, code=code)

    monkeypatch.setenv("GOALPORT_OAUTH_STATE_TTL_SECONDS", "600")
    other = start_connection(engine, vault, users[0], "dropbox")
    code = parse_redirect(_browser_consents(other.url))["code"]
    with pytest.raises(OAuthStateError, match="another account"):
        finish_connection(engine, vault, "dropbox", state=other.state, code=code, user_id=users[1])
    assert _pending_states(engine) == []


def test_start_needs_the_backups_scope_and_a_configured_client(
    start_fake, connect_api, database, users, monkeypatch
):
    start_fake("dropbox")
    engine = database.engine
    exports_only = create_token(engine, users[0], ("exports",))[1]
    backups = create_token(engine, users[0], ("backups",))[1]
    with connect_api.client(exports_only) as client:
        assert client.get("/api/v1/destinations/oauth/dropbox/start").status_code == 403
    with connect_api.client(backups) as client:
        assert client.get("/api/v1/destinations/oauth/box/start").status_code == 422
        bad = client.get("/api/v1/destinations/oauth/dropbox/start", params={"folder": "../x"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "folder"
        redirect = client.get(
            "/api/v1/destinations/oauth/dropbox/start",
            params={"redirect": "true"},
            follow_redirects=False,
        )
        assert redirect.status_code == 303
        assert redirect.headers["location"].startswith(os.environ["GOALPORT_DROPBOX_AUTHORIZE_URL"])
        monkeypatch.delenv("GOALPORT_DROPBOX_CLIENT_ID")
        unset = client.get("/api/v1/destinations/oauth/dropbox/start")
        assert unset.status_code == 404
        assert "not set up" in unset.json()["error"]["message"]


def test_parse_redirect_takes_what_people_paste():
    assert parse_redirect("http://x/cb?code=abc&state=s1") == {"code": "abc", "state": "s1"}
    assert parse_redirect("  ?state=s&error=access_denied ") == {
        "state": "s",
        "error": "access_denied",
    }
    assert parse_redirect("abc123") == {"code": "abc123"}
    assert parse_redirect("") == {}


@pytest.mark.slow
def test_the_cli_flow(start_fake, pg_url, database, users, vault, tmp_path):
    fake = start_fake("gdrive")
    env = dict(
        os.environ,
        GOALPORT_DATABASE_URL=pg_url,
        # the same pseudonyms as this process's, which reads the credentials back
        GOALPORT_PSEUDONYM_KEY=settings.pseudonym_key().decode(),
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),  # the project root
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli.main", "backup", "connect", users[1], "gdrive"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert "Open this address" in process.stdout.readline()
        url = process.stdout.readline().strip()
        back_to = _browser_consents(url)  # a redirect URI nothing listens on: pasted instead
        out, err = process.communicate(back_to + "\n", timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert f"Connected: {users[1]}'s backups now go to gdrive://goalport" in out
    stored = load_destination_credentials(database.engine, vault, users[1], "gdrive://goalport")
    assert stored["refresh_token"] in fake.oauth.refresh_tokens
    assert get_backup_config(database.engine, users[1]).destination_url == "gdrive://goalport"
