"""Every error the API answers is JSON `{"error": {"code", "message", "field"?}}` with its
HTTP status: ours (`ApiError`), FastAPI's validation errors, unknown routes, and anything
unexpected (500, logged here with its traceback, never sent to the caller)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("goalport.api")

BEARER_CHALLENGE = 'Bearer realm="goalport"'


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    """An answer other than success: status, a stable code, words for a person, and the
    request field at fault when there is one."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    """The one answer for "missing" and "not yours" alike."""
    return ApiError(404, "not_found", f"no {what} with that id")


def unauthenticated(message: str, error: str | None = None) -> ApiError:
    challenge = BEARER_CHALLENGE + (f', error="{error}"' if error else "")
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": challenge})


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    detail: dict[str, Any] = {"code": code, "message": message}
    if field:
        detail["field"] = field
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    416: "range_not_satisfiable",
    422: "invalid",
    429: "rate_limited",
    502: "bad_gateway",
}


def _field_of(location: tuple | list) -> str | None:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this path (Starlette names only the first
    route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return error_response(400, "invalid_json", "the request body is not valid JSON")
        field = _field_of(first.get("loc", ()))
        message = str(first.get("msg", "invalid request"))
        return error_response(422, "invalid", f"{field}: {message}" if field else message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return error_response(exc.status_code, code, message, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path_format", "unmatched")
        log.error("unexpected error in %s %s", request.method, route, exc_info=exc)
        return error_response(500, "internal_error", "something went wrong on our side")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for these error statuses, all with the one error body."""
    return {
        status: {"model": ErrorBody, "description": STATUS_CODES[status]} for status in statuses
    }
