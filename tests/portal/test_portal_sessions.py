"""Sign-in links and sessions without a browser, on the test's PostgreSQL database: a
link's signed expiry cannot be stretched, a link opened twice at once signs in once,
sessions end at their expiry and on sign-out, CSRF tokens belong to one session."""

from __future__ import annotations

import base64
import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from portal.sessions import (
    SESSION_LIFETIME,
    SignInError,
    create_sign_in_link,
    csrf_ok,
    csrf_token,
    end_session,
    portal_key,
    session_for_cookie,
    sign_in,
)
from resources import schema

KEY = portal_key(b"sessions-test-download-secret-0123456789")
NOW = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)


@pytest.fixture
def engine(database):
    with database.engine.begin() as conn:
        for user_id in ("u_alice", "u_bob"):
            conn.execute(
                schema.user.insert().values(
                    id=user_id, email=f"{user_id}@example.test", createdAt=NOW, updatedAt=NOW
                )
            )
    return database.engine


def _token(link: str) -> str:
    return link.rsplit("/", 1)[1]


def test_a_stretched_expiry_breaks_the_signature(engine):
    token = _token(create_sign_in_link(engine, KEY, "u_alice", now=NOW))
    payload, signature = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    fields["e"] += 86_400
    stretched = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")
    with pytest.raises(SignInError) as refused:
        sign_in(engine, KEY, f"{stretched}.{signature}", now=NOW)
    assert refused.value.reason == "invalid"
    with pytest.raises(SignInError) as late:
        sign_in(engine, KEY, token, now=NOW + dt.timedelta(minutes=16))
    assert late.value.reason == "expired"
    with pytest.raises(SignInError):
        sign_in(engine, portal_key(b"another-install-secret-0123456789ab"), token, now=NOW)
    with pytest.raises(SignInError):
        create_sign_in_link(engine, KEY, "u_nobody", now=NOW)


def test_a_link_opened_twice_at_once_signs_in_once(engine):
    token = _token(create_sign_in_link(engine, KEY, "u_alice", now=NOW))

    def attempt(_: int) -> str:
        try:
            sign_in(engine, KEY, token, now=NOW)
            return "signed in"
        except SignInError as exc:
            return exc.reason

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(attempt, range(4)))
    assert outcomes == ["signed in", "used", "used", "used"]
    sessions = schema.portal_session
    with engine.connect() as conn:
        kinds = conn.scalars(sa.select(sessions.c.kind).order_by(sessions.c.kind)).all()
        hashes = conn.scalars(sa.select(sessions.c.secretHash).where(sessions.c.kind == "session"))
        stored = [h for h in hashes if h]
    assert kinds == ["link", "session"] and len(stored[0]) == 64  # a SHA-256, not the cookie


def test_sessions_expire_end_and_keep_their_own_csrf_token(engine):
    alice, alice_cookie = sign_in(
        engine, KEY, _token(create_sign_in_link(engine, KEY, "u_alice", now=NOW)), now=NOW
    )
    bob, _ = sign_in(
        engine, KEY, _token(create_sign_in_link(engine, KEY, "u_bob", now=NOW)), now=NOW
    )
    assert session_for_cookie(engine, alice_cookie, now=NOW).user_id == "u_alice"
    assert session_for_cookie(engine, alice_cookie, now=NOW + SESSION_LIFETIME) is None
    assert session_for_cookie(engine, alice_cookie + "x", now=NOW) is None
    assert session_for_cookie(engine, "", now=NOW) is None
    assert csrf_ok(KEY, alice, csrf_token(KEY, alice))
    assert not csrf_ok(KEY, alice, csrf_token(KEY, bob))
    assert not csrf_ok(KEY, alice, "") and not csrf_ok(KEY, alice, None)
    end_session(engine, alice.id)
    assert session_for_cookie(engine, alice_cookie, now=NOW) is None
