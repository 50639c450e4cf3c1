"""The portal's frame: `install_portal` adds its pages to the API's app, and here are the
pages that are not one area's: signing in with a link, signing out, the overview, and the
two static files (a stylesheet and the few lines of script).

Every page calls the same functions the API's routes are (`api.exports.post_export` ...)
with a `Caller` made from the session: the portal is one more way in, not a second back
end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import Response

from portal import export_pages, import_pages, privacy_pages, template_pages, texts
from portal.sessions import (
    COOKIE_NAME,
    SESSION_LIFETIME,
    SignInError,
    end_session,
    portal_key,
    sign_in,
)
from portal.web import (
    PortalHeaders,
    SignedIn,
    check_csrf,
    install_page_errors,
    portal_config,
    render,
    see_other,
)

router = APIRouter(prefix="/portal", include_in_schema=False)
STATIC = Path(__file__).parent / "static"
STATIC_FILES = {
    "portal.css": "text/css; charset=utf-8",
    "portal.js": "text/javascript; charset=utf-8",
}
TOKEN_MAX = 400


@router.get("/sign-in/{token}")
def open_sign_in_link(request: Request, token: str) -> Response:
    config = portal_config(request)
    try:
        if len(token) > TOKEN_MAX:
            raise SignInError("invalid")
        session, cookie = sign_in(config.database.engine, request.app.state.portal_key, token)
    except SignInError as exc:
        status = {"expired": 410, "used": 410}.get(exc.reason, 400)
        return render(
            request,
            "message.html.j2",
            None,
            status=status,
            title=texts.T[f"signin_{exc.reason}_title"],
            message=texts.T[f"signin_{exc.reason}_message"],
        )
    response = see_other("/portal")
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/portal",
        httponly=True,
        samesite="lax",
        secure=config.public_url.startswith("https://"),
    )
    return response


@router.post("/sign-out")
def sign_out(
    request: Request, visitor: SignedIn, csrf_token: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(request, visitor, csrf_token)
    end_session(visitor.config.database.engine, visitor.session.id)
    response = render(
        request,
        "message.html.j2",
        None,
        title=texts.T["signed_out_title"],
        message=texts.T["signed_out_message"],
    )
    response.delete_cookie(COOKIE_NAME, path="/portal", httponly=True, samesite="lax")
    return response


@router.get("")
def overview(request: Request, visitor: SignedIn) -> Response:
    return render(request, "overview.html.j2", visitor)


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        return Response(status_code=404)
    return Response((STATIC / name).read_bytes(), media_type=STATIC_FILES[name])


def install_portal(app: FastAPI) -> None:
    """Add the portal's pages, error pages and headers to the API's app."""
    app.state.portal_key = portal_key(app.state.config.download_secret)
    install_page_errors(app)
    app.include_router(router)
    for area in (export_pages, import_pages, privacy_pages, template_pages):
        app.include_router(area.router)
    app.add_middleware(PortalHeaders)
