"""Connecting a user's Dropbox, Google Drive or OneDrive: the OAuth 2.0 authorisation-code
flow with PKCE (RFC 6749 section 4.1, RFC 7636 with S256).

`start_connection` makes a state and a code verifier, keeps them server-side in an
`OAuthState` row tied to the user (the state only as its SHA-256, the verifier only
wrapped under the master key; `GOALPORT_OAUTH_STATE_TTL_SECONDS`, ten minutes by default)
and returns the provider's authorisation URL. `finish_connection` takes what the provider
sent back to the redirect URI (`code` and `state`, or `error`): it deletes the row first, so
a state works once whatever happens next, refuses an unknown, used, expired or another
user's state, exchanges the code with the verifier, tries the destination (writes, reads
back and deletes a small file: `storage.connect_destination`) and stores the tokens
wrapped. Setting the backup destination is the caller's (the API and the CLI) next step.

The client id and secret are the operator's (`GOALPORT_<PROVIDER>_CLIENT_ID`/`_SECRET`);
the redirect URI must be registered with the provider exactly as
`resources.settings.oauth_redirect_uri` gives it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import sqlalchemy as sa

from resources import settings
from resources.audit import record_audit, utc_now
from resources.destinations.cloud_drives import (
    CLOUD_DRIVE_SCHEMES,
    provider_name,
    tokens_from_response,
)
from resources.destinations.errors import DestinationError
from resources.destinations.storage import connect_destination
from resources.destinations.urls import allowed_destination
from resources.keys import KeyVault
from resources.schema import as_utc
from resources.schema import oauth_state as state_table

__all__ = [
    "Authorization",
    "Connection",
    "OAuthDenied",
    "OAuthError",
    "OAuthStateError",
    "finish_connection",
    "parse_redirect",
    "start_connection",
]

DEFAULT_FOLDER = "goalport"
# What each provider's authorisation request asks for besides the standard parameters:
# Dropbox a refresh token (token_access_type=offline, developers.dropbox.com/oauth-guide);
# Google only the files goalport creates (drive.file) and a refresh token even on a second
# consent (access_type=offline, prompt=consent); Microsoft a refresh token
# (offline_access) and the user's files.
_PROVIDER_PARAMETERS: dict[str, dict[str, str]] = {
    "dropbox": {"token_access_type": "offline"},
    "gdrive": {
        "scope": "https://www.googleapis.com/auth/drive.file",
        "access_type": "offline",
        "prompt": "consent",
    },
    "onedrive": {"scope": "offline_access Files.ReadWrite", "response_mode": "query"},
}
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")  # RFC 6749 error codes; anything else is not shown


class OAuthError(DestinationError):
    """Connecting failed; the message says why and what to do, naming no secret."""


class OAuthStateError(OAuthError):
    """The state is unknown, was used already, expired, or belongs to another user."""


class OAuthDenied(OAuthError):
    """The user declined at the provider's consent screen (or the provider refused)."""


@dataclass(frozen=True)
class Authorization:
    url: str  # where to send the user's browser
    state: str
    expires_at: dt.datetime
    redirect_uri: str


@dataclass(frozen=True)
class Connection:
    user_id: str
    provider: str
    destination_url: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _verifier_context(state_hash: str, user_id: str) -> str:
    return f"OAuthState\n{state_hash}\n{user_id}"


def _check_provider(provider: str) -> str:
    provider = provider.strip().lower()
    if provider not in CLOUD_DRIVE_SCHEMES:
        raise OAuthError(
            f"{provider!r} cannot be connected; choose one of {', '.join(CLOUD_DRIVE_SCHEMES)}"
        )
    return provider


def start_connection(
    engine: sa.Engine,
    keys: KeyVault,
    user_id: str,
    provider: str,
    folder: str = DEFAULT_FOLDER,
) -> Authorization:
    """Begin connecting `provider` for `user_id`, whose backups will go to `folder` there.
    Returns the authorisation URL the user must open."""
    provider = _check_provider(provider)
    destination = allowed_destination(f"{provider}://{folder.strip().strip('/')}")
    client_id, _ = settings.cloud_drive_client(provider)
    redirect_uri = settings.oauth_redirect_uri(provider)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters of the 43-128 RFC 7636 allows
    state_hash = _state_hash(state)
    wrapped, master_id = keys.wrap_secret(_verifier_context(state_hash, user_id), verifier.encode())
    now = utc_now()
    expires_at = now + settings.oauth_state_ttl()
    with engine.begin() as conn:
        conn.execute(state_table.delete().where(state_table.c.expiresAt < now))
        conn.execute(
            state_table.insert().values(
                stateHash=state_hash,
                userId=user_id,
                provider=provider,
                destinationUrl=destination.url,
                redirectUri=redirect_uri,
                wrappedVerifier=wrapped,
                masterKeyId=master_id,
                createdAt=now,
                expiresAt=expires_at,
            )
        )
    parameters = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
        **_PROVIDER_PARAMETERS[provider],
    }
    url = f"{settings.cloud_drive_endpoint(provider, 'authorize')}?{urlencode(parameters)}"
    return Authorization(url, state, expires_at, redirect_uri)


