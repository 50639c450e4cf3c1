"""Who is calling: a personal API token (`Authorization: Bearer gp_...`), or the app's
backend with the service credential (`Bearer <GOALPORT_SERVICE_TOKEN>` plus
`X-Goalport-User: <user id>`). Each authenticated call is counted against its
credential's rate limit, and whatever it reads or changes is audited through `Caller`.
"""

from __future__ import annotations

import datetime as dt
import hmac
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.config import ApiConfig
from api.errors import ApiError, unauthenticated
from api.rate_limit import (
    RateDecision,
    RateLimit,
    client_address,
    count_request,
    hashed_bucket,
    limit_exceeded,
    sweep_past_windows,
)
from api.tokens import SCOPES, use_token
from resources import schema
from resources.audit import record_audit, utc_now

SERVICE_ACTOR = "service"
COUNTERS_KEPT = dt.timedelta(hours=1)  # a link's or an address's counter, after its window
MAX_USER_AGENT = 512
bearer = HTTPBearer(auto_error=False, description="a personal API token, or the service token")


@dataclass
class AuditEntry:
    """What a request's audit row will say, filled in while its work is done on `conn`."""

    conn: sa.Connection
    details: dict[str, Any] = field(default_factory=dict)
    record_count: int | None = None


@dataclass(frozen=True)
class Caller:
    user_id: str
    scopes: tuple[str, ...]
    actor: str  # "api-token:<id>" or "service": never the secret
    ip_address: str | None
    user_agent: str | None

    def audit(self, conn: sa.Connection, operation: str, **fields: Any) -> str:
        """A DataAuditLog row for something this caller read or changed."""
        return record_audit(
            conn,
            user_id=self.user_id,
            operation=operation,
            operation_type=fields.pop("operation_type", "api"),
            actor=self.actor,
            ip_address=self.ip_address,
            user_agent=self.user_agent,
            **fields,
        )

    @contextmanager
    def audited(self, engine: sa.Engine, operation: str, **fields: Any) -> Iterator[AuditEntry]:
        """One transaction for a request's work and its audit row. The block reads or
        changes rows on `entry.conn` (pass it to the function doing the change) and may
        add to `entry.details` or set `entry.record_count`; the audit row is written last,
        before the commit. If the block or the audit row fails, neither the change nor
        the row is kept."""
        with engine.begin() as conn:
            entry = AuditEntry(
                conn, dict(fields.pop("details", None) or {}), fields.pop("record_count", None)
            )
            yield entry
            self.audit(
                conn, operation, details=entry.details, record_count=entry.record_count, **fields
            )

    def record_read(self, engine: sa.Engine, operation: str, **fields: Any) -> None:
        """The audit row of a read already done (by functions that take the engine: nesting
        their connection inside an open transaction would take two pool slots at once)."""
        with self.audited(engine, operation, **fields):
            pass


def api_config(request: Request) -> ApiConfig:
    return request.app.state.config


ConfigDep = Annotated[ApiConfig, Depends(api_config)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def client_of(request: Request) -> str | None:
    """The client's address (through the configured trusted proxies: `api.rate_limit`)."""
    config: ApiConfig = request.app.state.config
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.get("x-forwarded-for"), config.trusted_proxies)


def _client(request: Request) -> tuple[str | None, str | None]:
    agent = request.headers.get("user-agent")
    return client_of(request), agent[:MAX_USER_AGENT] if agent else None


def too_many_requests(decision: RateDecision, what: str) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        f"too many requests {what}: try again in {decision.retry_after} s",
        headers={"Retry-After": str(decision.retry_after)},
    )


