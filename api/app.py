"""The API application: routers, error handlers, metrics, and the body-size guard, built
from one `ApiConfig` (`create_app`), served by uvicorn (`serve`)."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from api import (
    audit_trail,
    backups,
    destinations,
    downloads,
    exports,
    gdpr,
    health,
    imports,
    sync,
    templates,
    webhooks,
)
from api.config import MAX_JSON_BODY, MULTIPART_FRAMING, ApiConfig
from api.errors import error_response, install_error_handlers
from api.metrics import ApiMetrics, MetricsMiddleware
from portal.routes import install_portal

API_PREFIX = "/api/v1"


class BodySizeLimit:
    """Refuse a request whose declared body is larger than the API accepts (413); the paths
    in `larger` (uploads) accept their own limit."""

    def __init__(self, app: ASGIApp, limit: int, larger: dict[str, int] | None = None):
        self.app, self.limit, self.larger = app, limit, larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            limit = self.larger.get(scope["path"].rstrip("/"), self.limit)
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > limit):
                response = error_response(
                    413, "too_large", f"a request body may have at most {limit} bytes"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class NoServerAccessLog(logging.Filter):
    """Drops uvicorn's own access lines, which carry the path (a download link's token is a
    credential); `api.metrics` writes one per request with the route template instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def _silence_uvicorn_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, NoServerAccessLog) for f in access.filters):
        access.addFilter(NoServerAccessLog())


def create_app(config: ApiConfig) -> FastAPI:
    app = FastAPI(
        title="goalport API",
        version="1",
        summary="Exports, downloads and the data-portability back office of Goal Assistant",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    _silence_uvicorn_access_log()
    app.state.config = config
    app.state.metrics = ApiMetrics(config.database.engine)
    install_error_handlers(app)
    app.include_router(exports.router)
    app.include_router(downloads.router)
    app.include_router(audit_trail.router)
    app.include_router(gdpr.router)
    app.include_router(backups.router)
    app.include_router(destinations.router)
    app.include_router(health.router)
    app.include_router(imports.router)
    app.include_router(templates.router)
    app.include_router(webhooks.router)
    app.include_router(sync.router)
    install_portal(app)  # the "Your data" pages under /portal, on these same functions
    app.add_middleware(
        BodySizeLimit,
        limit=MAX_JSON_BODY,
        larger={
            f"{API_PREFIX}/data/import": config.max_upload_bytes + MULTIPART_FRAMING,
            "/portal/import": config.max_upload_bytes + MULTIPART_FRAMING,  # its upload form
            f"{API_PREFIX}/sync/push": sync.MAX_PUSH_BODY,
        },
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, config: ApiConfig | None = None) -> None:
    """Run the API with uvicorn until interrupted (no access log of paths: see metrics)."""
    import copy

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    logging_config = copy.deepcopy(LOGGING_CONFIG)
    logging_config["loggers"]["goalport.api"] = {"handlers": ["default"], "level": "INFO"}
    app = create_app(config or ApiConfig.from_settings())
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=logging_config,
        timeout_keep_alive=30,
        # X-Forwarded-For is read by the app, only from GOALPORT_TRUSTED_PROXIES (uvicorn's
        # own default would believe any local peer's header).
        proxy_headers=False,
    )
