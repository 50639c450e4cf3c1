"""Personal API tokens: made once, shown once, stored only as a hash.

A token is `gp_` and 32 random bytes in base64url (the prefix lets secret scanners and
people recognise one). The table keeps its SHA-256, scopes, expiry, revocation and last
use: a leaked database row lets nobody call the API. A plain hash suffices because the
secret has 256 bits of entropy; a slow password hash would only slow every request.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from resources import schema
from resources.audit import new_id, record_audit, utc_now
from resources.schema import as_utc

TOKEN_PREFIX = "gp_"
SCOPES = ("exports", "imports", "templates", "backups", "gdpr", "audit", "sync")
tokens_table = schema.api_token
LAST_USED_PRECISION = dt.timedelta(minutes=1)


class TokenError(ValueError):
    """A token cannot be made or found; the message says why."""


@dataclass(frozen=True)
class ApiToken:
    """One token row, without its secret."""

    id: str
    user_id: str
    name: str | None
    scopes: tuple[str, ...]
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None

    @classmethod
    def from_row(cls, row) -> ApiToken:
        return cls(
            id=row.id,
            user_id=row.userId,
            name=row.name,
            scopes=tuple(s for s in row.scopes.split(",") if s),
            created_at=as_utc(row.createdAt),
            expires_at=as_utc(row.expiresAt),
            revoked_at=as_utc(row.revokedAt),
            last_used_at=as_utc(row.lastUsedAt),
        )

    def state(self, now: dt.datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(s.strip().lower() for s in scopes if s.strip()))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown or not chosen:
        raise TokenError(
            f"unknown scope {', '.join(unknown) or '(none given)'}: choose from {', '.join(SCOPES)}"
        )
    return chosen


def create_token(
    engine: sa.Engine,
    user_id: str,
    scopes: Iterable[str],
    *,
    expires_in: dt.timedelta | None = None,
    name: str | None = None,
    created_by: str = "an operator",
) -> tuple[ApiToken, str]:
    """A new token for `user_id`: its row, and the secret (shown once, never stored)."""
    chosen = check_scopes(scopes)
    if expires_in is not None and expires_in <= dt.timedelta(0):
        raise TokenError("a token's lifetime must be positive")
    secret = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    now = utc_now()
    token_id = new_id("tok_")
    with engine.begin() as conn:
        user = conn.execute(sa.select(schema.user.c.id).where(schema.user.c.id == user_id)).first()
        if user is None:
            raise TokenError(f"unknown user id: {user_id}")
        conn.execute(
            tokens_table.insert().values(
                id=token_id,
                userId=user_id,
                name=name,
                tokenHash=hash_token(secret),
                scopes=",".join(chosen),
                createdAt=now,
                expiresAt=now + expires_in if expires_in is not None else None,
            )
        )
        record_audit(
            conn,
            user_id=user_id,
            operation="api-token-create",
            operation_type="api",
            actor=created_by,
            details={"tokenId": token_id, "scopes": list(chosen)},
        )
        row = conn.execute(sa.select(tokens_table).where(tokens_table.c.id == token_id)).one()
    return ApiToken.from_row(row), secret


def revoke_token(engine: sa.Engine, token_id: str, *, revoked_by: str = "an operator") -> ApiToken:
    """Revoke a token (at once: the next request with it gets 401); revoking twice is fine."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(tokens_table).where(tokens_table.c.id == token_id)).first()
        if row is None:
            raise TokenError(f"no API token with id {token_id!r}")
        if row.revokedAt is None:
            conn.execute(
                tokens_table.update()
                .where(tokens_table.c.id == token_id)
                .values(revokedAt=utc_now())
            )
            record_audit(
                conn,
                user_id=row.userId,
                operation="api-token-revoke",
                operation_type="api",
                actor=revoked_by,
                details={"tokenId": token_id},
            )
        row = conn.execute(sa.select(tokens_table).where(tokens_table.c.id == token_id)).one()
    return ApiToken.from_row(row)


def list_tokens(engine: sa.Engine, user_id: str) -> list[ApiToken]:
    """A user's tokens, newest first (no secrets: none are stored)."""
    query = (
        sa.select(tokens_table)
        .where(tokens_table.c.userId == user_id)
        .order_by(tokens_table.c.createdAt.desc(), tokens_table.c.id.desc())
    )
    with engine.connect() as conn:
        return [ApiToken.from_row(r) for r in conn.execute(query)]


def use_token(conn: sa.Connection, secret: str, now: dt.datetime) -> ApiToken | None:
    """The live token `secret` is, its last use brought up to date; None for an unknown,
    revoked or expired one.

    The last use is kept to the minute: writing it on every request would make every
    request of a token wait for the one before it on that row's lock."""
    if not secret.startswith(TOKEN_PREFIX):
        return None
    row = conn.execute(
        sa.select(tokens_table).where(
            tokens_table.c.tokenHash == hash_token(secret),
            tokens_table.c.revokedAt.is_(None),
            sa.or_(tokens_table.c.expiresAt.is_(None), tokens_table.c.expiresAt > now),
        )
    ).first()
    if row is None:
        return None
    if row.lastUsedAt is None or as_utc(row.lastUsedAt) <= now - LAST_USED_PRECISION:
        conn.execute(
            tokens_table.update().where(tokens_table.c.id == row.id).values(lastUsedAt=now)
        )
    return ApiToken.from_row(row)