def count_without_credential(
    config: ApiConfig,
    address: str | None,
    now: dt.datetime,
    also: Sequence[tuple[str, RateLimit]] = (),
) -> None:
    """Count a request that has no valid credential against its client address (and the
    buckets `also` names, e.g. its download link); 429 when one of them is over its limit."""
    key = config.download_secret
    buckets = [(hashed_bucket("addr", address or "unknown", key), config.address_limit), *also]
    with config.database.engine.begin() as conn:
        _commit_without_waiting(conn)
        decisions = [count_request(conn, bucket, limit, now) for bucket, limit in buckets]
        # One such request in `sweep_every` also clears the counters no longer needed:
        # no job to schedule, and every replica takes part.
        if random.random() * config.sweep_every < 1:
            sweep_past_windows(conn, now, keep=COUNTERS_KEPT)
    refused = limit_exceeded(decisions)
    if refused is not None:
        raise too_many_requests(refused, "from this address or for this link")


def _commit_without_waiting(conn: sa.Connection) -> None:
    """Counters and a token's last use need not wait for their commit to reach the disk:
    losing the last instant of them in a database crash is harmless, and every request of
    a credential queues on its counter row's lock until the one before commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET LOCAL synchronous_commit = off"))


def _is_service_token(credential: str, config: ApiConfig) -> bool:
    if not config.service_token:
        return False
    return hmac.compare_digest(credential.encode(), config.service_token.encode())


def _identify(
    conn: sa.Connection,
    config: ApiConfig,
    secret: str,
    acting_for: str | None,
    client: tuple[str | None, str | None],
    now: dt.datetime,
) -> tuple[Caller, str, RateLimit] | None:
    """The caller a credential stands for, with its rate-limit bucket; None for a token
    that is unknown, revoked or expired."""
    if _is_service_token(secret, config):
        if not acting_for:
            raise unauthenticated(
                "the service credential acts for a user: name them in X-Goalport-User"
            )
        user = schema.user.c.id
        if conn.execute(sa.select(user).where(user == acting_for)).first() is None:
            raise ApiError(404, "not_found", "no user with that id", field="X-Goalport-User")
        return (
            Caller(acting_for, SCOPES, SERVICE_ACTOR, *client),
            SERVICE_ACTOR,
            config.service_limit,
        )
    token = use_token(conn, secret, now)
    if token is None:
        return None
    if acting_for and acting_for != token.user_id:
        raise ApiError(
            403,
            "forbidden",
            "only the service credential may act for another user",
            field="X-Goalport-User",
        )
    caller = Caller(token.user_id, token.scopes, f"api-token:{token.id}", *client)
    return caller, token.id, config.token_limit


def authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    acting_for: str | None,
    scope: str,
) -> Caller:
    config: ApiConfig = request.app.state.config
    client = _client(request)
    now = utc_now()
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        count_without_credential(config, client[0], now)
        raise unauthenticated("send an API token: Authorization: Bearer <token>")
    with config.database.engine.begin() as conn:
        _commit_without_waiting(conn)
        found = _identify(conn, config, credentials.credentials, acting_for, client, now)
        decision = count_request(conn, found[1], found[2], now) if found else None
    if found is None or decision is None:
        count_without_credential(config, client[0], now)
        raise unauthenticated(
            "this API token is not valid (unknown, revoked or expired)", "invalid_token"
        )
    caller = found[0]
    if scope not in caller.scopes:
        raise ApiError(
            403,
            "insufficient_scope",
            f"this token's scopes ({', '.join(caller.scopes)}) do not include {scope!r}",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
    if not decision.allowed:
        raise too_many_requests(decision, "with this credential")
    return caller


def require(scope: str):
    """A dependency: the authenticated caller, who must hold `scope`."""

    def dependency(
        request: Request,
        credentials: BearerDep,
        x_goalport_user: str | None = Header(
            default=None, description="the user the service credential acts for"
        ),
    ) -> Caller:
        return authenticate(request, credentials, x_goalport_user, scope)

    return dependency


ExportsCaller = Annotated[Caller, Depends(require("exports"))]
AuditCaller = Annotated[Caller, Depends(require("audit"))]
GdprCaller = Annotated[Caller, Depends(require("gdpr"))]
BackupsCaller = Annotated[Caller, Depends(require("backups"))]
ImportsCaller = Annotated[Caller, Depends(require("imports"))]
TemplatesCaller = Annotated[Caller, Depends(require("templates"))]
SyncCaller = Annotated[Caller, Depends(require("sync"))]
