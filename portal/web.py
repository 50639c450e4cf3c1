"""What every portal page shares: who is signed in (the session cookie) and the `Caller`
the API's functions take for them, the CSRF check of a posted form, pages rendered from
the Jinja2 templates (autoescaped) with a fresh CSP nonce, and the security headers of
every `/portal` answer."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Caller
from api.config import ApiConfig
from api.errors import ApiError
from api.tokens import SCOPES
from portal import texts
from portal.sessions import COOKIE_NAME, PortalSession, csrf_ok, csrf_token, session_for_cookie

PORTAL_PREFIX = "/portal"
PORTAL_ACTOR = "portal"  # the audit trail's actor for what a user did in the portal
TEMPLATES = Path(__file__).parent / "templates"
# Answers that are not pages (redirects, JSON, files) may load nothing at all.
DEFAULT_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
T = TypeVar("T")


def page_csp(nonce: str) -> str:
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}' 'strict-dynamic'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


class PortalPageError(Exception):
    """An answer shown as a page: its status, a title and words the person can act on."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class SignInRequired(Exception):
    """No open session: the sign-in help page (never a redirect loop)."""


@dataclass(frozen=True)
class Visitor:
    """A signed-in person: their session, the Caller the API's functions act for, the CSRF
    token their forms carry, and the API's configuration."""

    session: PortalSession
    caller: Caller
    csrf: str
    config: ApiConfig


def portal_config(request: Request) -> ApiConfig:
    return request.app.state.config


def portal_key(request: Request) -> bytes:
    return request.app.state.portal_key


def signed_in(request: Request) -> Visitor:
    config = portal_config(request)
    session = session_for_cookie(config.database.engine, request.cookies.get(COOKIE_NAME))
    if session is None:
        raise SignInRequired()
    agent = request.headers.get("user-agent")
    caller = Caller(
        user_id=session.user_id,
        scopes=SCOPES,
        actor=PORTAL_ACTOR,
        ip_address=request.client.host if request.client else None,
        user_agent=agent[:512] if agent else None,
    )
    return Visitor(session, caller, csrf_token(portal_key(request), session), config)


SignedIn = Annotated[Visitor, Depends(signed_in)]


def check_csrf(request: Request, visitor: Visitor, token: str | None) -> None:
    if not csrf_ok(portal_key(request), visitor.session, token):
        raise PortalPageError(403, texts.T["csrf_title"], texts.T["csrf_message"])


def api_call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call one of the API's route functions; its error becomes a page with its words."""
    try:
        return function(*args, **kwargs)
    except ApiError as exc:
        title = texts.T["not_found_title"] if exc.status == 404 else texts.T["refused_title"]
        raise PortalPageError(exc.status, title, exc.message) from exc


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["t"] = texts.T
    env.globals["labels"] = {
        "format": texts.FORMAT_LABELS,
        "status": texts.STATUS_LABELS,
        "mode": texts.MODE_LABELS,
        "policy": texts.POLICY_LABELS,
        "frequency": texts.FREQUENCY_LABELS,
        "resolution": texts.RESOLUTION_LABELS,
        "action": texts.ACTION_LABELS,
    }
    env.filters["when"] = texts.when
    env.filters["size"] = texts.size
    return env


def render(
    request: Request,
    page: str,
    visitor: Visitor | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    done = request.query_params.get("done")
    html = (
        environment()
        .get_template(page)
        .render(
            nonce=nonce,
            visitor=visitor,
            csrf=visitor.csrf if visitor else "",
            notice=texts.NOTICES.get(done or ""),
            path=request.url.path,
            **context,
        )
    )
    return HTMLResponse(
        html, status_code=status, headers={"Content-Security-Policy": page_csp(nonce)}
    )


def see_other(location: str) -> RedirectResponse:
    """The answer to a posted form: the page to look at next (POST-redirect-GET)."""
    return RedirectResponse(location, status_code=303)


def install_page_errors(app: Any) -> None:
    @app.exception_handler(PortalPageError)
    async def _page_error(request: Request, exc: PortalPageError) -> Response:
        return render(
            request,
            "message.html.j2",
            None,
            status=exc.status,
            title=exc.title,
            message=exc.message,
        )

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _exc: SignInRequired) -> Response:
        return render(
            request,
            "message.html.j2",
            None,
            status=401,
            title=texts.T["signed_out_title"],
            message=texts.T["signed_out_message"],
        )


class PortalHeaders:
    """Security headers on every `/portal` answer: a CSP (pages set their own, with a
    nonce), no sniffing, no framing, no referrer (a sign-in link is a credential), and no
    caching of personal pages."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PORTAL_PREFIX):
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith(f"{PORTAL_PREFIX}/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = {
                    b"content-security-policy": DEFAULT_CSP.encode(),
                    b"x-content-type-options": b"nosniff",
                    b"x-frame-options": b"DENY",
                    b"referrer-policy": b"no-referrer",
                    b"cache-control": b"public, max-age=300" if static else b"no-store",
                }
                headers += [(k, v) for k, v in extra.items() if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
