"""Sign-in links, the sessions they open, and the CSRF token of a session's forms.

A sign-in link is `/portal/sign-in/<token>`: the token is a link id and its expiry, signed
with HMAC-SHA256 under the portal's key (derived from the install's download secret, so no
second secret has to be set). A forged or altered token fails the signature; an expired
one is refused by its own signed expiry, before the database is asked; a used one is
refused because its `PortalSession` row was consumed (`usedAt`) in the one UPDATE that
let the first opening through.

The session is a random 256-bit cookie value, stored only as its SHA-256 (like API
tokens). Its CSRF token is an HMAC of the session id, so it needs no storage and changes
with every session.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from resources import schema
from resources.audit import new_id, utc_now
from resources.schema import as_utc

LINK_LIFETIME = dt.timedelta(minutes=15)
SESSION_LIFETIME = dt.timedelta(hours=8)
COOKIE_NAME = "goalport_portal"
sessions_table = schema.portal_session


class SignInError(ValueError):
    """A sign-in link that cannot be used; `reason` is expired, used or invalid."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PortalSession:
    id: str
    user_id: str
    expires_at: dt.datetime


def portal_key(download_secret: bytes) -> bytes:
    """The portal's signing key, derived from (never equal to) the download secret."""
    return hmac.new(download_secret, b"goalport portal sign-in v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_sign_in_link(
    engine: sa.Engine,
    key: bytes,
    user_id: str,
    *,
    public_url: str = "",
    lifetime: dt.timedelta = LINK_LIFETIME,
    now: dt.datetime | None = None,
) -> str:
    """A new single-use sign-in link for an existing user: absolute on `public_url`, else
    relative."""
    now = now or utc_now()
    expires = now + lifetime
    link_id = new_id("psl_")
    with engine.begin() as conn:
        user = schema.user.c.id
        if conn.execute(sa.select(user).where(user == user_id)).first() is None:
            raise SignInError("no user with that id")
        conn.execute(
            sessions_table.insert().values(
                id=link_id, userId=user_id, kind="link", createdAt=now, expiresAt=expires
            )
        )
    payload = _b64(json.dumps({"l": link_id, "e": int(expires.timestamp())}).encode())
    return f"{public_url}/portal/sign-in/{payload}.{_sign(key, payload)}"


def _read_link_token(key: bytes, token: str, now: dt.datetime) -> str:
    payload, _, signature = token.partition(".")
    if not payload or not hmac.compare_digest(signature.encode(), _sign(key, payload).encode()):
        raise SignInError("invalid")
    try:
        fields = json.loads(_unb64(payload))
        link_id, expires = str(fields["l"]), int(fields["e"])
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignInError("invalid") from exc
    if expires <= now.timestamp():
        raise SignInError("expired")
    return link_id


def sign_in(
    engine: sa.Engine, key: bytes, token: str, *, now: dt.datetime | None = None
) -> tuple[PortalSession, str]:
    """Consume a sign-in link and open a session: (the session, its cookie value)."""
    now = now or utc_now()
    link_id = _read_link_token(key, token, now)
    cookie = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        consumed = conn.execute(
            sessions_table.update()
            .where(
                sessions_table.c.id == link_id,
                sessions_table.c.kind == "link",
                sessions_table.c.usedAt.is_(None),
                sessions_table.c.expiresAt > now,
            )
            .values(usedAt=now)
            .returning(sessions_table.c.userId)
        ).first()
        if consumed is None:
            known = conn.execute(
                sa.select(sessions_table.c.id).where(sessions_table.c.id == link_id)
            ).first()
            # A signed link whose row is gone belongs to a user who was erased.
            raise SignInError("used" if known else "invalid")
        session = PortalSession(new_id("pss_"), consumed.userId, now + SESSION_LIFETIME)
        conn.execute(
            sessions_table.insert().values(
                id=session.id,
                userId=session.user_id,
                kind="session",
                secretHash=_hash(cookie),
                createdAt=now,
                expiresAt=session.expires_at,
            )
        )
    return session, cookie


def session_for_cookie(
    engine: sa.Engine, cookie: str | None, *, now: dt.datetime | None = None
) -> PortalSession | None:
    """The open session this cookie belongs to, or None (unknown, ended or expired)."""
    if not cookie or len(cookie) > 200:
        return None
    now = now or utc_now()
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(sessions_table).where(
                sessions_table.c.secretHash == _hash(cookie),
                sessions_table.c.kind == "session",
                sessions_table.c.endedAt.is_(None),
                sessions_table.c.expiresAt > now,
            )
        ).first()
    if row is None:
        return None
    return PortalSession(row.id, row.userId, as_utc(row.expiresAt))


def end_session(engine: sa.Engine, session_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sessions_table.update()
            .where(sessions_table.c.id == session_id)
            .values(endedAt=utc_now(), secretHash=None)
        )


def csrf_token(key: bytes, session: PortalSession) -> str:
    return _sign(key, f"csrf:{session.id}")


def csrf_ok(key: bytes, session: PortalSession, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(
        str(token).encode(), csrf_token(key, session).encode()
    )
