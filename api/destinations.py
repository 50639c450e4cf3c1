"""Connecting the caller's Dropbox, Google Drive or OneDrive as their backup destination:
`GET /api/v1/destinations/oauth/{provider}/start` (the provider's authorisation URL, or a
redirect to it) and `GET /api/v1/destinations/oauth/{provider}/callback` (where the
provider sends the browser back), over `resources.destinations.oauth`.

The callback carries no API token (the browser comes from the provider): the single-use
state that `start` kept for the user says whose connection it is. On success the tokens are
stored wrapped and the user's backups go to `<provider>://<folder>` from then on.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field

from api.auth import BackupsCaller, ConfigDep
from api.errors import ApiError, error_responses
from assets.backups.config import BackupConfigError, save_backup_config
from resources.destinations.errors import DestinationError, DestinationNotAllowed
from resources.destinations.oauth import (
    OAuthDenied,
    OAuthStateError,
    finish_connection,
    start_connection,
)
from resources.keys import KeyCustodyError, KeyVault
from resources.settings import SettingError

router = APIRouter(prefix="/api/v1/destinations", tags=["destinations"])

Provider = Literal["dropbox", "gdrive", "onedrive"]


class OAuthStartBody(BaseModel):
    authorizationUrl: str = Field(description="open this in the user's browser")  # noqa: N815
    expiresAt: dt.datetime  # noqa: N815
    redirectUri: str = Field(description="where the provider sends the user back")  # noqa: N815


class OAuthConnectedBody(BaseModel):
    connected: bool
    provider: str
    destination: str = Field(description="where the user's backups now go, e.g. dropbox://goalport")


def _key_vault(request: Request) -> KeyVault:
    """One KeyVault per app, on the API's own database."""
    vault = getattr(request.app.state, "key_vault", None)
    if vault is None:
        vault = KeyVault(database_url=request.app.state.config.database.resolved_url)
        request.app.state.key_vault = vault
    return vault


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, OAuthStateError):
        return ApiError(400, "invalid_state", str(exc), field="state")
    if isinstance(exc, OAuthDenied):
        return ApiError(403, "access_denied", str(exc))
    if isinstance(exc, DestinationNotAllowed):
        return ApiError(403, "forbidden", str(exc), field="folder")
    if isinstance(exc, SettingError | KeyCustodyError):
        # the operator's part is missing (client id, master key): not offered here
        return ApiError(
            404, "not_found", "connecting this cloud drive is not set up on this server"
        )
    if isinstance(exc, DestinationError | BackupConfigError):
        return ApiError(502, "bad_gateway", str(exc))
    raise exc


@router.get(
    "/oauth/{provider}/start",
    response_model=OAuthStartBody,
    responses={
        303: {"description": "with ?redirect=true: to the provider's authorisation page"},
        **error_responses(400, 401, 403, 404, 422, 429),
    },
    summary="Start connecting a cloud drive: the provider's authorisation URL (PKCE)",
)
def start(
    provider: Provider,
    request: Request,
    caller: BackupsCaller,
    config: ConfigDep,
    folder: str = Query(
        default="goalport", min_length=1, max_length=200, description="the folder backups go to"
    ),
    redirect: bool = Query(default=False, description="answer 303 to the URL instead of JSON"),
):
    try:
        authorization = start_connection(
            config.database.engine, _key_vault(request), caller.user_id, provider, folder
        )
    except DestinationNotAllowed as exc:
        raise ApiError(403, "forbidden", str(exc), field="folder") from None
    except DestinationError as exc:  # the folder's syntax
        raise ApiError(400, "bad_request", str(exc), field="folder") from None
    except (SettingError, KeyCustodyError) as exc:
        raise _as_api_error(exc) from None
    with config.database.engine.begin() as conn:
        caller.audit(
            conn,
            "destination-connect-start",
            operation_type="backup",
            details={"provider": provider},
        )
    if redirect:
        return RedirectResponse(authorization.url, status_code=303)
    return OAuthStartBody(
        authorizationUrl=authorization.url,
        expiresAt=authorization.expires_at,
        redirectUri=authorization.redirect_uri,
    )


@router.get(
    "/oauth/{provider}/callback",
    response_model=OAuthConnectedBody,
    responses=error_responses(400, 403, 404, 422, 502),
    summary="Where the provider sends the user back: finish connecting, set the destination",
)
def callback(
    provider: Provider,
    request: Request,
    config: ConfigDep,
    state: str = Query(default="", max_length=200),
    code: str | None = Query(default=None, max_length=4096),
    error: str | None = Query(default=None, max_length=200),
) -> OAuthConnectedBody:
    engine = config.database.engine
    try:
        connection = finish_connection(
            engine, _key_vault(request), provider, state=state, code=code, error=error
        )
        save_backup_config(
            engine, connection.user_id, actor="oauth", destination_url=connection.destination_url
        )
    except (DestinationError, SettingError, KeyCustodyError, BackupConfigError) as exc:
        raise _as_api_error(exc) from None
    return OAuthConnectedBody(
        connected=True, provider=provider, destination=connection.destination_url
    )
