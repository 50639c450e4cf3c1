"""Who is calling: a personal API token (`Authorization: Bearer gp_...`), or the app's
backend with the service credential (`Bearer <GOALPORT_SERVICE_TOKEN>` plus
`X-Goalport-User: <user id>`). Each authenticated call is counted against its
credential's rate limit, and whatever it reads or changes is audited through `Caller`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.config import ApiConfig
from api.errors import ApiError, unauthenticated
from api.rate_limit import count_request
from api.tokens import SCOPES, use_token
from resources import schema
from resources.audit import record_audit, utc_now

SERVICE_ACTOR = "service"
MAX_USER_AGENT = 512
bearer = HTTPBearer(auto_error=False, description="a personal API token, or the service token")


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


def api_config(request: Request) -> ApiConfig:
    return request.app.state.config


ConfigDep = Annotated[ApiConfig, Depends(api_config)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _client(request: Request) -> tuple[str | None, str | None]:
    agent = request.headers.get("user-agent")
    host = request.client.host if request.client else None
    return host, agent[:MAX_USER_AGENT] if agent else None


def _is_service_token(credential: str, config: ApiConfig) -> bool:
    if not config.service_token:
        return False
    return hmac.compare_digest(credential.encode(), config.service_token.encode())


def authenticate(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None,
    acting_for: str | None,
    scope: str,
) -> Caller:
    config: ApiConfig = request.app.state.config
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise unauthenticated("send an API token: Authorization: Bearer <token>")
    secret = credentials.credentials
    ip_address, user_agent = _client(request)
    now = utc_now()
    with config.database.engine.begin() as conn:
        if _is_service_token(secret, config):
            if not acting_for:
                raise unauthenticated(
                    "the service credential acts for a user: name them in X-Goalport-User"
                )
            user = schema.user.c.id
            if conn.execute(sa.select(user).where(user == acting_for)).first() is None:
                raise ApiError(404, "not_found", "no user with that id", field="X-Goalport-User")
            caller = Caller(acting_for, SCOPES, SERVICE_ACTOR, ip_address, user_agent)
            bucket, limit = SERVICE_ACTOR, config.service_limit
        else:
            token = use_token(conn, secret, now)
            if token is None:
                raise unauthenticated(
                    "this API token is not valid (unknown, revoked or expired)", "invalid_token"
                )
            if acting_for and acting_for != token.user_id:
                raise ApiError(
                    403,
                    "forbidden",
                    "only the service credential may act for another user",
                    field="X-Goalport-User",
                )
            caller = Caller(
                token.user_id, token.scopes, f"api-token:{token.id}", ip_address, user_agent
            )
            bucket, limit = token.id, config.token_limit
        decision = count_request(conn, bucket, limit, now)
    if scope not in caller.scopes:
        raise ApiError(
            403,
            "insufficient_scope",
            f"this token's scopes ({', '.join(caller.scopes)}) do not include {scope!r}",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests with this credential: try again in {decision.retry_after} s",
            headers={"Retry-After": str(decision.retry_after)},
        )
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