def _take_state(engine: sa.Engine, state: str) -> sa.RowMapping:
    """The started connection for `state`, deleted in the same transaction: single use."""
    state_hash = _state_hash(state)
    with engine.begin() as conn:
        row = (
            conn.execute(sa.select(state_table).where(state_table.c.stateHash == state_hash))
            .mappings()
            .first()
        )
        taken = conn.execute(
            state_table.delete().where(state_table.c.stateHash == state_hash)
        ).rowcount
    if row is None or taken != 1:  # never started, or another request took it first
        raise OAuthStateError(
            "this connection was not started here, or was already completed: start connecting again"
        )
    return row


def finish_connection(
    engine: sa.Engine,
    keys: KeyVault,
    provider: str,
    *,
    state: str,
    code: str | None = None,
    error: str | None = None,
    user_id: str | None = None,
) -> Connection:
    """Complete a connection from what the provider sent back. `user_id`, when the caller
    knows who is asking (the CLI), must be the user who started it."""
    provider = _check_provider(provider)
    name = provider_name(provider)
    if not state:
        raise OAuthStateError(f"{name} sent no state back: start connecting again")
    row = _take_state(engine, state)
    owner = str(row["userId"])
    if row["provider"] != provider or (user_id is not None and user_id != owner):
        raise OAuthStateError(
            "this connection was started for another account or service: start connecting again"
        )
    if as_utc(row["expiresAt"]) < utc_now():
        minutes = int(settings.oauth_state_ttl().total_seconds() // 60)
        raise OAuthStateError(
            f"connecting {name} took longer than {minutes} minutes: start connecting again"
        )
    if error:
        if error == "access_denied":
            reason = "you declined access"
        else:  # the provider's code only, when it is one (the query is anyone's to write)
            reason = f"{name} answered {error if _ERROR_CODE.fullmatch(error) else 'an error'}"
        raise OAuthDenied(f"{name} was not connected: {reason}; nothing was changed")
    if not code:
        raise OAuthError(f"{name} sent no authorisation code back: start connecting again")
    verifier = keys.unwrap_secret(
        _verifier_context(_state_hash(state), owner),
        row["wrappedVerifier"],
        str(row["masterKeyId"]),
    ).decode()
    tokens = _exchange_code(provider, code, verifier, str(row["redirectUri"]))
    destination_url = str(row["destinationUrl"])
    try:  # "test this destination" (write, read back, delete), then store the tokens
        connect_destination(engine, keys, owner, destination_url, tokens)
    except DestinationError as exc:
        raise OAuthError(
            f"{name} answered, but backups could not be written there: {exc}"
        ) from None
    with engine.begin() as conn:
        record_audit(
            conn,
            user_id=owner,
            operation="destination-connect",
            operation_type="backup",
            actor="oauth",
            details={"provider": provider},
        )
    return Connection(owner, provider, destination_url)


def _exchange_code(provider: str, code: str, verifier: str, redirect_uri: str) -> dict[str, str]:
    """The token request of RFC 6749 section 4.1.3 with the PKCE code_verifier."""
    name = provider_name(provider)
    client_id, client_secret = settings.cloud_drive_client(provider)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    if client_secret:
        form["client_secret"] = client_secret
    try:
        with httpx.Client(timeout=settings.cloud_drive_timeout_seconds()) as http:
            response = http.post(settings.cloud_drive_endpoint(provider, "token"), data=form)
    except httpx.HTTPError as exc:
        raise OAuthError(f"{name} could not be reached ({type(exc).__name__}): try again") from None
    if response.status_code != 200:
        try:
            said = response.json().get("error", "")
        except ValueError:
            said = ""
        shown = said if isinstance(said, str) and _ERROR_CODE.fullmatch(said) else "an error"
        raise OAuthError(
            f"{name} refused to complete the connection (HTTP {response.status_code}, {shown}): "
            "start connecting again"
        )
    tokens = tokens_from_response(response.json(), previous={})
    if "refresh_token" not in tokens:
        raise OAuthError(
            f"{name} gave no refresh token, so backups would stop within hours: remove "
            f"goalport's access in your {name} settings and connect again"
        )
    return tokens


def parse_redirect(pasted: str) -> dict[str, str]:
    """`code`, `state` and `error` from the address the browser was sent back to (as a
    person pastes it into the CLI: the whole URL, its query, or just the code)."""
    text = pasted.strip()
    query = urlsplit(text).query if "://" in text else text.lstrip("?")
    if "=" not in query:
        return {"code": text} if text else {}
    found = dict(parse_qsl(query, keep_blank_values=True))
    return {k: found[k] for k in ("code", "state", "error") if found.get(k)}
